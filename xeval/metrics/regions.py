"""Ground-truth regions: 8-connected components of each mask (MVTec AD definition)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_STRUCT_2D = np.ones((3, 3), dtype=bool)
# Connect pixels within each (H, W) slice of an (N, H, W) stack, never across images.
_STRUCT_STACK = np.zeros((3, 3, 3), dtype=bool)
_STRUCT_STACK[1] = True


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a boolean ``(H, W)`` mask or of each slice
    of an ``(N, H, W)`` stack (labels are unique over the whole stack; 0 = background)."""
    struct = _STRUCT_2D if mask.ndim == 2 else _STRUCT_STACK
    labels, n = ndimage.label(mask, structure=struct)
    return labels, int(n)


def _crop(mask2d: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r = np.flatnonzero(rows)
    c = np.flatnonzero(cols)
    return mask2d[r[0] : r[-1] + 1, c[0] : c[-1] + 1]


def positive_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """For every positive pixel of a boolean ``(H, W)`` mask or ``(N, H, W)`` stack, in C
    order (the order of ``values[mask]``), ``1 / |its region|``; and the number of
    regions. ``weights.sum() == n_regions``.

    Components are labelled on each image's bounding box of positives only: cropping
    keeps the C order of the positive pixels and costs a fraction of labelling the
    whole frame.
    """
    stack = mask if mask.ndim == 3 else mask[None]
    rows = stack.any(axis=2)
    cols = stack.any(axis=1)
    pieces = []
    n_total = 0
    for i in np.flatnonzero(rows.any(axis=1)):
        crop = _crop(stack[i], rows[i], cols[i])
        labels, n = ndimage.label(crop, structure=_STRUCT_2D)
        lab = labels[crop]
        sizes = np.bincount(lab, minlength=n + 1)
        inv = np.zeros(n + 1, dtype=np.float64)
        inv[1:] = 1.0 / sizes[1:]
        pieces.append(inv[lab])
        n_total += n
    w = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)
    return w, n_total
