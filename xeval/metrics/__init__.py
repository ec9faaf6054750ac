"""Metrics: pure functions for one-shot use and mergeable states for streaming runs.

Functional API (``masks``/``maps``: an (N, H, W) array or a sequence of 2-D arrays whose
sizes may differ; maps at the mask's native resolution):

- image level: :func:`image_auroc`, :func:`image_aupr`, :func:`f1_max`,
  :func:`fpr_at_tpr`
- pixel level, threshold-free: :func:`pixel_auroc`, :func:`pixel_aupr`, :func:`aupro`,
  :func:`aupimo` / :func:`aupimo_per_image` (Bertoldo et al. 2024), :func:`auc_spro` /
  :func:`spro_at` (MVTec LOCO)
- pixel level at a threshold: :func:`pro_at`, :func:`iou`, :func:`dice`,
  :func:`iou_per_image`; thresholds from normal data: :func:`normal_threshold`

Faithfulness (call the detector on perturbed images, batched; removed pixels replaced
by normal content, see :mod:`xeval.substrates`): :func:`deletion_auc`,
:func:`insertion_auc`, :func:`deletion_curve`, :func:`insertion_curve`, :func:`aopc`,
:func:`faithfulness_correlation`, :func:`infidelity`.

Explanations against masks: :func:`pointing_game`, :func:`relevance_mass`,
:func:`relevance_rank`, :func:`top_k_intersection` (images with an empty mask are
excluded, never hits); complexity: :func:`gini_sparseness`, :func:`entropy_complexity`.

Robustness (call an explanation function on perturbed images; lower = more robust):
:func:`max_sensitivity`, :func:`avg_sensitivity`, :func:`local_lipschitz`. Sanity
check: :func:`model_parameter_randomisation` (cascading MPRT, Spearman and SSIM per
layer) and :func:`mprt_summary`.

State API (``init / update / merge / compute``): :class:`PixelRanking` (exact or
binned streaming), :class:`ThresholdMetrics`, :class:`ImageMetrics`,
:class:`LocalisationMetrics`, :class:`ComplexityMetrics`.

Video (``labels`` / ``scores``: one 1-D array per video): :func:`frame_auroc`,
:func:`frame_aupr`, :func:`frame_eer` (micro or macro, optional sentinel convention),
:func:`preprocess_frame_scores` (smoothing, per-video min-max -- optimistic --, dropped
leading frames, all off by default); the UCSD pixel-level criterion
:func:`pixel_criterion_curve` / :func:`pixel_criterion_auc`; region and track detection
criteria :func:`rbdc` / :func:`tbdc` (Street Scene) and :func:`regions_from_maps`.
Reasons (X-MAN): :func:`reason_ap`, :func:`reason_map`, :func:`reason_top_k`,
:func:`reason_confusion`, :func:`most_confused`, :func:`coarse_labels` /
:func:`coarse_scores`.

Reliability rules (every function and state):

- **undefined is NaN, never a default**: where a metric is undefined for the input (one
  class, no region, an empty mask, a constant map or validation set, a binned bound that
  covers the whole range, fewer than 2 values for a CI...) the value is NaN with an
  :class:`~xeval.errors.UndefinedMetricWarning` that says why; an option that makes the
  computation meaningless (a deletion patch covering the whole image) is an error;
- **no silent loss of precision or range**: maps are ranked and resized in their own
  float dtype (float64 stays float64), sums and norms near the float limits are rescaled
  by exact powers of two, integer maps beyond ``±2**53`` are refused, and thresholds are
  compared exactly whatever the map's dtype;
- **no silent reshaping**: masks and maps must have equal shapes; :func:`resize_to`
  upsamples a map of the mask's aspect ratio and refuses another one;
- **aligned updates**: states refuse ids that do not match the values one to one, or an
  image added twice (in an update or across a merge).

Registered metrics (what run configs name): every metric is also a class registered in
:data:`xeval.registry.METRICS` (:class:`~xeval.metrics.base.Metric`: name, direction,
family, options, ``init / update(state, record, explanation) / merge / compute``);
``xeval.registry.METRICS.names()`` lists them.
"""

