"""Synthetic defects with exact pixel masks.

Each generator draws a defect *appearance* ``target (H, W, C)`` and a blending weight
``alpha (H, W)`` in ``[0, 1]``; :func:`apply_defect` blends them into a clean uint8 tile
and returns ``(defective_uint8, mask)`` such that, **exactly**::

    mask == (defective != clean).any(axis=-1)

Outside the mask the tile is byte-identical to the clean one; inside it every pixel
changed by at least ``min_change`` grey levels (where the blended change rounds to
less, typically on a soft border, the pixel is pushed by ``min_change`` levels away from
the nearer bound, which is invisible but keeps the mask and the change consistent).

Kinds (:data:`DEFECT_KINDS`)
----------------------------
``scratch``
    A thin curved line, brighter than a dark tile or darker than a bright one.
``stain``
    A smooth irregular blob with a multiplicative colour (or grey-level) shift that
    keeps the underlying texture.
``cut_paste``
    An irregular patch of *another* texture, its mean brought close to the tile's.
``hole``
    A dark, shaded irregular region with a soft border.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

__all__ = ["DEFECT_KINDS", "apply_defect", "make_defect"]

DEFECT_KINDS: tuple[str, ...] = ("scratch", "stain", "cut_paste", "hole")

#: Blending weights below this are dropped (the pixel keeps its clean value).
ALPHA_MIN = 0.15


def _scale(shape: tuple[int, ...]) -> float:
    """Size factor relative to a 128-pixel tile."""
    return min(shape[0], shape[1]) / 128.0


def _blob(
    shape: tuple[int, int], rng: np.random.Generator, *, radius: float, irregularity: float
) -> np.ndarray:
    """A star-shaped irregular blob (bool), its centre well inside the tile."""
    h, w = shape
    margin = min(radius * 0.8, 0.4 * min(h, w))
    cy = rng.uniform(margin, h - margin)
    cx = rng.uniform(margin, w - margin)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = np.arctan2(yy - cy, xx - cx)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, irregularity / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    # anisotropy: a random ellipse
    ratio = rng.uniform(0.6, 1.0)
    phi = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(phi) + dy * np.sin(phi)
    v = (-dx * np.sin(phi) + dy * np.cos(phi)) / ratio
    return np.hypot(u, v) < radius * r


def _curve(shape: tuple[int, int], rng: np.random.Generator, *, length: float) -> np.ndarray:
    """Pixels (bool) on a smooth random curve of about ``length`` pixels."""
    h, w = shape
    y, x = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-2.0, 2.0) / max(length, 1.0)
    line = np.zeros(shape, dtype=bool)
    for _ in range(int(2 * length)):  # steps of half a pixel
        iy, ix = int(round(y)), int(round(x))
        if 0 <= iy < h and 0 <= ix < w:
            line[iy, ix] = True
        heading += bend + rng.normal(0, 0.03)
        y += 0.5 * np.sin(heading)
        x += 0.5 * np.cos(heading)
    return line


def _scratch(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    h, w = tile.shape[:2]
    line = _curve((h, w), rng, length=rng.uniform(0.35, 0.75) * min(h, w))
    dist = ndi.distance_transform_edt(~line)
    half = 0.5 * max(1.0, rng.uniform(1.0, 2.5) * s)
    alpha = np.clip(1.0 - (dist - half), 0.0, 1.0) * rng.uniform(0.55, 0.9)
    value = 0.95 if tile.mean() < 0.5 else 0.05
    return np.full_like(tile, value), alpha


def _stain(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    blob = _blob(
        tile.shape[:2], rng, radius=rng.uniform(0.08, 0.2) * min(tile.shape[:2]), irregularity=0.6
    )
    alpha = ndi.gaussian_filter(blob.astype(np.float64), sigma=max(0.7, rng.uniform(1.0, 3.0) * s))
    alpha *= rng.uniform(0.65, 0.9)
    c = tile.shape[-1]
    if c == 1:
        gain = np.array([rng.uniform(0.35, 0.6)])
    else:  # a hue shift: at least one channel strongly attenuated
        gain = rng.uniform(0.55, 1.0, size=c)
        gain[rng.integers(c)] = rng.uniform(0.25, 0.45)
    # darken bright areas, lighten dark ones (a stain must change what it covers)
    local = float(tile[blob].mean()) if blob.any() else float(tile.mean())
    if rng.random() < np.clip((local - 0.3) / 0.4, 0.0, 1.0):
        target = tile * gain
    else:
        target = 1.0 - (1.0 - tile) * gain
    return target, alpha


def _cut_paste(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    if source is None:
        raise ValueError("cut_paste needs a source patch of another texture")
    src = source.astype(np.float64)
    if src.shape[-1] != tile.shape[-1]:
        if tile.shape[-1] == 1:
            src = (src @ np.array([0.299, 0.587, 0.114]))[..., None]
        else:
            src = np.repeat(src, tile.shape[-1], axis=-1)
    # bring the mean close to the tile's (the texture, not the brightness, is the cue)
    shift = rng.uniform(-0.08, 0.08)
    target = np.clip(src - src.mean() + tile.mean() + shift, 0.0, 1.0)
    blob = _blob(
        tile.shape[:2], rng, radius=rng.uniform(0.1, 0.22) * min(tile.shape[:2]), irregularity=0.8
    )
    alpha = ndi.gaussian_filter(blob.astype(np.float64), sigma=0.6)
    return target, alpha


def _hole(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    h, w = tile.shape[:2]
    blob = _blob((h, w), rng, radius=rng.uniform(0.08, 0.18) * min(h, w), irregularity=0.4)
    depth = ndi.distance_transform_edt(blob)
    depth = depth / max(depth.max(), 1.0)
    dark = rng.uniform(0.03, 0.12)
    shade = dark * (1.2 - 0.6 * depth) + rng.normal(0, 0.01, size=(h, w))
    target = np.repeat(np.clip(shade, 0.0, 1.0)[..., None], tile.shape[-1], axis=-1)
    alpha = np.clip(
        ndi.gaussian_filter(blob.astype(np.float64), sigma=max(0.7, rng.uniform(1.0, 2.0) * s))
        * 1.3,
        0,
        1,
    )
    return target, alpha


_GENERATORS: dict[str, Callable] = {
    "scratch": _scratch,
    "stain": _stain,
    "cut_paste": _cut_paste,
    "hole": _hole,
}


def apply_defect(
    clean: np.ndarray,
    target: np.ndarray,
    alpha: np.ndarray,
    *,
    min_change: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``target`` into the uint8 tile ``clean`` with weight ``alpha``.

    Parameters
    ----------
    clean:
        uint8 ``(H, W, C)`` clean tile.
    target:
        float ``(H, W, C)`` defect appearance in ``[0, 1]``.
    alpha:
        float ``(H, W)`` blending weight; weights below :data:`ALPHA_MIN` are dropped.
    min_change:
        Smallest change (grey levels) of a defective pixel.

    Returns
    -------
    tuple
        ``(defective uint8 (H, W, C), mask bool (H, W))`` with
        ``mask == (defective != clean).any(-1)``.
    """
    mask = alpha >= ALPHA_MIN
    a = np.where(mask, alpha, 0.0)[..., None]
    x = clean.astype(np.float64) / 255.0
    out = np.rint(np.clip(x * (1.0 - a) + target * a, 0.0, 1.0) * 255.0).astype(np.int16)
    base = clean.astype(np.int16)
    weak = mask & (np.abs(out - base).max(axis=-1) < min_change)
    if weak.any():
        direction = np.where(base.mean(axis=-1, keepdims=True) < 128, 1, -1).astype(np.int16)
        pushed = np.clip(base + direction * min_change, 0, 255)
        out = np.where(weak[..., None], pushed, out)
    out = np.where(mask[..., None], out, base).astype(np.uint8)
    return out, mask


