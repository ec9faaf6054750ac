"""The engine: runs a protocol and produces the results table and the report."""

from xeval.engine.runner import RunResult, evaluate_detector, run

__all__ = ["RunResult", "evaluate_detector", "run"]
