"""Image-level detection metrics (one score per image, higher = more anomalous).

- **AUROC** (higher is better): area under the ROC curve, ties count 1/2
  (``sklearn.metrics.roc_auc_score``).
- **AUPR** (higher is better): average precision, ``sum_k (R_k - R_{k-1}) P_k``
  (``sklearn.metrics.average_precision_score``), anomalous = positive class.
- **F1-max** (higher is better): the largest F1 over all thresholds ``score >= t``
  (an oracle threshold: optimistic by construction).
- **FPR@95TPR** (lower is better): the false-positive rate at the highest threshold
  whose true-positive rate is at least 0.95.

Undefined with one class only: NaN and an :class:`~xeval.errors.UndefinedMetricWarning`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn import metrics as skm

from xeval.metrics._validation import check_labels_scores, undefined


def _two_classes(y: np.ndarray, name: str) -> bool:
    if y.all() or not y.any():
        undefined(name, f"labels hold one class only ({'anomalous' if y.all() else 'normal'})")
        return False
    return True


def image_auroc(labels, scores) -> float:
    """Image-level AUROC (see module docstring)."""
    y, s = check_labels_scores(labels, scores)
    if not _two_classes(y, "image_auroc"):
        return float("nan")
    return float(skm.roc_auc_score(y, s))


def image_aupr(labels, scores) -> float:
    """Image-level average precision (see module docstring)."""
    y, s = check_labels_scores(labels, scores)
    if not _two_classes(y, "image_aupr"):
        return float("nan")
    return float(skm.average_precision_score(y, s))


def f1_max(labels, scores) -> float:
    """Largest F1 over thresholds (see module docstring)."""
    y, s = check_labels_scores(labels, scores)
    if not _two_classes(y, "f1_max"):
        return float("nan")
    p, r, _ = skm.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.max())


def fpr_at_tpr(labels, scores, *, tpr: float = 0.95) -> float:
    """FPR at the highest threshold reaching ``tpr`` (lower is better)."""
    y, s = check_labels_scores(labels, scores)
    if not _two_classes(y, "fpr_at_tpr"):
        return float("nan")
    fpr, tpr_, _ = skm.roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_, tpr, side="left")])


@dataclass
class ImageScoreState:
    ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def merge(self, o: ImageScoreState) -> ImageScoreState:
        return ImageScoreState(self.ids + o.ids, self.labels + o.labels, self.scores + o.scores)


class ImageMetrics:
    """Mergeable metric over image scores; keeps per-image values for bootstrap CIs."""

    names = ("image_auroc", "image_aupr", "image_f1_max", "image_fpr@95tpr")

    def init(self) -> ImageScoreState:
        return ImageScoreState()

    def update(self, state: ImageScoreState, labels, scores, ids=None) -> ImageScoreState:
        y, s = check_labels_scores(np.atleast_1d(labels), np.atleast_1d(scores))
        state.labels.extend(y.astype(int).tolist())
        state.scores.extend(s.tolist())
        state.ids.extend(list(ids) if ids is not None else [None] * len(y))
        return state

    @staticmethod
    def merge(a: ImageScoreState, b: ImageScoreState) -> ImageScoreState:
        return a.merge(b)

    def compute(self, state: ImageScoreState) -> dict:
        y = np.asarray(state.labels)
        s = np.asarray(state.scores, dtype=float)
        if y.size == 0:
            return {k: undefined(k, "no images") for k in self.names}
        return {
            "image_auroc": image_auroc(y, s),
            "image_aupr": image_aupr(y, s),
            "image_f1_max": f1_max(y, s),
            "image_fpr@95tpr": fpr_at_tpr(y, s, tpr=0.95),
        }
