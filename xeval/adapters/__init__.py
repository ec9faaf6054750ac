"""Detectors: the common interface and the built-in detectors."""

from xeval.adapters._torch import NotFittedError
from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.adapters.base import Detector
from xeval.adapters.patch_features import PatchFeatures
from xeval.adapters.registry import DETECTORS, build_detector

__all__ = [
    "DETECTORS",
    "ConvAutoencoder",
    "Detector",
    "NotFittedError",
    "PatchFeatures",
    "build_detector",
]
