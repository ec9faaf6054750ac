"""Phase 2 -- fit: the detector on normal images, and the normal reference images that
baselines and substrates use."""

from __future__ import annotations

import time

import numpy as np

from xeval.adapters.base import Detector
from xeval.data.loader import iter_batches
from xeval.data.sample import Sample

__all__ = ["fit_detector", "normal_images", "reference_images"]


def normal_images(samples: list[Sample], det: Detector, *, batch_size: int, category: str):
    """Normal images ``(B, C, H, W)`` at the detector's input size, batch by batch."""
    for rec in iter_batches(
        samples,
        batch_size=batch_size,
        image_size=tuple(det.input_size),
        with_masks=False,
        category=category,
    ):
        yield rec.inputs.images


def fit_detector(det: Detector, samples: list[Sample], *, batch_size: int, category: str) -> float:
    """Fit ``det`` on ``samples``; returns the seconds it took."""
    t = time.perf_counter()
    det.fit(normal_images(samples, det, batch_size=batch_size, category=category))
    return time.perf_counter() - t


def reference_images(
    det: Detector,
    samples: list[Sample],
    *,
    seed: int,
    batch_size: int,
    category: str,
    max_images: int = 32,
) -> np.ndarray:
    """A seeded subset (at most ``max_images``) of the fitting images at the detector's
    input size: the normal reference of attribution baselines and of faithfulness
    substrates."""
    rng = np.random.default_rng(seed)
    pick = sorted(rng.permutation(len(samples))[:max_images].tolist())
    chosen = [samples[i] for i in pick]
    return np.concatenate(
        list(normal_images(chosen, det, batch_size=batch_size, category=category))
    )
