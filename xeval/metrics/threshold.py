"""Pixel metrics at one threshold ``t`` (pixel predicted anomalous if ``map >= t``).

- **IoU@t** (pooled): ``TP / (TP + FP + FN)`` over all pixels of the set.
- **Dice@t** (pooled): ``2 TP / (2 TP + FP + FN)``.
- **PRO@t**: mean over all ground-truth regions of the set (8-connected components) of
  ``|region ∩ {map >= t}| / |region|``.
- **IoU per image**: the same IoU on each anomalous image (non-empty mask); NaN for
  normal images (undefined there; excluded from the mean, never counted as hits).

All higher is better. The threshold should come from normal validation data (see
:func:`normal_threshold`); a threshold tuned on the test set is an oracle and is
labelled optimistic in reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import as_image_list, check_map, paired, undefined
from xeval.metrics.regions import label_regions


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
            pred = (a >= self.threshold).reshape(ms.shape)
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
        out["iou@t"] = (
            s.tp / union if union else undefined("iou@t", "no anomalous pixels and none predicted")
        )
        out["dice@t"] = (
            2 * s.tp / (2 * s.tp + s.fp + s.fn)
            if union
            else undefined("dice@t", "no anomalous pixels and none predicted")
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
    (so that about ``1 - quantile`` of normal pixels are flagged)."""
    if not 0.0 < quantile <= 1.0:
        raise InputError(f"quantile must lie in (0, 1], got {quantile!r}")
    arrs = as_image_list(maps, "maps")
    if len(arrs) == 0:
        raise InputError("maps is empty: a threshold needs normal validation maps")
    flat = np.concatenate(
        [check_map(np.asarray(a), f"maps[{i}]").ravel() for i, a in enumerate(arrs)]
    )
    return float(np.quantile(flat, quantile))
