"""Run any Quantus metric on an xeval detector, with the fixes single-output anomaly
detectors need (see :mod:`xeval.integrations.quantus.bridge`). ``pip install
"xeval[crosscheck]"`` installs Quantus."""

from xeval.integrations.quantus.bridge import (
    EXPLAIN_FUNC_METRICS,
    PARAMETER_METRICS,
    REFUSED_METRICS,
    ScoreAsLogit,
    make_explain_func,
    run_quantus,
    wrap_detector,
)

__all__ = [
    "EXPLAIN_FUNC_METRICS",
    "PARAMETER_METRICS",
    "REFUSED_METRICS",
    "ScoreAsLogit",
    "make_explain_func",
    "run_quantus",
    "wrap_detector",
]
