"""Threshold-free pixel metrics from a compact rank summary.

Every threshold-free metric on a set of scored pixels (ROC AUC, average precision,
the PRO curve, the best IoU/F1 over thresholds) depends only on, for each distinct
score ``u`` that some *positive* pixel takes:

- ``m``: the number of positive pixels scoring exactly ``u``,
- ``w``: the sum over those pixels of ``1 / |their ground-truth region|``,
- ``neg_ge`` / ``neg_gt``: the number of negative pixels scoring ``>= u`` / ``> u``.

Between two consecutive positive scores only negatives change, so the ROC and PRO
curves are straight (horizontal) there and the summary loses nothing: metrics computed
from it are exact. The summary is built either exactly (sorted negatives, see
:mod:`xeval.metrics.pixel`) or from a histogram (streaming mode), in which case each
bin acts as one tied score and :func:`error_bounds` bounds the difference to the exact
values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankSummary:
    """Counts at each distinct positive score, in **descending** order of score."""

    thresholds: np.ndarray  # (k,) the distinct positive scores (bin lower edges if binned)
    m: np.ndarray  # (k,) int64
    w: np.ndarray  # (k,) float64
    neg_ge: np.ndarray  # (k,) int64
    neg_gt: np.ndarray  # (k,) int64
    n_pos: int
    n_neg: int
    n_regions: int

    @property
    def tp(self) -> np.ndarray:
        """True positives at each threshold (``map >= u``)."""
        return np.cumsum(self.m)


def summarize_sorted(
    all_sorted: np.ndarray, pos: np.ndarray, pos_w: np.ndarray, n_regions: int
) -> RankSummary:
    """Exact summary from the ascending-sorted scores of **all** pixels and the scores
    of the positive pixels with their region weights (any order).

    Negative counts are all-pixel counts minus positive counts, so the negatives never
    need to be separated from the positives (one copy and one sort of the scores).
    """
    n_all = int(all_sorted.size)
    n_neg = n_all - int(pos.size)
    order = np.argsort(pos)  # order inside ties is irrelevant: they are summed
    pv = pos[order]
    pw = pos_w[order]
    if pv.size:
        starts = np.flatnonzero(np.concatenate(([True], pv[1:] != pv[:-1])))
        u = pv[starts]  # ascending distinct positive scores
        m = np.diff(np.append(starts, pv.size)).astype(np.int64)
        w = np.add.reduceat(pw, starts)
        left = np.searchsorted(all_sorted, u, side="left").astype(np.int64)
        # all pixels scoring exactly u: the m positives, plus negatives only if the
        # pixel right after those m also scores u (then search for the block's end)
        right = left + m
        probe = np.minimum(right, n_all - 1)
        tied = (right < n_all) & (all_sorted[probe] == u)
        if tied.any():
            right[tied] = np.searchsorted(all_sorted, u[tied], side="right")
        neg_lt = left - starts  # positives below u_j: starts[j]
        neg_le = right - starts - m
    else:
        u = pv
        m = neg_lt = neg_le = np.zeros(0, np.int64)
        w = np.zeros(0)
    return RankSummary(
        thresholds=u[::-1],
        m=m[::-1],
        w=np.asarray(w, dtype=np.float64)[::-1],
        neg_ge=(n_neg - neg_lt)[::-1],
        neg_gt=(n_neg - neg_le)[::-1],
        n_pos=int(pv.size),
        n_neg=n_neg,
        n_regions=int(n_regions),
    )


def auroc(s: RankSummary) -> float:
    """Area under the ROC curve, ties counted 1/2 (= Mann-Whitney U / (P N)), from the
    exact integer ``2 U`` (in Python integers when it could exceed int64)."""
    below = s.n_neg - s.neg_ge  # negatives strictly below each positive score
    ties = s.neg_ge - s.neg_gt
    if not s.m.size:
        twice_u = 0
    elif 2 * s.n_pos * s.n_neg < 2**62:
        twice_u = int(np.dot(s.m, 2 * below + ties))
    else:  # 2 U may not fit in int64: sum exactly
        terms = zip(s.m.tolist(), below.tolist(), ties.tolist(), strict=True)
        twice_u = sum(a * (2 * b + c) for a, b, c in terms)
    return twice_u / (2.0 * s.n_pos * s.n_neg)


def average_precision(s: RankSummary) -> float:
    """Average precision as in scikit-learn: ``sum_k (R_k - R_{k-1}) P_k`` over
    distinct thresholds (no interpolation)."""
    tp = s.tp
    prec = tp / (tp + s.neg_ge)
    return float(np.dot(s.m, prec) / s.n_pos)


def roc_points(s: RankSummary) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC curve as a polyline ``(fpr, tpr)`` from (0, 0) to (1, 1)."""
    tp = s.tp / s.n_pos
    tp_prev = np.concatenate(([0.0], tp[:-1]))
    x = np.empty(2 * tp.size + 2)
    y = np.empty_like(x)
    x[0] = y[0] = 0.0
    x[1:-1:2] = s.neg_gt / s.n_neg
    y[1:-1:2] = tp_prev
    x[2:-1:2] = s.neg_ge / s.n_neg
    y[2:-1:2] = tp
    x[-1] = y[-1] = 1.0
    return x, y


