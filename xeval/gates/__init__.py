"""Acceptance gates: a spec that turns a finished run into pass or fail.

``xeval gate SPEC.yaml --run RUN_DIR`` (:mod:`xeval.gates.command`). The modules:
:mod:`~xeval.gates.spec` (the YAML spec, parsed and checked), :mod:`~xeval.gates.runfolder`
(a finished run folder), :mod:`~xeval.gates.evaluate` (rows and checks),
:mod:`~xeval.gates.junit` (JUnit XML) and :mod:`~xeval.gates.summary` (Markdown).
The names below are imported on first use, so that importing the package stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_spec": "xeval.gates.spec",
    "parse_spec": "xeval.gates.spec",
    "Gate": "xeval.gates.spec",
    "GateSpec": "xeval.gates.spec",
    "read_run": "xeval.gates.runfolder",
    "RunFolder": "xeval.gates.runfolder",
    "evaluate_spec": "xeval.gates.evaluate",
    "GateReport": "xeval.gates.evaluate",
    "GateCase": "xeval.gates.evaluate",
    "Check": "xeval.gates.evaluate",
    "junit_xml_text": "xeval.gates.junit",
    "write_junit": "xeval.gates.junit",
    "markdown_summary": "xeval.gates.summary",
    "write_summary": "xeval.gates.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'xeval.gates' has no attribute {name!r}")
