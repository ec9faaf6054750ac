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
Scores are used as float64 (exactly as scikit-learn does, so scores near the float
limits keep their order); integer scores beyond ``±2**53`` are refused. A state with
ids refuses an image added twice (in an update or across a merge) and ids that do not
match the labels and scores one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from sklearn import metrics as skm

from xeval.metrics._validation import (
    check_ids,
    check_labels_scores,
    extend_ids,
    merged_ids,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS


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
    """Image ids, labels and scores in update order, and how the scores were obtained."""

    ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    note: str = ""

    def merge(self, o: ImageScoreState) -> ImageScoreState:
        ids = merged_ids(self.ids, o.ids, "merging image-score states")
        labels, scores = self.labels + o.labels, self.scores + o.scores
        return ImageScoreState(ids, labels, scores, self.note or o.note)


class ImageMetrics:
    """Mergeable metric over image scores; keeps per-image values for bootstrap CIs."""

    names = ("image_auroc", "image_aupr", "image_f1_max", "image_fpr@95tpr")

    def init(self) -> ImageScoreState:
        return ImageScoreState()

    def update(self, state: ImageScoreState, labels, scores, ids=None) -> ImageScoreState:
        """Add images' labels and scores; ``ids`` (optional, one per image in the same
        order) may not repeat an id already in ``state``."""
        y, s = check_labels_scores(np.atleast_1d(labels), np.atleast_1d(scores))
        ids = check_ids(ids, len(y), "ImageMetrics.update")
        extend_ids(state.ids, ids, "ImageMetrics.update")
        state.labels.extend(y.astype(int).tolist())
        state.scores.extend(s.tolist())
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


# ------------------------------------------------------------------ registered metrics
class _ImageScoreMetric(Metric):
    """Base of the image-level metrics: they share one state of (id, label, score)."""

    family = "detection"
    needs = frozenset({"labels", "scores"})
    extra_note: ClassVar[str] = ""

    def shares(self):
        return ("image_scores",)

    def init(self) -> ImageScoreState:
        return ImageScoreState()

    def update(self, state: ImageScoreState, record, explanation) -> ImageScoreState:
        check_aligned(record, explanation, self.label)
        ImageMetrics().update(state, record.targets.labels, explanation.scores, ids=record.ids)
        state.note = state.note or explanation.score_note
        return state

    def merge(self, a: ImageScoreState, b: ImageScoreState) -> ImageScoreState:
        return a.merge(b)

    def _value(self, y: np.ndarray, s: np.ndarray) -> float:
        raise NotImplementedError

    def compute(self, state: ImageScoreState) -> MetricValue:
        y = np.asarray(state.labels, dtype=int)
        s = np.asarray(state.scores, dtype=float)
        value = self._value(y, s) if y.size else undefined(self.label, "no images")
        note = "; ".join(p for p in (state.note, self.extra_note) if p)
        return MetricValue(value=value, n=int(y.size), note=note)


@METRICS.register
class ImageAUROC(_ImageScoreMetric):
    """Image-level AUROC: area under the ROC curve of the image scores (anomalous =
    positive), ties counted 1/2, as ``sklearn.metrics.roc_auc_score``. **Higher is
    better.** The 95% CI is a stratified percentile bootstrap over images. Reference:
    Bergmann et al. (2019), MVTec AD (image-level detection)."""

    name = "image_auroc"
    higher_is_better = True
    headline = 1

    def _value(self, y, s):
        return image_auroc(y, s)

    def compute(self, state: ImageScoreState) -> MetricValue:
        out = super().compute(state)
        y = np.asarray(state.labels, dtype=bool)
        if y.any() and not y.all():
            fx, tx, _ = skm.roc_curve(y, np.asarray(state.scores, dtype=float))
            out.curves["image_roc"] = (fx, tx)
        return out

    def confidence_interval(self, state, value, *, n_boot, seed):
        from xeval.stats import bootstrap_auroc_ci

        return bootstrap_auroc_ci(state.labels, state.scores, n_boot=n_boot, seed=seed)


@METRICS.register
class ImageAUPR(_ImageScoreMetric):
    """Image-level average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct
    score thresholds (anomalous = positive), as
    ``sklearn.metrics.average_precision_score``. **Higher is better.** Reference:
    Zhu (2004), "Recall, precision and average precision"."""

    name = "image_aupr"
    higher_is_better = True

    def _value(self, y, s):
        return image_aupr(y, s)


@METRICS.register
class ImageF1Max(_ImageScoreMetric):
    """Image-level F1-max: the largest F1 over all thresholds ``score >= t``. The
    threshold is tuned on the evaluated set (an oracle): **optimistic** by construction.
    **Higher is better.** Reference: as reported by anomalib / PatchCore papers
    (Roth et al. 2022)."""

    name = "image_f1_max"
    higher_is_better = True
    extra_note = "oracle threshold (optimistic)"

    def _value(self, y, s):
        return f1_max(y, s)


@METRICS.register
class ImageFPRAtTPR(_ImageScoreMetric):
    """FPR at ``tpr`` TPR: the false-positive rate of the image scores at the highest
    threshold whose true-positive rate is at least ``tpr`` (default 0.95). **Lower is
    better.** Reference: Hendrycks & Gimpel (2017), "A Baseline for Detecting
    Misclassified and Out-of-Distribution Examples", ICLR."""

    name = "image_fpr_at_tpr"
    higher_is_better = False

    def __init__(self, *, tpr: float = 0.95) -> None:
        if isinstance(tpr, bool) or not 0 < float(tpr) <= 1:
            from xeval.errors import InputError

            raise InputError(f"tpr must lie in (0, 1], got {tpr!r}")
        self.tpr = float(tpr)

    @property
    def label(self) -> str:
        return f"image_fpr@{math.floor(self.tpr * 100 + 0.5):g}tpr"

    def _value(self, y, s):
        return fpr_at_tpr(y, s, tpr=self.tpr)
