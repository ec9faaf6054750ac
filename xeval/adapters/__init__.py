"""Detectors: the common interface, the built-in detectors and the recipe builder."""

from xeval.adapters._torch import NotFittedError
from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.adapters.base import Detector
from xeval.adapters.imports import add_safe_imports, get_safe_imports, safe_imports
from xeval.adapters.patch_features import PatchFeatures
from xeval.adapters.registry import DETECTORS, build_detector, check_recipe

__all__ = [
    "add_safe_imports",
    "get_safe_imports",
    "safe_imports",
    "DETECTORS",
    "ConvAutoencoder",
    "Detector",
    "NotFittedError",
    "PatchFeatures",
    "build_detector",
    "check_recipe",
]