def pro_points(s: RankSummary) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve ``(fpr, pro)`` as a polyline from (0, 0) to (1, 1), values clipped
    at 1 (MVTec AD evaluation definition)."""
    pro = np.minimum(np.cumsum(s.w) / s.n_regions, 1.0)
    pro_prev = np.concatenate(([0.0], pro[:-1]))
    x = np.empty(2 * pro.size + 2)
    y = np.empty_like(x)
    x[0] = y[0] = 0.0
    x[1:-1:2] = s.neg_gt / s.n_neg
    y[1:-1:2] = pro_prev
    x[2:-1:2] = s.neg_ge / s.n_neg
    y[2:-1:2] = pro
    x[-1] = y[-1] = 1.0
    return np.minimum(x, 1.0), y


def area_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under the polyline ``(x, y)`` (``x`` non-decreasing) for
    ``x`` in ``[0, limit]``, the value at ``limit`` linearly interpolated; divided by
    ``limit``."""
    j = int(np.searchsorted(x, limit, side="left"))  # segments starting below limit
    x0, x1 = x[:j], x[1 : j + 1]
    y0, y1 = y[:j], y[1 : j + 1]
    cut = x1 > limit
    if cut.any():
        width = x1[cut] - x0[cut]
        y1 = y1.copy()
        x1 = x1.copy()
        y1[cut] = y0[cut] + (y1[cut] - y0[cut]) * (limit - x0[cut]) / width
        x1[cut] = limit
    return float(np.sum(0.5 * (y0 + y1) * (x1 - x0)) / limit)


def vacuous_bound(value: float, bound: float, lo: float = 0.0, hi: float = 1.0) -> bool:
    """Whether ``value ± bound`` covers the whole range ``[lo, hi]`` of a metric: the
    binned estimate then says nothing about the exact value."""
    return value - bound <= lo and value + bound >= hi


def best_iou(s: RankSummary) -> tuple[float, float]:
    """Largest pooled IoU over thresholds ``map >= u`` and the threshold reaching it
    (an *oracle*: the threshold is tuned on the evaluated set itself)."""
    tp = s.tp
    iou = tp / (s.n_pos + s.neg_ge)
    j = int(np.argmax(iou))
    return float(iou[j]), float(s.thresholds[j])


def best_f1(s: RankSummary) -> tuple[float, float]:
    """Largest pooled F1 over thresholds and its threshold (oracle, optimistic)."""
    tp = s.tp
    f1 = 2 * tp / (s.n_pos + tp + s.neg_ge)
    j = int(np.argmax(f1))
    return float(f1[j]), float(s.thresholds[j])


def error_bounds(s: RankSummary, *, fpr_limits=(0.3,)) -> dict[str, float]:
    """Worst-case absolute error of each metric when every summary entry is a *bin*
    of scores treated as tied (streaming mode). Zero when no bin mixes classes.

    - AUROC: every positive/negative pair inside one bin counts 1/2 instead of 0 or 1.
    - AP: a positive inside a bin sees a precision between the bin's extremes.
    - AUPRO: inside a bin the true curve is a monotone staircase within the bin's box;
      the binned curve is its diagonal, so the error is at most half the box area.
    """
    tp = s.tp
    tp_prev = tp - s.m
    ties = (s.neg_ge - s.neg_gt).astype(np.float64)
    out = {"pixel_auroc": float(np.dot(s.m, ties) / (2.0 * s.n_pos * s.n_neg))}
    pmax = tp / np.maximum(tp + s.neg_gt, 1)
    pmin = (tp_prev + 1) / (tp_prev + 1 + s.neg_ge)
    out["pixel_aupr"] = float(np.dot(s.m, pmax - pmin) / s.n_pos)
    box = 0.5 * (ties / s.n_neg) * (s.w / max(s.n_regions, 1))
    f_lo = s.neg_gt / s.n_neg
    for limit in fpr_limits:
        out[f"aupro@{limit:g}"] = float(box[f_lo < limit].sum() / limit)
    return out
