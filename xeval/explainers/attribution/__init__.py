"""Gradient and perturbation attributions of a detector's **image anomaly score**.

Every explainer here wraps a captum attribution class (captum is not copied) called on a
scalar-score forward function ``(N, C, H, W) -> (N,)`` with ``target=None``, by family:

- :mod:`~xeval.explainers.attribution.gradient`: saliency, input x gradient, integrated
  gradients, GradientSHAP, SmoothGrad, Grad-CAM;
- :mod:`~xeval.explainers.attribution.deeplift`: DeepLIFT, DeepLiftShap;
- :mod:`~xeval.explainers.attribution.perturbation`: occlusion, feature ablation,
  KernelSHAP (score only: they explain black boxes too);
- :mod:`~xeval.explainers.attribution.base`: the shared plumbing.
"""

from xeval.explainers.attribution.base import (
    AttributionExplainer,
    ScoreFunction,
    ScoreModule,
    detector_label,
    find_module,
    numpy_score_forward,
    single_run_rows,
)
from xeval.explainers.attribution.deeplift import DeepLift, DeepLiftShap
from xeval.explainers.attribution.gradient import (
    GradCam,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from xeval.explainers.attribution.perturbation import (
    FeatureAblation,
    KernelShap,
    Occlusion,
    superpixels,
)

METHODS = {
    cls.name: cls
    for cls in (
        Saliency,
        InputXGradient,
        IntegratedGradients,
        GradientShap,
        DeepLift,
        DeepLiftShap,
        SmoothGrad,
        GradCam,
        Occlusion,
        FeatureAblation,
        KernelShap,
    )
}
"""The captum-backed attribution methods by name."""

__all__ = [
    "METHODS",
    "AttributionExplainer",
    "DeepLift",
    "DeepLiftShap",
    "FeatureAblation",
    "GradCam",
    "GradientShap",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "Occlusion",
    "Saliency",
    "ScoreFunction",
    "ScoreModule",
    "SmoothGrad",
    "detector_label",
    "find_module",
    "numpy_score_forward",
    "single_run_rows",
    "superpixels",
]
