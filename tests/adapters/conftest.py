"""Tiny synthetic textures for the detector tests (no files, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest


def stripes(n: int, *, size: int = 32, seed: int = 0) -> np.ndarray:
    """``(n, 3, size, size)`` float32 diagonal stripes with random phase and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        phase = rng.uniform(0, 2 * np.pi)
        img = 0.5 + 0.25 * np.sin(2 * np.pi * (xx + yy) / 8 + phase)
        img = img + 0.03 * rng.standard_normal((size, size))
        out[i] = np.clip(img, 0, 1)[None]
    return out


def plant_defect(
    images: np.ndarray, *, y: int = 12, x: int = 16, r: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Copy of ``images`` with a flat dark square ``[y:y+r, x:x+r]`` planted; returns
    ``(defective, mask)``."""
    out = images.copy()
    out[:, :, y : y + r, x : x + r] = 0.02
    mask = np.zeros(images.shape[2:], bool)
    mask[y : y + r, x : x + r] = True
    return out, mask


@pytest.fixture(scope="session")
def train_images() -> np.ndarray:
    return stripes(24, seed=0)


@pytest.fixture(scope="session")
def test_images() -> np.ndarray:
    return stripes(4, seed=1)


@pytest.fixture(scope="session")
def planted(test_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return plant_defect(test_images)
