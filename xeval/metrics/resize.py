"""Bring maps to the mask's native resolution (bilinear), as DESIGN.md requires."""

from __future__ import annotations

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import check_map, pow2_scale

__all__ = ["resize_to", "same_aspect"]


def same_aspect(shape, size) -> bool:
    """Whether an ``(h, w)`` grid is ``(H, W)`` scaled, up to one pixel of rounding on
    each side: some factor ``s > 0`` has ``|h - s H| < 1`` and ``|w - s W| < 1``."""
    h, w = (int(v) for v in shape)
    big_h, big_w = (int(v) for v in size)
    lo = max((h - 1) / big_h, (w - 1) / big_w, 0.0)
    hi = min((h + 1) / big_h, (w + 1) / big_w)
    return lo < hi


def resize_to(maps, size, *, frame=None, name: str = "map") -> np.ndarray:
    """Resize a ``(h, w)`` map or ``(B, h, w)`` maps to ``size = (H, W)`` bilinearly
    (``align_corners=False``, antialiased when shrinking). No other transform: values
    are not normalised or clipped.

    Aspect ratio: the map must have the aspect ratio of ``size`` (up to one pixel of
    rounding, see :func:`same_aspect`); another aspect is an
    :class:`~xeval.errors.InputError` naming ``name`` and both shapes, never a silent
    stretch. ``frame=(h0, w0)``: the map explains an image that was itself resized from
    ``size`` to ``frame`` (a detector's input size); it must then have the aspect of
    ``frame``, and resizing it to ``size`` undoes that resize.

    Precision: float16/float32 maps and integers up to 16 bits are resized in float32,
    any other map in float64 (integers beyond ``±2**53`` are refused); magnitudes near
    the float limits are rescaled by an exact power of two first, so nothing overflows
    or underflows. A map already of size ``size`` is returned unchanged.
    """
    a = np.asarray(maps)
    if a.ndim not in (2, 3):
        raise InputError(f"{name} must be (h, w) or (B, h, w), got shape {a.shape}")
    size = (int(size[0]), int(size[1]))
    src = tuple(int(v) for v in a.shape[-2:])
    ref = size if frame is None else (int(frame[0]), int(frame[1]))
    if min(src) < 1 or min(size) < 1 or min(ref) < 1:
        raise InputError(f"{name} has shape {src}; cannot resize it to {size}")
    if not same_aspect(src, ref):
        what = (
            f"the mask's {size}"
            if frame is None
            else f"the image it explains, {ref} (the detector's input)"
        )
        raise InputError(
            f"{name} has shape {src} (aspect ratio h/w = {src[0] / src[1]:.4g}) but "
            f"{what} has aspect ratio {ref[0] / ref[1]:.4g}: resizing it to {size} would "
            "stretch it. Expected a map of the same aspect ratio, upsampled bilinearly; "
            "crop or pad the map to the image's geometry first"
        )
    if src == size:
        return a
    import torch  # imported lazily: `import xeval.metrics` stays light
    import torch.nn.functional as F

    a = check_map(a, name)
    dtype = np.float32 if a.dtype == np.float32 else np.float64
    if a.dtype.itemsize > 8 and not np.array_equal(a.astype(np.float64), a):
        raise InputError(
            f"{name} is a {a.dtype} map whose values float64 cannot hold exactly; "
            "resizing needs float64: convert it to float64 first"
        )
    limit = 100 if dtype == np.float32 else 300
    s = float(pow2_scale(np.abs(a).max(), limit=limit)) if a.size else 1.0
    t = torch.from_numpy(np.ascontiguousarray(a * s if s != 1.0 else a, dtype=dtype))
    t = t[None, None] if a.ndim == 2 else t[:, None]
    shrink = size[0] < src[0] or size[1] < src[1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    out = (out[0, 0] if a.ndim == 2 else out[:, 0]).numpy()
    if s != 1.0:
        out = out / s
    if not np.all(np.isfinite(out)):
        raise InputError(f"{name}: resizing to {size} gave non-finite values (from {src})")
    return out
