"""The engine: runs a configuration in phases (see :mod:`xeval.engine.run`) and produces
the results table and the report."""

from xeval.engine.run import RunResult, evaluate_detector, evaluate_unit, run

__all__ = ["RunResult", "evaluate_detector", "evaluate_unit", "run"]
