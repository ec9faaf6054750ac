"""Input checks and the undefined-metric helper shared by metrics and statistics (numpy
only, so light modules can import it without loading every metric).

Errors name the argument, the offending value and what was expected.
"""

from __future__ import annotations

import math
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


#: Largest magnitude up to which every integer is a float64 (integers beyond it would
#: merge into ties when a map is converted to float).
FLOAT64_EXACT_INT = 2**53


def check_map(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` as a float array (float32/float64 kept); raise on NaN or inf.

    Integer and boolean maps are converted exactly: to float32 up to 16-bit integers,
    to float64 above. An integer map holding values beyond ``±2**53`` (where float64
    cannot hold every integer, so distinct values would become ties) is refused."""
    if a.dtype == np.float16 or a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        if a.dtype.itemsize >= 8 and a.size:
            lo, hi = int(a.min()), int(a.max())
            big = hi if abs(hi) >= abs(lo) else lo
            if abs(big) > FLOAT64_EXACT_INT:
                raise InputError(
                    f"{name} holds integers beyond ±2**53 (e.g. {big}), which float64 cannot "
                    "represent exactly: distinct values would become ties; rescale the map "
                    "or pass its ranks (scipy.stats.rankdata) instead"
                )
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


def check_float32_safe(a: np.ndarray, name: str, ids=None) -> None:
    """Raise when converting maps ``a`` ``(B, h, w)`` to float32 (the engine's working
    dtype for maps) would overflow or merge distinct values into ties; conversions that
    only round (every value distinct, the order intact) pass. ``name`` says whose maps
    they are, ``ids`` (one per map) which sample the message names."""
    a = np.asarray(a)
    if a.dtype in (np.float32, np.float16, bool) or (
        np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2
    ):
        return
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        return  # not a real map: the explainer's own checks say so
    with np.errstate(over="ignore"):
        a32 = a.astype(np.float32)
    if np.array_equal(a32, a):
        return

    def sample(hit: np.ndarray) -> str:
        if a.ndim < 3 or ids is None:
            return ""
        i = int(np.flatnonzero(hit.reshape(len(a), -1).any(axis=1))[0])
        return f" (sample {ids[i]!r})"

    over = ~np.isfinite(a32) & np.isfinite(a)
    if over.any():
        at = tuple(int(i) for i in np.argwhere(over)[0])
        raise InputError(
            f"{name}{sample(over)} hold values beyond float32's range, the working dtype of "
            f"maps (e.g. {float(a[at])!r}): rescale them (or return float32 maps)"
        )
    u = np.unique(a)
    u32 = u.astype(np.float32)
    same = np.flatnonzero(u32[1:] == u32[:-1])
    if same.size:
        x, y = float(u[same[0]]), float(u[same[0] + 1])
        raise InputError(
            f"{name}{sample((a == x) | (a == y))} are {a.dtype} maps whose distinct values "
            f"collapse into ties in float32, the working dtype of maps (e.g. {x!r} and "
            f"{y!r} both become {float(u32[same[0]])!r}): rescale them (e.g. subtract their "
            "minimum) or return float32 maps, so that ties are your choice"
        )


def pow2_scale(m, *, limit: int = 300) -> np.ndarray:
    """A power of two ``s`` per magnitude ``m`` (array or scalar) that brings ``m`` near 1
    (into ``[0.5, 1)``, or as close as a float64 power of two allows for subnormals) when
    ``m`` is outside ``[2**-limit, 2**limit]`` (sums and squares of such values would
    overflow or underflow in float64), else 1. Multiplying by ``s`` is exact and
    commutes with rounding, so scale-invariant quantities computed on scaled values are
    those of the exact computation."""
    m = np.asarray(m, dtype=np.float64)
    e = np.frexp(m)[1]
    extreme = (m > 2.0**limit) | ((m > 0) & (m < 2.0**-limit))
    return np.where(extreme, np.ldexp(1.0, np.clip(-e, -1074, 1023)), 1.0)


def exact_mean(values) -> float:
    """The correctly rounded mean of finite ``values`` (:func:`math.fsum`, so independent
    of their order), without intermediate overflow for magnitudes near the float limits."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return math.nan
    s = float(pow2_scale(np.abs(v).max()))
    return math.fsum((v * s).tolist()) / v.size / s


def _threshold_in(dtype, t: float):
    """``t`` rounded to ``dtype`` (float32 maps compare with a float32 threshold)."""
    with np.errstate(over="ignore"):
        return np.asarray(t, dtype=dtype)[()]


def at_least(a: np.ndarray, t: float) -> np.ndarray:
    """``a >= t`` compared exactly. (numpy compares a float32 array with a Python float
    in float32, which rounds ``t``: ``float32(1.0) >= 1.00000001`` would be True.)"""
    t = float(t)
    if a.dtype == np.float64 or not np.issubdtype(a.dtype, np.floating):
        return a >= t
    tt = _threshold_in(a.dtype, t)
    return a > tt if float(tt) < t else a >= tt


def above(a: np.ndarray, t: float) -> np.ndarray:
    """``a > t`` compared exactly (see :func:`at_least`)."""
    t = float(t)
    if a.dtype == np.float64 or not np.issubdtype(a.dtype, np.floating):
        return a > t
    tt = _threshold_in(a.dtype, t)
    return a >= tt if float(tt) > t else a > tt


def check_ids(ids, n: int, where: str) -> list:
    """``ids`` as a list of ``n`` entries (``None``: ``n`` anonymous entries); raise when
    the count differs or an id repeats."""
    if ids is None:
        return [None] * n
    ids = list(ids)
    if len(ids) != n:
        raise InputError(
            f"{where}: ids has {len(ids)} entries for {n} images (expected one id per image, "
            "in the order of the values)"
        )
    return extend_ids([], ids, where)


def _repeated(seen, new: list):
    for i in new:
        if i is None:
            continue
        if i in seen:
            return i
        seen.add(i)
    return None


def extend_ids(state_ids: list, new, where: str) -> list:
    """Append ``new`` to ``state_ids`` (in place, returned); raise when an id (other than
    None) repeats within ``new`` or is already in the state: an image counted twice
    would weigh double in the metric."""
    new = list(new)
    seen = {i for i in state_ids if i is not None}
    dup = _repeated(seen, new)
    if dup is not None:
        raise InputError(
            f"{where}: sample id {dup!r} is given twice (each image must be added to a "
            "metric state once)"
        )
    state_ids.extend(new)
    return state_ids


def merged_ids(a: list, b: list, where: str) -> list:
    """``a + b``; raise when the two states share an id (merge states of disjoint shards)."""
    common = {i for i in a if i is not None} & {i for i in b if i is not None}
    if common:
        dup = sorted(common, key=repr)[0]
        raise InputError(
            f"{where}: both states hold sample id {dup!r} ({len(common)} shared id(s)): "
            "merge the states of disjoint sets of images"
        )
    return list(a) + list(b)


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
    s = check_map(s, "scores").astype(np.float64, copy=False)
    return y.astype(bool), s
