"""Metrics: pure functions for one-shot use and mergeable states for streaming runs.

Functional API (``masks``/``maps``: an (N, H, W) array or a sequence of 2-D arrays whose
sizes may differ; maps at the mask's native resolution):

- image level: :func:`image_auroc`, :func:`image_aupr`, :func:`f1_max`,
  :func:`fpr_at_tpr`
- pixel level, threshold-free: :func:`pixel_auroc`, :func:`pixel_aupr`, :func:`aupro`
- pixel level at a threshold: :func:`pro_at`, :func:`iou`, :func:`dice`,
  :func:`iou_per_image`; thresholds from normal data: :func:`normal_threshold`

State API (``init / update / merge / compute``): :class:`PixelRanking` (exact or
binned streaming), :class:`ThresholdMetrics`, :class:`ImageMetrics`.
"""

from xeval.metrics.image import ImageMetrics, f1_max, fpr_at_tpr, image_aupr, image_auroc
from xeval.metrics.pixel import PixelRanking, aupro, pixel_aupr, pixel_auroc
from xeval.metrics.resize import resize_to
from xeval.metrics.threshold import (
    ThresholdMetrics,
    dice,
    iou,
    iou_per_image,
    normal_threshold,
    pro_at,
)

__all__ = [
    "ImageMetrics",
    "PixelRanking",
    "ThresholdMetrics",
    "aupro",
    "dice",
    "f1_max",
    "fpr_at_tpr",
    "image_aupr",
    "image_auroc",
    "iou",
    "iou_per_image",
    "normal_threshold",
    "pixel_aupr",
    "pixel_auroc",
    "pro_at",
    "resize_to",
]
