"""Synthetic defects with exact pixel masks.

Each generator draws a defect *appearance* ``target (H, W, C)`` and a blending weight
``alpha (H, W)`` in ``[0, 1]``; :func:`apply_defect` blends them into a clean uint8 tile
and returns ``(defective_uint8, mask)`` such that, **exactly**::

    mask == (defective != clean).any(axis=-1)

Outside the mask the tile is byte-identical to the clean one; inside it every pixel
changed by at least ``min_change`` grey levels (where the blended change rounds to
less, typically on a soft border, the pixel is pushed by ``min_change`` levels away from
the nearer bound, which is invisible but keeps the mask and the change consistent).

Placement
---------
Defects are placed uniformly: the centre of each defect (the midpoint of a scratch) is
uniform over the tile grown by the defect's own reach, so every pixel of the tile is
equally likely to be covered, borders and corners included (the central square of half
the side holds about 25 % of the mask pixels, as it holds 25 % of the area). A defect
may touch the border or be cut by it: it is drawn on a padded canvas and cropped, so a
clipped defect looks like a larger one partly outside the tile, and its mask stays exact.
A draw leaving fewer than ``min_area`` pixels inside the tile is redrawn whole (this
removes only slivers, the spread stays flat within noise).

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


def _centre(
    shape: tuple[int, int], rng: np.random.Generator, *, reach: tuple[float, float, float, float]
) -> tuple[float, float]:
    """A defect centre, uniform over the tile grown by the defect's reach.

    ``reach = (up, down, left, right)``: how far the defect (its blending weight
    included) can extend from its centre in each direction. The centre is uniform over
    ``[-down, H - 1 + up] x [-right, W - 1 + left]``, the positions from which the defect
    can cover a tile pixel, so **every pixel of the tile is equally likely to be
    covered** (no centre bias, borders included); the part outside the tile is clipped.
    Draws that leave too little inside the tile are redrawn by :func:`make_defect`.
    """
    h, w = shape
    up, down, left, right = (max(0.0, float(r)) for r in reach)
    return rng.uniform(-down, h - 1 + up), rng.uniform(-right, w - 1 + left)


def _crop(a: np.ndarray, pad: int) -> np.ndarray:
    """The tile part of an array computed on the tile padded by ``pad`` on every side."""
    return a[pad : a.shape[0] - pad, pad : a.shape[1] - pad]


def _pad_for(sigma: float) -> int:
    """Padding that keeps a Gaussian filter of ``sigma`` exact inside the tile."""
    return int(np.ceil(3.0 * sigma)) + 1


def _blob(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    radius: float,
    irregularity: float,
    pad: int,
    spill: float,
) -> np.ndarray:
    """A star-shaped irregular blob (bool) on the tile padded by ``pad`` on every side.

    Its centre is drawn by :func:`_centre` (anywhere over the tile, possibly outside it,
    clipped by the border); ``spill`` is how far the blending weight derived from the
    blob (a blur) reaches beyond the blob.
    """
    h, w = shape
    amp = [rng.uniform(0, irregularity / k) for k in range(2, 6)]
    phase = [rng.uniform(0, 2 * np.pi) for _ in range(2, 6)]
    ratio = rng.uniform(0.6, 1.0)  # anisotropy: a random ellipse
    phi = rng.uniform(0, np.pi)

    def rel(theta):
        r = np.ones_like(theta)
        for k, a, ph in zip(range(2, 6), amp, phase, strict=True):
            r += a * np.cos(k * theta + ph)
        return r

    # the blob lies within radius * max(r) of its centre (the ellipse only shrinks it)
    extent = radius * float(rel(np.linspace(0, 2 * np.pi, 721)).max()) + 1.0 + spill
    cy, cx = _centre(shape, rng, reach=(extent, extent, extent, extent))
    yy, xx = np.mgrid[-pad : h + pad, -pad : w + pad].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    u = dx * np.cos(phi) + dy * np.sin(phi)
    v = (-dx * np.sin(phi) + dy * np.cos(phi)) / ratio
    return np.hypot(u, v) < radius * rel(theta)


def _curve(
    shape: tuple[int, int], rng: np.random.Generator, *, length: float, pad: int
) -> np.ndarray:
    """Pixels (bool) on a smooth random curve of about ``length`` pixels, on the tile
    padded by ``pad`` on every side; the curve's midpoint is drawn by :func:`_centre`."""
    h, w = shape
    n = max(int(2 * length), 2)  # steps of half a pixel
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-2.0, 2.0) / max(length, 1.0)
    headings = heading + np.cumsum(bend + rng.normal(0, 0.03, size=n - 1))
    steps = 0.5 * np.stack([np.sin(headings), np.cos(headings)], axis=1)
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    path -= path[n // 2]  # offsets from the midpoint
    lo, hi = path.min(axis=0), path.max(axis=0)
    cy, cx = _centre(shape, rng, reach=(-lo[0] + pad, hi[0] + pad, -lo[1] + pad, hi[1] + pad))
    iy = np.rint(path[:, 0] + cy).astype(np.int64) + pad
    ix = np.rint(path[:, 1] + cx).astype(np.int64) + pad
    keep = (iy >= 0) & (iy < h + 2 * pad) & (ix >= 0) & (ix < w + 2 * pad)
    line = np.zeros((h + 2 * pad, w + 2 * pad), dtype=bool)
    line[iy[keep], ix[keep]] = True
    return line


def _scratch(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    h, w = tile.shape[:2]
    length = rng.uniform(0.35, 0.75) * min(h, w)
    half = 0.5 * max(1.0, rng.uniform(1.0, 2.5) * s)
    pad = int(np.ceil(half)) + 2  # the weight is > 0 up to half + 1 from the line
    line = _curve((h, w), rng, length=length, pad=pad)
    if not line.any():
        return np.zeros_like(tile), np.zeros((h, w))
    dist = _crop(ndi.distance_transform_edt(~line), pad)
    alpha = np.clip(1.0 - (dist - half), 0.0, 1.0) * rng.uniform(0.55, 0.9)
    value = 0.95 if tile.mean() < 0.5 else 0.05
    return np.full_like(tile, value), alpha


def _stain(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    h, w = tile.shape[:2]
    radius = rng.uniform(0.08, 0.2) * min(h, w)
    sigma = max(0.7, rng.uniform(1.0, 3.0) * s)
    pad = _pad_for(sigma)
    big = _blob((h, w), rng, radius=radius, irregularity=0.6, pad=pad, spill=2 * sigma)
    alpha = _crop(ndi.gaussian_filter(big.astype(np.float64), sigma=sigma), pad)
    alpha *= rng.uniform(0.65, 0.9)
    blob = _crop(big, pad)
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
    h, w = tile.shape[:2]
    sigma = 0.6
    pad = _pad_for(sigma)
    big = _blob(
        (h, w),
        rng,
        radius=rng.uniform(0.1, 0.22) * min(h, w),
        irregularity=0.8,
        pad=pad,
        spill=2 * sigma,
    )
    alpha = _crop(ndi.gaussian_filter(big.astype(np.float64), sigma=sigma), pad)
    return target, alpha


def _hole(tile: np.ndarray, rng: np.random.Generator, source: np.ndarray | None):
    s = _scale(tile.shape)
    h, w = tile.shape[:2]
    radius = rng.uniform(0.08, 0.18) * min(h, w)
    sigma = max(0.7, rng.uniform(1.0, 2.0) * s)
    pad = _pad_for(sigma)
    big = _blob((h, w), rng, radius=radius, irregularity=0.4, pad=pad, spill=2 * sigma)
    depth = ndi.distance_transform_edt(big)  # depth of the whole hole, clipped part included
    depth = _crop(depth / max(depth.max(), 1.0), pad)
    dark = rng.uniform(0.03, 0.12)
    shade = dark * (1.2 - 0.6 * depth) + rng.normal(0, 0.01, size=(h, w))
    target = np.repeat(np.clip(shade, 0.0, 1.0)[..., None], tile.shape[-1], axis=-1)
    blur = _crop(ndi.gaussian_filter(big.astype(np.float64), sigma=sigma), pad)
    alpha = np.clip(blur * 1.3, 0.0, 1.0)
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
    max_tries: int = 50,
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
