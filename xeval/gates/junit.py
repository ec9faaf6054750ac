"""JUnit XML of a gate report, written with the ``junit-xml`` package.

One ``<testsuite name="xeval gates">`` whose properties are ``run_dir``,
``config_hash``, ``dataset_fingerprint`` and ``spec`` (plus ``baseline_dir``,
``baseline_config_hash`` and ``baseline_dataset_fingerprint`` when a baseline is
given); its ``system-out`` holds the report's notes (e.g. the baseline was configured
differently). One ``<testcase>`` per gate and matched row: ``name`` is the gate name
with the row (``"native map localises [patch_features / native / mean]"``),
``classname`` the gate name (CI viewers group the rows of a gate), ``system-out`` the
full message (measured value, CI, n, every check).

- A failing ``severity: error`` case has a ``<failure>`` (type ``gate failed``) whose
  message gives the measured value, the bound, the CI (or "no CI") and n.
- A failing ``severity: warn`` case is ``<skipped>`` with the message prefixed by
  ``warning (severity warn, not counted as a failure):``: CI test views show skipped
  tests and their message, and do not count them as failures, as the exit code does
  not.
"""

from __future__ import annotations

from pathlib import Path

from xeval.gates.evaluate import GateReport

__all__ = ["SUITE_NAME", "WARN_PREFIX", "junit_xml_text", "write_junit"]

SUITE_NAME = "xeval gates"
WARN_PREFIX = "warning (severity warn, not counted as a failure): "


def junit_xml_text(report: GateReport) -> str:
    """The JUnit XML document of ``report`` (see the module docstring)."""
    from junit_xml import TestCase, TestSuite, to_xml_report_string

    props = {
        "run_dir": str(report.run.path),
        "config_hash": report.run.config_hash,
        "dataset_fingerprint": report.run.dataset_fingerprint,
        "spec": report.spec.source,
    }
    if report.baseline is not None:
        props |= {
            "baseline_dir": str(report.baseline.path),
            "baseline_config_hash": report.baseline.config_hash,
            "baseline_dataset_fingerprint": report.baseline.dataset_fingerprint,
        }
    cases = []
    for case in report.cases:
        tc = TestCase(case.test_name, classname=case.gate.name, stdout=case.message)
        if case.status == "fail":
            tc.add_failure_info(message=case.message, failure_type="gate failed")
        elif case.status == "warn":
            tc.add_skipped_info(message=WARN_PREFIX + case.message)
        cases.append(tc)
    notes = "\n".join(f"note: {n}" for n in report.notes) or None
    suite = TestSuite(SUITE_NAME, cases, properties=props, stdout=notes)
    return to_xml_report_string([suite], prettyprint=True)


def write_junit(report: GateReport, path: str | Path) -> Path:
    """Write :func:`junit_xml_text` to ``path`` atomically; returns the path."""
    from xeval._io import atomic_write_text

    return atomic_write_text(path, junit_xml_text(report))
