"""The family table of paired comparisons on the same images (``comparisons.csv``).

From the per-image table of a run (``per_image.csv``: one row per category, detector,
explainer and image ``id``; one column per per-image metric label after ``subsets``):

- **explainers**: for each detector and per-image metric, every pair of its explainers
  (controls included, and marked) is compared with :func:`~xeval.comparisons.paired_test`
  on the images where both have a value (same ``category`` and ``id``);
- **detectors**: for each real (non-control) explainer that several detectors share
  (e.g. ``native``, each detector's own map) and each metric, every pair of detectors is
  compared on the images both scored.

The direction of a metric is its ``higher_is_better`` in the results table (rows whose
``label`` is the column name); a per-image column the results do not describe is left
out (listed in ``frame.attrs["skipped"]``).

**Family** for Holm's correction: one family per (kind, detector or explainer, metric),
i.e. the k(k-1)/2 pairs of explainers of one detector on one metric, or the pairs of
detectors on one explainer and metric. ``p_holm`` is Holm-adjusted within the family
(:func:`~xeval.comparisons.holm`); ``family`` names it and ``family_size`` counts its
tests with a p-value. ``mean_diff`` is ``a - b`` in the metric's direction (positive:
``a`` is better), with its paired bootstrap CI.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from xeval.comparisons.paired import holm, paired_test
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.reports.data import controls_of, display_frame

__all__ = ["COMPARISON_COLUMNS", "pairwise_comparisons", "per_image_metrics"]

COMPARISON_COLUMNS = [
    "kind",
    "family",
    "detector",
    "explainer",
    "metric",
    "higher_is_better",
    "a",
    "b",
    "a_control",
    "b_control",
    "n",
    "n_dropped",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "statistic",
    "p_value",
    "p_holm",
    "family_size",
]
"""Columns of :func:`pairwise_comparisons` (``comparisons.csv``). ``kind`` is
``"explainers"`` (``a``, ``b`` are explainers of ``detector``) or ``"detectors"``
(``a``, ``b`` are detectors, on ``explainer``)."""

_KEY = ["category", "id"]
_META = {
    "category",
    "detector",
    "explainer",
    "id",
    "label",
    "defect",
    "image_score",
    "control",
    "input_dependent",
    "subsets",
}


def per_image_metrics(per_image: pd.DataFrame) -> list[str]:
    """The per-image metric columns of ``per_image``: those after ``subsets`` (or, in a
    table without it, every column that is not an identifier)."""
    cols = list(per_image.columns)
    if "subsets" in cols:
        return cols[cols.index("subsets") + 1 :]
    return [c for c in cols if c not in _META]


def _directions(results: pd.DataFrame) -> dict[str, bool]:
    shown = display_frame(results)
    hib = shown.groupby("metric", sort=False)["higher_is_better"].agg(
        lambda s: bool(s.map(lambda v: str(v).strip().lower() in {"true", "1"}).mean() >= 0.5)
    )
    return {str(k): bool(v) for k, v in hib.items()}


def pairwise_comparisons(
    per_image: pd.DataFrame,
    results: pd.DataFrame,
    *,
    metrics: Iterable[str] | None = None,
    controls: Iterable[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired tests between explainers (per detector) and between detectors (per shared
    explainer) on the same images, Holm-corrected per family (see the module doc).

    Parameters
    ----------
    per_image : DataFrame
        The per-image table (``per_image.csv``).
    results : DataFrame
        The results long table (for each metric's direction and the controls).
    metrics : iterable of str, optional
        Per-image metric labels to compare; default: every per-image metric column.
    controls : iterable of str, optional
        Control explainers; default: those the results mark.
    n_boot, seed, level
        Bootstrap of the CIs (:func:`~xeval.comparisons.paired_test`).

    Returns
    -------
    DataFrame
        Columns :data:`COMPARISON_COLUMNS`; ``attrs["skipped"]`` lists the per-image
        columns without a direction in the results.

    Raises
    ------
    InputError
        When ``per_image`` lacks an identifier column or a requested metric.
    """
    missing = [c for c in ("category", "detector", "explainer", "id") if c not in per_image]
    if missing:
        raise InputError(f"per_image lacks columns {missing}")
    available = per_image_metrics(per_image)
    if metrics is None:
        wanted = available
    else:
        wanted = list(dict.fromkeys(str(m) for m in metrics))
        bad = [m for m in wanted if m not in available]
        if bad:
            raise InputError(f"metrics {bad} are not per-image columns; valid: {available}")
    directions = _directions(results)
    skipped = [m for m in wanted if m not in directions]
    wanted = [m for m in wanted if m in directions]
    controls = controls_of(results) if controls is None else frozenset(controls)
    rank = {  # pairs follow the results' order (explainers, detectors), not per_image's
        c: {n: i for i, n in enumerate(dict.fromkeys(results[c].astype(str)))}
        for c in ("explainer", "detector")
    }
    df = per_image.copy()
    for c in ("category", "detector", "explainer", "id"):
        df[c] = df[c].astype(str)
    rows: list[dict] = []
    with warnings.catch_warnings():
        # an undefined test (no pair, all differences zero) is a NaN row, said in the table
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for metric in wanted:
            hib = directions[metric]
            values = pd.to_numeric(df[metric], errors="coerce")
            frame = df[["category", "detector", "explainer", "id"]].assign(value=values)
            for det in sorted(
                set(frame["detector"]), key=lambda n: (rank["detector"].get(n, 1e9), n)
            ):
                part = frame[frame["detector"] == det]
                wide = _wide(part, "explainer", rank["explainer"])
                names = _order(list(wide.columns), controls)
                rows += _family(
                    wide, names, kind="explainers", detector=det, explainer="",
                    metric=metric, hib=hib, controls=controls,
                    n_boot=n_boot, seed=seed, level=level,
                )  # fmt: skip
            shared = frame[~frame["explainer"].isin(controls)]
            for exp in sorted(
                set(shared["explainer"]), key=lambda n: (rank["explainer"].get(n, 1e9), n)
            ):
                part = shared[shared["explainer"] == exp]
                wide = _wide(part, "detector", rank["detector"])
                if wide.shape[1] < 2:
                    continue
                rows += _family(
                    wide, list(wide.columns), kind="detectors", detector="", explainer=exp,
                    metric=metric, hib=hib, controls=frozenset(),
                    n_boot=n_boot, seed=seed, level=level,
                )  # fmt: skip
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out.attrs["skipped"] = skipped
    return out