from xeval.metrics.aupimo import aupimo, aupimo_per_image
from xeval.metrics.base import Explanation, Metric, MetricValue, ProbeContext
from xeval.metrics.complexity import ComplexityMetrics, entropy_complexity, gini_sparseness
from xeval.metrics.detection import ImageMetrics, f1_max, fpr_at_tpr, image_aupr, image_auroc
from xeval.metrics.faithfulness import (
    PerturbationCurve,
    aopc,
    deletion_auc,
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    insertion_auc,
    insertion_curve,
    perturbation_curve,
)
from xeval.metrics.frames import (
    frame_aupr,
    frame_auroc,
    frame_eer,
    pixel_criterion_auc,
    pixel_criterion_curve,
    pixel_criterion_values,
    preprocess_frame_scores,
)
from xeval.metrics.localisation import (
    LocalisationMetrics,
    pointing_game,
    pointing_game_per_image,
    relevance_mass,
    relevance_mass_per_image,
    relevance_rank,
    relevance_rank_per_image,
    top_k_intersection,
    top_k_intersection_per_image,
)
from xeval.metrics.pixel import PixelRanking, aupro, pixel_aupr, pixel_auroc
from xeval.metrics.randomisation import (
    MPRTSummary,
    RandomisationResult,
    UntestableError,
    model_parameter_randomisation,
    mprt_summary,
)
from xeval.metrics.reasons import (
    coarse_labels,
    coarse_scores,
    most_confused,
    reason_ap,
    reason_confusion,
    reason_map,
    reason_top_k,
)
from xeval.metrics.resize import resize_to
from xeval.metrics.robustness import avg_sensitivity, local_lipschitz, max_sensitivity
from xeval.metrics.spro import auc_spro, spro_at, spro_curve
from xeval.metrics.threshold import (
    ThresholdMetrics,
    dice,
    iou,
    iou_per_image,
    normal_threshold,
    pro_at,
)
from xeval.metrics.tracks import rbdc, rbdc_curve, regions_from_maps, tbdc, tbdc_curve

__all__ = [
    "coarse_labels",
    "coarse_scores",
    "frame_aupr",
    "frame_auroc",
    "frame_eer",
    "most_confused",
    "pixel_criterion_auc",
    "pixel_criterion_curve",
    "pixel_criterion_values",
    "preprocess_frame_scores",
    "rbdc",
    "rbdc_curve",
    "reason_ap",
    "reason_confusion",
    "reason_map",
    "reason_top_k",
    "regions_from_maps",
    "tbdc",
    "tbdc_curve",
    "Explanation",
    "Metric",
    "MetricValue",
    "ProbeContext",
    "auc_spro",
    "aupimo",
    "aupimo_per_image",
    "perturbation_curve",
    "spro_at",
    "spro_curve",
    "ComplexityMetrics",
    "LocalisationMetrics",
    "entropy_complexity",
    "gini_sparseness",
    "pointing_game",
    "pointing_game_per_image",
    "relevance_mass",
    "relevance_mass_per_image",
    "relevance_rank",
    "relevance_rank_per_image",
    "top_k_intersection",
    "top_k_intersection_per_image",
    "ImageMetrics",
    "PerturbationCurve",
    "PixelRanking",
    "ThresholdMetrics",
    "aopc",
    "aupro",
    "deletion_auc",
    "deletion_curve",
    "dice",
    "f1_max",
    "faithfulness_correlation",
    "fpr_at_tpr",
    "image_aupr",
    "image_auroc",
    "infidelity",
    "insertion_auc",
    "insertion_curve",
    "iou",
    "iou_per_image",
    "normal_threshold",
    "pixel_aupr",
    "pixel_auroc",
    "pro_at",
    "resize_to",
    "MPRTSummary",
    "RandomisationResult",
    "UntestableError",
    "avg_sensitivity",
    "local_lipschitz",
    "max_sensitivity",
    "model_parameter_randomisation",
    "mprt_summary",
]
