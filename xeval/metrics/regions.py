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


def positive_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """For every positive pixel of ``mask`` (in C order), ``1 / |its region|``;
    and the number of regions. ``sum(weights) == n_regions``."""
    labels, n = label_regions(mask)
    lab = labels[mask]
    sizes = np.bincount(lab, minlength=n + 1)
    inv = np.zeros(n + 1, dtype=np.float64)
    inv[1:] = 1.0 / np.maximum(sizes[1:], 1)
    return inv[lab], n