def _wide(part: pd.DataFrame, column: str, rank: dict[str, int]) -> pd.DataFrame:
    """Images (category, id) x ``column`` values, columns in ``rank`` order (others after,
    sorted); a duplicated image keeps its last row."""
    part = part.drop_duplicates(subset=[*_KEY, column], keep="last")
    order = sorted(set(part[column]), key=lambda n: (rank.get(n, len(rank)), n))
    return part.pivot(index=_KEY, columns=column, values="value").reindex(columns=order)


def _order(names: list[str], controls: frozenset[str]) -> list[str]:
    return [n for n in names if n not in controls] + [n for n in names if n in controls]


def _family(
    wide: pd.DataFrame,
    names: list[str],
    *,
    kind: str,
    detector: str,
    explainer: str,
    metric: str,
    hib: bool,
    controls: frozenset[str],
    n_boot: int,
    seed: int,
    level: float,
) -> list[dict]:
    pairs = list(itertools.combinations(names, 2))
    if not pairs:
        return []
    scope = f"explainers of {detector}" if kind == "explainers" else f"detectors on {explainer}"
    rows = []
    for a, b in pairs:
        r = paired_test(
            wide[a].to_numpy(float),
            wide[b].to_numpy(float),
            higher_is_better=hib,
            n_boot=n_boot,
            seed=seed,
            level=level,
        )
        rows.append(
            {
                "kind": kind,
                "detector": detector,
                "explainer": explainer,
                "metric": metric,
                "a": a,
                "b": b,
                "a_control": a in controls,
                "b_control": b in controls,
                **{k: v for k, v in r.as_dict().items() if k != "level"},
            }
        )
    p = np.array([row["p_value"] for row in rows], float)
    adjusted = holm(p)
    size = int(np.isfinite(p).sum())
    family = f"{scope}, {metric} ({size} test{'' if size == 1 else 's'})"
    for row, q in zip(rows, adjusted, strict=True):
        row.update(p_holm=float(q), family_size=size, family=family)
    return rows