def make_defect(
    kind: str,
    clean: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    min_area: int | None = None,
    max_tries: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a defect of ``kind`` on the uint8 tile ``clean`` ``(H, W, C)``.

    Parameters
    ----------
    kind:
        One of :data:`DEFECT_KINDS`.
    clean:
        uint8 ``(H, W, C)`` tile (C = 1 or 3).
    rng:
        Random generator (the only source of randomness: deterministic for a seed).
    source:
        float ``(H, W, C')`` patch of another texture in ``[0, 1]`` (``cut_paste`` only).
    min_area:
        Smallest accepted mask area in pixels (default: 0.3 % of the tile, at least 6);
        a smaller draw is redrawn.
    max_tries:
        Draws before giving up.

    Returns
    -------
    tuple
        ``(defective uint8 (H, W, C), mask bool (H, W))``, see :func:`apply_defect`.
    """
    if kind not in _GENERATORS:
        raise ValueError(f"unknown defect kind {kind!r} (expected one of {DEFECT_KINDS})")
    if clean.dtype != np.uint8 or clean.ndim != 3:
        raise ValueError(f"clean tile must be uint8 (H, W, C), got {clean.dtype} {clean.shape}")
    h, w = clean.shape[:2]
    need = max(6, int(0.003 * h * w)) if min_area is None else int(min_area)
    x = clean.astype(np.float64) / 255.0
    for _ in range(max_tries):
        target, alpha = _GENERATORS[kind](x, rng, source)
        out, mask = apply_defect(clean, target, alpha)
        if mask.sum() >= need:
            return out, mask
    raise RuntimeError(
        f"could not draw a {kind} defect of at least {need} pixels on a {h}x{w} tile"
    )
