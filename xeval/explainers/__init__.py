"""Explainers: the detector's native map and trivial controls."""

from xeval.explainers.base import Explainer

__all__ = ["Explainer"]
