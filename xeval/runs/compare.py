"""Comparing two runs metric by metric (``xeval compare RUN_A RUN_B``).

For every (detector, explainer, category, metric label) present in both runs:

- ``value_a``, ``value_b`` and ``diff = value_b - value_a`` (raw, in the metric's
  units); ``change`` says whether B is ``better``, ``worse`` or the ``same`` given the
  metric's direction (``higher_is_better`` of the results), ``undefined`` when a value
  is NaN;
- where both runs hold per-image values of the metric on the same images (same
  category and image id) and the runs' dataset fingerprints are equal: a paired test
  of B against A (:func:`xeval.comparisons.paired_test`: paired bootstrap CI of the
  mean per-image difference, two-sided Wilcoxon signed-rank p-value), then Holm's
  correction (:func:`xeval.comparisons.holm`) over every test of the table (one
  family). A ``mean`` row pairs the images of all categories. ``paired_diff`` and its
  CI are in B − A orientation, like ``diff``. ``verdict``: ``B better`` / ``B worse``
  (by the sign of the mean paired difference and the metric's direction) when the
  Holm-adjusted p-value is below ``alpha``, ``no significant difference`` otherwise
  (with few pairs the test cannot reach ``alpha``: ``n_pairs`` says how many),
  ``identical`` when every paired difference is zero, ``not tested`` without per-image
  pairs (the reason is in ``note``).

Runs whose dataset fingerprints differ are compared value by value only, and flagged:
their per-image values are not of the same images. Different configurations (config
hash) are stated too.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xeval.errors import InputError
from xeval.runs.record import RunRecord

KEYS = ["detector", "explainer", "category", "label"]
"""What identifies a compared value in both runs."""

COLUMNS = [
    *KEYS,
    "higher_is_better",
    "value_a",
    "value_b",
    "diff",
    "change",
    "n_pairs",
    "paired_diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "verdict",
    "note",
]
"""Columns of :attr:`Comparison.table`."""


@dataclass
class Comparison:
    """``table`` (:data:`COLUMNS`, one row per compared value) and ``notes`` (what a
    reader must know: different data, different configs, rows only in one run)."""

    a: RunRecord
    b: RunRecord
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    alpha: float = 0.05


def _change(diff: float, hib) -> str:
    if diff is None or not math.isfinite(diff):
        return "undefined"
    if diff == 0:
        return "same"
    if hib is None:
        return "higher" if diff > 0 else "lower"
    return "better" if (diff > 0) == bool(hib) else "worse"


_EMPTY = pd.DataFrame(columns=["category", "id", "value"])


def _groups(per_image: pd.DataFrame) -> dict:
    """Per-image values by (detector, explainer, label)."""
    if per_image.empty:
        return {}
    return {
        k: g[["category", "id", "value"]]
        for k, g in per_image.groupby(["detector", "explainer", "label"], sort=False)
    }


def _values(groups: dict, key: dict) -> pd.DataFrame:
    """Per-image values of one (detector, explainer, label) in one category, or in every
    category for ``category == "mean"``."""
    g = groups.get((key["detector"], key["explainer"], key["label"]), _EMPTY)
    return g if key["category"] == "mean" else g[g["category"] == key["category"]]


def compare_runs(
    a: RunRecord,
    b: RunRecord,
    *,
    metrics: list[str] | None = None,
    categories: list[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> Comparison:
    """Compare run ``b`` against run ``a`` (see the module docstring). ``metrics``
    (labels) and ``categories`` restrict the rows; a label or category that neither run
    holds is an :class:`~xeval.errors.InputError` listing the valid ones."""
    from xeval.comparisons import holm

    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), got {alpha!r}")
    ra, rb = a.results, b.results
    notes = _run_notes(a, b)
    common = ra.merge(rb, on=KEYS, suffixes=("_a", "_b"))
    for option, values, col in (
        ("--metric", metrics, "label"),
        ("--category", categories, "category"),
    ):
        if values is None:
            continue
        valid = list(dict.fromkeys(common[col].astype(str)))
        unknown = [v for v in values if v not in valid]
        if unknown:
            raise InputError(
                f"{option} {', '.join(unknown)}: not in both runs (present in both: "
                f"{', '.join(valid) or 'none'})"
            )
        common = common[common[col].isin(values)]
    only_a = len(
        ra.merge(rb[KEYS], on=KEYS, how="left", indicator=True).query("_merge == 'left_only'")
    )
    only_b = len(
        rb.merge(ra[KEYS], on=KEYS, how="left", indicator=True).query("_merge == 'left_only'")
    )
    if only_a or only_b:
        notes.append(
            f"{only_a} value(s) only in A and {only_b} only in B (other detectors, "
            "explainers, categories or metrics) are not compared"
        )
    same_data = _same_data(a, b)
    pa, pb = _groups(a.per_image), _groups(b.per_image)
    rows = []
    for r in common.to_dict(orient="records"):
        hib_a, hib_b = r["higher_is_better_a"], r["higher_is_better_b"]
        hib = hib_a if hib_a == hib_b else None
        va, vb = float(r["value_a"]), float(r["value_b"])
        diff = vb - va
        row = {k: r[k] for k in KEYS}
        row.update(
            higher_is_better=hib,
            value_a=va,
            value_b=vb,
            diff=diff,
            change=_change(diff, hib),
            n_pairs=0,
            paired_diff=math.nan,
            ci_low=math.nan,
            ci_high=math.nan,
            p_value=math.nan,
            p_holm=math.nan,
            verdict="not tested",
            note="",
        )
        xa, xb = _values(pa, r), _values(pb, r)
        if xa.empty or xb.empty:
            row["note"] = (
                "no per-image values"
                if xa.empty and xb.empty
                else f"no per-image values in {'A' if xa.empty else 'B'}"
            )
        elif hib is None:
            row["note"] = "the runs disagree on the metric's direction"
        elif not same_data:
            row["note"] = "different data: no paired test"
        else:
            row.update(_paired(xa, xb, hib=bool(hib), n_boot=n_boot, seed=seed))
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {label: k for k, label in enumerate(dict.fromkeys(table["label"]))}
    table = table.sort_values("label", key=lambda s: s.map(order), kind="stable")
    table = table.reset_index(drop=True)
    tested = table["p_value"].notna()
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p_value"].to_numpy(float))
        better = table["paired_diff"] * table["higher_is_better"].map({True: 1.0, False: -1.0})
        sig = tested & (table["p_holm"] < alpha)
        table.loc[tested, "verdict"] = "no significant difference"
        table.loc[sig & (better > 0), "verdict"] = "B better"
        table.loc[sig & (better < 0), "verdict"] = "B worse"
        notes.append(
            f"paired tests: {int(tested.sum())}, Holm-corrected as one family; verdict at "
            f"alpha = {alpha:g}"
        )
    return Comparison(a, b, table, notes, alpha)


def _paired(xa: pd.DataFrame, xb: pd.DataFrame, *, hib: bool, n_boot: int, seed: int) -> dict:
    """The paired test of B against A on the images both hold (B − A orientation)."""
    from xeval.comparisons import paired_test

    pairs = xa.merge(xb, on=["category", "id"], suffixes=("_a", "_b"), validate="one_to_one")
    if pairs.empty:
        return {"note": "no image in both runs"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an undefined test is NaN, said in the note
        res = paired_test(
            pairs["value_b"].to_numpy(float),
            pairs["value_a"].to_numpy(float),
            higher_is_better=hib,
            n_boot=n_boot,
            seed=seed,
        )
    sign = 1.0 if hib else -1.0  # paired_test's difference is "B better" positive
    lo, hi = sorted((sign * res.ci_low, sign * res.ci_high))
    notes, verdict = [], "not tested"
    if not math.isfinite(res.p_value):
        notes.append("test undefined: every paired difference is zero")
        verdict = "identical"
    unpaired = len(xa) + len(xb) - 2 * len(pairs)
    if unpaired:
        notes.append(f"{unpaired} image value(s) not in both runs left out")
    return {
        "n_pairs": res.n,
        "paired_diff": sign * res.mean_diff,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": res.p_value,
        "verdict": verdict,
        "note": "; ".join(notes),
    }


def _same_data(a: RunRecord, b: RunRecord) -> bool:
    fa, fb = a.run.get("dataset_fingerprint"), b.run.get("dataset_fingerprint")
    return fa is not None and fa == fb


def _run_notes(a: RunRecord, b: RunRecord) -> list[str]:
    notes = []
    fa, fb = a.run.get("dataset_fingerprint"), b.run.get("dataset_fingerprint")
    if not _same_data(a, b):
        notes.append(
            f"DIFFERENT DATA: dataset fingerprints differ (A {fa or 'unknown'} "
            f"[{a.run.get('dataset_name') or '?'}], B {fb or 'unknown'} "
            f"[{b.run.get('dataset_name') or '?'}]): values are compared, not paired"
        )
    ha, hb = a.run.get("config_hash"), b.run.get("config_hash")
    if ha != hb:
        notes.append(
            f"configs differ: A {a.run.get('config_name')} ({ha}), "
            f"B {b.run.get('config_name')} ({hb})"
        )
    va, vb = a.run.get("xeval_version"), b.run.get("xeval_version")
    if va != vb:
        notes.append(f"xeval versions differ: A {va}, B {vb}")
    return notes


def comparison_json(cmp: Comparison) -> dict:
    """The comparison as JSON-ready data (NaN as ``null``)."""

    def clean(v):
        if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
            return None
        if isinstance(v, np.generic):
            return v.item()
        return v

    def run(r: RunRecord) -> dict:
        keys = ("config_name", "config_hash", "dataset_name", "dataset_fingerprint", "finished")
        return {"id": r.id, "run_dir": r.run.get("run_dir"), **{k: r.run.get(k) for k in keys}}

    return {
        "a": run(cmp.a),
        "b": run(cmp.b),
        "alpha": cmp.alpha,
        "notes": list(cmp.notes),
        "rows": [
            {k: clean(v) for k, v in rec.items()} for rec in cmp.table.to_dict(orient="records")
        ],
    }
