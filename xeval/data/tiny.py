"""Tiny datasets in exact MVTec AD layout, written on the fly for tests and examples."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from xeval.data.defects import DEFECT_KINDS, make_defect
from xeval.errors import InputError

__all__ = ["write_tiny_mvtec", "noise_texture"]


def noise_texture(
    size: tuple[int, int], rng: np.random.Generator, *, channels: int = 3, sigma: float = 1.5
) -> np.ndarray:
    """A smooth random texture, uint8 ``(H, W, channels)``."""
    h, w = size
    noise = rng.random((h, w, channels))
    smooth = ndi.gaussian_filter(noise, sigma=(sigma, sigma, 0), mode="wrap")
    lo, hi = smooth.min(), smooth.max()
    smooth = 0.2 + 0.6 * (smooth - lo) / max(hi - lo, 1e-12)
    return np.rint(smooth * 255).astype(np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG")


def write_tiny_mvtec(
    root: str | os.PathLike,
    *,
    categories: Sequence[str] = ("a",),
    n_train: int = 4,
    n_good: int = 2,
    n_defect: int = 2,
    size: tuple[int, int] = (32, 32),
    defects: Sequence[str] = ("scratch",),
    seed: int = 0,
) -> Path:
    """Write a tiny dataset in MVTec AD layout under ``root`` and return ``root``.

    Images are smooth RGB noise; defective images carry synthetic defects
    (:mod:`xeval.data.defects`) with exact 0/255 masks
    ``ground_truth/<defect>/<id>_mask.png``.

    Parameters
    ----------
    root:
        Output folder (created; existing files with the same names are overwritten).
    categories:
        Category folder names.
    n_train, n_good, n_defect:
        Normal train images, normal test images, defective test images per defect kind.
    size:
        ``(H, W)`` of every image.
    defects:
        Defect kinds among :data:`~xeval.data.defects.DEFECT_KINDS`.
    seed:
        Seed of the random draws (same seed: same files).
    """
    for k in defects:
        if k not in DEFECT_KINDS:
            raise InputError(f"unknown defect kind {k!r} (expected one of {DEFECT_KINDS})")
    r = Path(root)
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    for cat in categories:
        base = r / cat
        for i in range(n_train):
            _save(base / "train" / "good" / f"{i:03d}.png", noise_texture((h, w), rng))
        for i in range(n_good):
            _save(base / "test" / "good" / f"{i:03d}.png", noise_texture((h, w), rng))
        for kind in defects:
            for i in range(n_defect):
                clean = noise_texture((h, w), rng)
                source = (
                    noise_texture((h, w), rng, sigma=0.6).astype(np.float64) / 255.0
                    if kind == "cut_paste"
                    else None
                )
                img, mask = make_defect(kind, clean, rng, source=source)
                _save(base / "test" / kind / f"{i:03d}.png", img)
                _save(
                    base / "ground_truth" / kind / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255
                )
    return r
