"""Markdown summary of a gate report, for a person reading a CI log (or a CI job
summary page).

Layout::

    ## xeval gates: FAILED
    run RUN_DIR (config hash …, dataset fingerprint …); spec SPEC

    > ⚠️ note ...                                 (one per note, e.g. a baseline
                                                    configured differently)
    | gate | row | measured | bound | CI | result |
    | --- | --- | --- | --- | --- | --- |
    | native map localises | patch_features / native / mean | 0.949953 | ≥ 0.9 | no CI, n=24 | ✅ |

    Failures and warnings:                        (only when there are some)
    - ❌ **gate** [row]: full message

    **Total: 5 checks from 3 gates: 4 passed, 1 failed, 0 warnings → exit code 1**

``row`` is detector / explainer / category; ``measured`` the value (and the verdict for
a verdict gate); ``bound`` every check of the gate (``≥ min``, ``≤ max``, ``verdict
beats``, ``drop ≤ max_drop vs baseline …``); ``result`` ✅ pass, ❌ fail, ⚠️ a failed
``severity: warn`` gate (not counted in the exit code). Every text from the spec or
the run is escaped for Markdown (``|``, line breaks) and cannot open an HTML tag.
"""

from __future__ import annotations

import re
from pathlib import Path

from xeval.gates.evaluate import GateCase, GateReport, fmt

__all__ = ["RESULT_MARKS", "markdown_summary", "write_summary"]

#: Case status -> mark in the ``result`` column.
RESULT_MARKS = {"pass": "✅", "fail": "❌", "warn": "⚠️"}
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


def _cell(text: object) -> str:
    """One line of Markdown text: whitespace collapsed, ``|`` escaped, and every ``<``
    that could open an HTML tag or comment escaped (Markdown viewers render inline HTML);
    a ``<`` before a space or a digit (``0.5 < min 0.55``) stays readable."""
    one_line = " ".join(str(text).split())
    return _TAG_START.sub("&lt;", one_line).replace("|", "\\|")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _measured(case: GateCase) -> str:
    verdicts = [c.measured for c in case.checks if c.kind == "verdict"]
    return " · ".join([fmt(case.value), *verdicts])


def markdown_summary(report: GateReport) -> str:
    """The Markdown summary of ``report`` (see the module docstring)."""
    n_fail, n_warn, n_pass = report.count("fail"), report.count("warn"), report.count("pass")
    state = "FAILED" if report.exit_code else "passed"
    if not report.exit_code and n_warn:
        state = "passed with warnings"
    run = report.run
    lines = [
        f"## xeval gates: {state}",
        "",
        _cell(
            f"run {run.path} (config hash {run.config_hash}, dataset fingerprint "
            f"{run.dataset_fingerprint}); spec {report.spec.source}"
            + (
                f"; baseline {report.baseline.path} (config hash "
                f"{report.baseline.config_hash}, dataset fingerprint "
                f"{report.baseline.dataset_fingerprint})"
                if report.baseline is not None
                else ""
            )
        ),
        "",
    ]
    lines += [f"> ⚠️ {_cell(n)}" for n in report.notes]
    if report.notes:
        lines.append("")
    lines += [
        "| gate | row | measured | bound | CI | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in report.cases:
        bound = "; ".join(ch.bound for ch in c.checks)
        cells = [c.gate.name, c.row, _measured(c), bound, f"{c.ci_text}, n={c.n}"]
        lines.append("| " + " | ".join(map(_cell, cells)) + f" | {RESULT_MARKS[c.status]} |")
    bad = [c for c in report.cases if c.status != "pass"]
    if bad:
        lines += ["", "Failures and warnings:", ""]
        lines += [
            f"- {RESULT_MARKS[c.status]} **{_cell(c.gate.name)}** [{_cell(c.row)}]: "
            f"{_cell(c.message)}"
            for c in bad
        ]
    n_gates = len({c.gate.name for c in report.cases})
    lines += [
        "",
        f"**Total: {_plural(len(report.cases), 'check')} from {_plural(n_gates, 'gate')}: "
        f"{n_pass} passed, {n_fail} failed, {_plural(n_warn, 'warning')} → exit code "
        f"{report.exit_code}**",
        "",
    ]
    return "\n".join(lines)


def write_summary(report: GateReport, path: str | Path) -> Path:
    """Write :func:`markdown_summary` to ``path`` atomically; returns the path."""
    from xeval._io import atomic_write_text

    return atomic_write_text(path, markdown_summary(report))
