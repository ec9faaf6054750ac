"""Detectors: the common interface and the built-in detectors."""

from xeval.adapters.base import Detector

__all__ = ["Detector"]
