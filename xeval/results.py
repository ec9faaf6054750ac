"""The results long table: one row per
(detector, explainer, dataset, category, protocol, metric).

Columns
-------
detector, explainer, dataset, category, protocol, metric : str
    ``category`` is ``"mean"`` for the unweighted mean over categories; ``metric`` is
    the registered metric's name.
label : str
    Display name, unique within a run (``"aupro@0.3"``, ``"iou@t"``): the metric with
    its distinguishing option.
family : str
    Audit family (detection, localisation, faithfulness, robustness, sanity,
    complexity, video, reasons, influence).
params : str
    The metric's options as canonical JSON (e.g. ``{"fpr_limit": 0.3, "mode":
    "exact"}``): never parsed back out of the name.
value : float
    NaN where the metric is undefined (a warning says why).
ci_low, ci_high : float
    95% bootstrap confidence interval over images where available, else NaN.
n : int
    Number of images the value is computed on.
higher_is_better : bool
    Direction of the metric.
control : bool
    True for the trivial controls (random, Sobel edges, centre prior).
headline : int
    1: in the summary table, bar figures and rank table; 2: rank table only; 0: neither.
threshold : float
    The threshold used by @t metrics (NaN otherwise); chosen on normal validation data.
note : str
    How the value was obtained (e.g. ``"image score = max of map"``,
    ``"oracle threshold (optimistic)"``, ``"binned, error <= 3e-05"``).
"""

from __future__ import annotations

import math

import pandas as pd

RESULT_COLUMNS = [
    "detector",
    "explainer",
    "dataset",
    "category",
    "protocol",
    "metric",
    "label",
    "family",
    "params",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "higher_is_better",
    "control",
    "headline",
    "threshold",
    "note",
]


def make_row(**kw) -> dict:
    """A results row with defaults for the optional columns; unknown keys are an error."""
    unknown = set(kw) - set(RESULT_COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns {sorted(unknown)}; expected {RESULT_COLUMNS}")
    row = {
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": 0,
        "threshold": math.nan,
        "note": "",
        "protocol": "",
        "params": "{}",
        "family": "",
        "control": False,
        "headline": 0,
    }
    row.update(kw)
    row.setdefault("label", row.get("metric"))
    missing = [c for c in RESULT_COLUMNS if c not in row]
    if missing:
        raise KeyError(f"missing result columns {missing}")
    return row


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """Build the long table with the canonical column order."""
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return df
