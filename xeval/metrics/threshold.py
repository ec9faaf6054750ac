"""Pixel metrics at one threshold ``t`` (pixel predicted anomalous if ``map >= t``).

- **IoU@t** (pooled): ``TP / (TP + FP + FN)`` over all pixels of the set.
- **Dice@t** (pooled): ``2 TP / (2 TP + FP + FN)``.
- **PRO@t**: mean over all ground-truth regions of the set (8-connected components) of
  ``|region ∩ {map >= t}| / |region|``.
- **IoU per image**: the same IoU on each anomalous image (non-empty mask); NaN for
  normal images (undefined there; excluded from the mean, never counted as hits).

All higher is better. The threshold should come from normal validation data (see
:func:`normal_threshold`); a threshold tuned on the test set is an oracle and is
labelled optimistic in reports. ``map >= t`` is compared exactly whatever the map's
dtype (a float32 map is not compared with ``t`` rounded to float32).

Undefined (NaN with an :class:`~xeval.errors.UndefinedMetricWarning`): IoU@t and Dice@t
when the set has no anomalous pixel (every mask empty: there is nothing to localise,
whatever is flagged), PRO@t when it has no ground-truth region, the mean per-image IoU
when no image is anomalous; a threshold from normal validation maps that are constant
(:func:`normal_threshold`), and every metric at such a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import (
    as_image_list,
    at_least,
    check_map,
    extend_ids,
    merged_ids,
    paired,
    pow2_scale,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.metrics.regions import label_regions
from xeval.registry import METRICS


@dataclass
class ThresholdState:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    pro_sum: float = 0.0
    n_regions: int = 0
    iou_per_image: list = field(default_factory=list)
    dice_per_image: list = field(default_factory=list)

    def merge(self, o: ThresholdState) -> ThresholdState:
        return ThresholdState(
            self.tp + o.tp,
            self.fp + o.fp,
            self.fn + o.fn,
            self.pro_sum + o.pro_sum,
            self.n_regions + o.n_regions,
            self.iou_per_image + o.iou_per_image,
            self.dice_per_image + o.dice_per_image,
        )


class ThresholdMetrics:
    """Mergeable metric for IoU@t, Dice@t, PRO@t and per-image IoU/Dice."""

    def __init__(self, *, threshold: float):
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise InputError(f"threshold must be a finite number, got {threshold!r}")
        self.threshold = threshold

    def init(self) -> ThresholdState:
        return ThresholdState()

    def update(self, state: ThresholdState, masks, maps) -> ThresholdState:
        for m, a in paired(masks, maps):
            ms = m if m.ndim == 3 else m[None]
            pred = at_least(a, self.threshold).reshape(ms.shape)
            inter = (pred & ms).sum(axis=(1, 2))
            npred = pred.sum(axis=(1, 2))
            ngt = ms.sum(axis=(1, 2))
            state.tp += int(inter.sum())
            state.fp += int((npred - inter).sum())
            state.fn += int((ngt - inter).sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                iou = np.where(ngt > 0, inter / (ngt + npred - inter), np.nan)
                dice = np.where(ngt > 0, 2 * inter / (ngt + npred), np.nan)
            state.iou_per_image.extend(iou.tolist())
            state.dice_per_image.extend(dice.tolist())
            if ngt.any():
                labels, n = label_regions(ms)
                lab = labels[ms]
                sizes = np.bincount(lab, minlength=n + 1)[1:]
                hits = np.bincount(lab, weights=pred[ms], minlength=n + 1)[1:]
                state.pro_sum += float(np.sum(hits / sizes))
                state.n_regions += n
        return state

    @staticmethod
    def merge(a: ThresholdState, b: ThresholdState) -> ThresholdState:
        return a.merge(b)

    def compute(self, s: ThresholdState) -> dict:
        out: dict = {"threshold": self.threshold}
        union = s.tp + s.fp + s.fn
        none = "no anomalous pixel in the set (every mask is empty): nothing to localise"
        out["iou@t"] = s.tp / union if s.tp + s.fn else undefined("iou@t", none)
        out["dice@t"] = (
            2 * s.tp / (2 * s.tp + s.fp + s.fn) if s.tp + s.fn else undefined("dice@t", none)
        )
        out["pro@t"] = (
            s.pro_sum / s.n_regions
            if s.n_regions
            else undefined("pro@t", "no ground-truth regions")
        )
        ious = np.asarray(s.iou_per_image, dtype=float)
        dices = np.asarray(s.dice_per_image, dtype=float)
        out["iou_per_image"] = ious
        out["dice_per_image"] = dices
        defined = ~np.isnan(ious)
        out["iou_per_image@t"] = (
            float(ious[defined].mean())
            if defined.any()
            else undefined("iou_per_image@t", "no anomalous image")
        )
        return out


def _pooled(masks, maps, threshold: float, key: str) -> float:
    metric = ThresholdMetrics(threshold=threshold)
    return float(metric.compute(metric.update(metric.init(), masks, maps))[key])


def iou(masks, maps, *, threshold: float) -> float:
    """Pooled IoU of ``{map >= threshold}`` with the masks over the set (higher is better)."""
    return _pooled(masks, maps, threshold, "iou@t")


def dice(masks, maps, *, threshold: float) -> float:
    """Pooled Dice coefficient of ``{map >= threshold}`` with the masks (higher is better)."""
    return _pooled(masks, maps, threshold, "dice@t")


def pro_at(masks, maps, *, threshold: float) -> float:
    """Per-region overlap at ``threshold``: mean over all GT regions of the covered
    fraction (higher is better)."""
    return _pooled(masks, maps, threshold, "pro@t")


def iou_per_image(masks, maps, *, threshold: float) -> np.ndarray:
    """IoU of each image (NaN for images with an empty mask)."""
    metric = ThresholdMetrics(threshold=threshold)
    return metric.compute(metric.update(metric.init(), masks, maps))["iou_per_image"]


def normal_threshold(maps, *, quantile: float = 0.99) -> float:
    """Threshold = the ``quantile`` of all pixel scores of **normal validation** maps
    (so that about ``1 - quantile`` of normal pixels are flagged; ``np.quantile``'s
    linear interpolation, without overflow for scores near the float limits).

    Undefined (NaN with an :class:`~xeval.errors.UndefinedMetricWarning`) when every
    pixel of the validation maps has the same score: a threshold then flags all normal
    pixels or none, never about ``1 - quantile`` of them."""
    if not 0.0 < quantile <= 1.0:
        raise InputError(f"quantile must lie in (0, 1], got {quantile!r}")
    arrs = as_image_list(maps, "maps")
    if len(arrs) == 0:
        raise InputError("maps is empty: a threshold needs normal validation maps")
    flat = np.concatenate(
        [check_map(np.asarray(a), f"maps[{i}]").ravel() for i, a in enumerate(arrs)]
    )
    return quantile_of(flat, quantile, "normal_threshold")


def constant_threshold_why(value: float, n: int) -> str:
    return (
        f"the normal validation maps are constant (all {n} pixel scores equal {value!r}): "
        "a threshold there flags every normal pixel or none, not a chosen share of them"
    )


def quantile_of(values: np.ndarray, q: float, what: str) -> float:
    """``np.quantile(values, q)`` of finite ``values``; NaN with a warning when they are
    all equal (see :func:`normal_threshold`)."""
    if values.size == 0:
        raise InputError(f"{what}: no values: a threshold needs normal validation maps")
    lo, hi = values.min(), values.max()
    if lo == hi:
        return undefined(what, constant_threshold_why(float(lo), values.size))
    with np.errstate(over="ignore", invalid="ignore"):
        t = float(np.quantile(values, q))
    if not np.isfinite(t):  # the interpolation overflowed: rescale exactly first
        s = float(pow2_scale(max(abs(float(lo)), abs(float(hi)))))
        t = float(np.quantile(values * s, q)) / s
    return t


# ------------------------------------------------------------------ registered metrics
@dataclass
class CalibratedState:
    """A :class:`ThresholdState` at the threshold calibrated for the explainer, with the
    ids of the images in update order."""

    threshold: float | None = None
    ids: list = field(default_factory=list)
    inner: ThresholdState = field(default_factory=ThresholdState)

    def merge(self, o: CalibratedState) -> CalibratedState:
        if None not in (self.threshold, o.threshold) and not _same(self.threshold, o.threshold):
            raise InputError(
                f"cannot merge threshold states at different thresholds ({self.threshold} "
                f"and {o.threshold}): shards of one unit share one calibration"
            )
        t = self.threshold if self.threshold is not None else o.threshold
        ids = merged_ids(self.ids, o.ids, "merging threshold states")
        return CalibratedState(t, ids, self.inner.merge(o.inner))


def _same(a: float, b: float) -> bool:
    """Equal thresholds (an undefined, NaN, threshold equals itself)."""
    return a == b or (math.isnan(a) and math.isnan(b))


class _AtThreshold(Metric):
    """Base of the metrics at a threshold chosen on **normal validation** data: the
    ``quantile`` of the pixel scores of the explainer's maps on normal images held out
    from training (about ``1 - quantile`` of normal pixels flagged)."""

    family = "localisation"
    needs = frozenset({"masks", "threshold"})
    higher_is_better = True
    key: str = ""

    def __init__(self, *, quantile: float = 0.99) -> None:
        if isinstance(quantile, bool) or not 0.0 < float(quantile) <= 1.0:
            raise InputError(f"quantile must lie in (0, 1], got {quantile!r}")
        self.quantile = float(quantile)

    @property
    def label(self) -> str:
        return f"{self.name}@t"

    def calibrations(self) -> list[tuple]:
        return [("normal_quantile", self.quantile)]

    def shares(self):
        return ("threshold", self.quantile)

    def init(self) -> CalibratedState:
        return CalibratedState()

    def update(self, state: CalibratedState, record, explanation) -> CalibratedState:
        check_aligned(record, explanation, self.label)
        t = float(explanation.calibration[("normal_quantile", self.quantile)])
        if state.threshold is None:
            state.threshold = t
        elif not _same(state.threshold, t):
            raise InputError(
                f"{self.label}: threshold changed between updates ({state.threshold} -> {t})"
            )
        extend_ids(list(state.ids), record.ids, f"metric {self.label!r}")
        if math.isnan(t):  # undefined threshold (constant validation maps): no values
            n = len(record)
            state.inner.iou_per_image.extend([math.nan] * n)
            state.inner.dice_per_image.extend([math.nan] * n)
        else:
            ThresholdMetrics(threshold=t).update(
                state.inner, record.targets.masks, explanation.native
            )
        extend_ids(state.ids, record.ids, f"metric {self.label!r}")
        return state

    def merge(self, a: CalibratedState, b: CalibratedState) -> CalibratedState:
        return a.merge(b)

    def _note(self) -> str:
        return f"threshold = {self.quantile:g} quantile of normal validation pixels"

    def compute(self, state: CalibratedState) -> MetricValue:
        t = math.nan if state.threshold is None else state.threshold
        if state.threshold is None:
            return MetricValue(value=undefined(self.label, "no images"), threshold=t)
        if math.isnan(t):
            why = (
                f"its threshold (the {self.quantile:g} quantile of normal validation pixels) "
                "is undefined: the normal validation maps are constant"
            )
            return MetricValue(value=undefined(self.label, why), threshold=t, note=self._note())
        res = ThresholdMetrics(threshold=t).compute(state.inner)
        return MetricValue(value=res[self.key], n=len(state.ids), threshold=t, note=self._note())


@METRICS.register
class IoUAtThreshold(_AtThreshold):
    """IoU@t (pooled): ``TP / (TP + FP + FN)`` over all pixels of the set, a pixel being
    predicted anomalous when ``map >= t``; t calibrated on normal validation pixels.
    **Higher is better.** Reference: Jaccard index, as used for anomaly segmentation in
    Bergmann et al. (2019), MVTec AD."""

    name = "iou"
    key = "iou@t"
    headline = 2
    compare_with = "iou_oracle"

    def relate(self, mine: MetricValue, other: MetricValue) -> str:
        """Say when the validation threshold, not the map, limits IoU@t: less than half
        of the best IoU any threshold reaches on the same maps."""
        if not (math.isfinite(mine.value) and math.isfinite(other.value)):
            return ""
        if other.value > 0 and mine.value < 0.5 * other.value:
            return (
                f"the validation threshold t = {mine.threshold:.4g} reaches {mine.value:.3f}, "
                f"less than half of the {other.value:.3f} of the best threshold "
                f"({other.threshold:.4g}, tuned on the test set): the threshold rule, not "
                "the map, limits this value (normal pixels score high, or anomalies low)"
            )
        return ""


@METRICS.register
class DiceAtThreshold(_AtThreshold):
    """Dice@t (pooled): ``2 TP / (2 TP + FP + FN)`` over all pixels of the set at the
    calibrated threshold ``map >= t``. **Higher is better.** Reference: Dice (1945),
    "Measures of the amount of ecologic association between species"."""

    name = "dice"
    key = "dice@t"


@METRICS.register
class PROAtThreshold(_AtThreshold):
    """PRO@t: mean over all ground-truth regions of the set (8-connected components of
    the masks) of ``|region ∩ {map >= t}| / |region|`` at the calibrated threshold.
    **Higher is better.** Reference: Bergmann et al. (2020), "Uninformed Students",
    CVPR (per-region overlap)."""

    name = "pro"
    key = "pro@t"


@METRICS.register
class IoUPerImageAtThreshold(_AtThreshold):
    """Per-image IoU@t: ``|P ∩ G| / |P ∪ G|`` on each anomalous image (``P = {map >= t}``
    at the calibrated threshold, ``G`` its mask), averaged over anomalous images; NaN
    for images with an empty mask (excluded, never counted). **Higher is better.**
    Reference: per-image IoU as in Zavrtanik et al. (2021), DRAEM."""

    name = "iou_per_image"
    per_image = True
    key = "iou_per_image@t"

    def _note(self) -> str:
        return super()._note() + "; mean over anomalous images"

    def compute(self, state: CalibratedState) -> MetricValue:
        out = super().compute(state)
        per = np.asarray(state.inner.iou_per_image, dtype=float)
        out.per_image = per
        out.ids = list(state.ids)
        out.n = int(np.count_nonzero(~np.isnan(per)))
        return out
