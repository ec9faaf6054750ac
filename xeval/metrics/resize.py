"""Bring maps to the mask's native resolution (bilinear), as DESIGN.md requires."""

from __future__ import annotations

import numpy as np

from xeval.errors import InputError


def resize_to(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``(h, w)`` map or ``(B, h, w)`` maps to ``size = (H, W)`` bilinearly
    (``align_corners=False``, antialiased when shrinking). No other transform: values
    are not normalised or clipped."""
    a = np.asarray(maps)
    if a.ndim not in (2, 3):
        raise InputError(f"maps must be (h, w) or (B, h, w), got shape {a.shape}")
    size = (int(size[0]), int(size[1]))
    if a.shape[-2:] == size:
        return a
    import torch  # imported lazily: `import xeval.metrics` stays light
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    t = t[None, None] if a.ndim == 2 else t[:, None]
    shrink = size[0] < a.shape[-2] or size[1] < a.shape[-1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    out = out[0, 0] if a.ndim == 2 else out[:, 0]
    return out.numpy()
