"""Input validation shared by the metric functions and states.

Errors name the argument, the offending value and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from xeval.errors import InputError, UndefinedMetricWarning


def undefined(metric: str, why: str) -> float:
    """Warn that ``metric`` is undefined for this input and return NaN."""
    warnings.warn(
        f"{metric} is undefined: {why}; returning NaN", UndefinedMetricWarning, stacklevel=3
    )
    return float("nan")


def as_image_list(arrays, name: str) -> list[np.ndarray] | np.ndarray:
    """Return an ``(N, H, W)`` array unchanged or a list of 2-D arrays.

    ``arrays`` may be an ``(N, H, W)`` array, a single ``(H, W)`` array (one image)
    or a sequence of 2-D arrays whose sizes may differ.
    """
    if isinstance(arrays, np.ndarray):
        if arrays.ndim == 2:
            return arrays[None]
        if arrays.ndim == 3:
            return arrays
        raise InputError(
            f"{name} must be an (N, H, W) array or a sequence of (H, W) arrays, "
            f"got an array of shape {arrays.shape}"
        )
    if isinstance(arrays, Sequence) or hasattr(arrays, "__iter__"):
        out = [np.asarray(a) for a in arrays]
        for i, a in enumerate(out):
            if a.ndim != 2:
                raise InputError(f"{name}[{i}] must be a 2-D (H, W) array, got shape {a.shape}")
        return out
    raise InputError(
        f"{name} must be an array or a sequence of arrays, got {type(arrays).__name__}"
    )


def check_mask(m: np.ndarray, name: str) -> np.ndarray:
    """Return ``m`` as bool; raise if it holds values other than 0/1 (or False/True)."""
    if m.dtype == bool:
        return m
    if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise InputError(f"{name} must be a binary (0/1 or bool) array, got dtype {m.dtype}")
    bad = (m != 0) & (m != 1)
    if bad.any():
        vals = np.unique(m[bad])[:5]
        raise InputError(
            f"{name} must be binary (0/1 or bool), found values {vals.tolist()}"
            + (" (a 0/255 mask: pass mask > 0)" if 255 in vals else "")
        )
    return m != 0


def check_map(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` as a float array (float32/float64 kept); raise on NaN or inf."""
    if a.dtype == np.float16 or a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32 if a.dtype.itemsize <= 2 else np.float64)
    elif not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{name} must be a real-valued array, got dtype {a.dtype}")
    # min/max propagate NaN and expose inf without a full-size temporary
    if a.size and not (np.isfinite(a.min()) and np.isfinite(a.max())):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise InputError(
            f"{name} holds non-finite values (first at index {tuple(int(i) for i in bad)}: "
            f"{a[tuple(bad)]}); anomaly maps must be finite"
        )
    return a


def paired(masks, maps, *, masks_name: str = "masks", maps_name: str = "maps"):
    """Validate and pair masks with maps; yields ``(mask bool, map float)`` per image,
    or returns the two checked 3-D arrays when both are arrays of equal shape."""
    masks = as_image_list(masks, masks_name)
    maps = as_image_list(maps, maps_name)
    if len(masks) != len(maps):
        raise InputError(
            f"{masks_name} and {maps_name} must hold the same number of images, "
            f"got {len(masks)} and {len(maps)}"
        )
    if len(masks) == 0:
        raise InputError(f"{masks_name} and {maps_name} are empty: nothing to evaluate")
    if isinstance(masks, np.ndarray) and isinstance(maps, np.ndarray):
        if masks.shape != maps.shape:
            raise InputError(
                f"{maps_name} has shape {maps.shape} but {masks_name} has shape {masks.shape}; "
                "upsample maps to the mask's native size first "
                "(xeval.metrics.resize_to(map, mask.shape))"
            )
        return [(check_mask(masks, masks_name), check_map(maps, maps_name))]
    pairs = []
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        if m.shape != a.shape:
            raise InputError(
                f"{maps_name}[{i}] has shape {a.shape} but {masks_name}[{i}] has shape "
                f"{m.shape}; upsample maps to the mask's native size first "
                "(xeval.metrics.resize_to(map, mask.shape))"
            )
        pairs.append((check_mask(m, f"{masks_name}[{i}]"), check_map(a, f"{maps_name}[{i}]")))
    return pairs


def check_labels_scores(labels, scores):
    y = np.asarray(labels)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise InputError(
            f"labels and scores must be 1-D of equal length, got shapes {y.shape} and {s.shape}"
        )
    if y.size == 0:
        raise InputError("labels and scores are empty: nothing to evaluate")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise InputError(
            f"labels must be 0 (normal) or 1 (anomalous), found {np.unique(y[bad])[:5]}"
        )
    s = check_map(s.astype(np.float64, copy=False), "scores")
    return y.astype(bool), s
