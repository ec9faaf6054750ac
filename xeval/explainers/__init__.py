"""Explainers: the detector's native map, trivial controls, captum attributions of the
anomaly score and label-free importance, all registered in
:data:`xeval.registry.EXPLAINERS`."""

from xeval.explainers.base import Explainer
from xeval.explainers.controls import CentrePrior, RandomMap, SobelEdges
from xeval.explainers.native import NativeMap
from xeval.explainers.registry import EXPLAINERS, build_explainer

__all__ = [
    "EXPLAINERS",
    "CentrePrior",
    "Explainer",
    "NativeMap",
    "RandomMap",
    "SobelEdges",
    "build_explainer",
]
