"""Argument checks shared by every layer (one image validator, integer and boolean
options). Errors name the argument, the value and what was expected."""

from __future__ import annotations

import math
import numbers

import numpy as np

from xeval.errors import InputError

__all__ = ["check_bool", "check_images", "check_positive_int", "check_probability"]


def check_images(images: object, *, name: str = "images") -> np.ndarray:
    """``images`` as a contiguous float32 ``(B, C, H, W)`` array with ``B >= 1``.

    Accepts a numpy array, a torch tensor, or a record/inputs object with an ``images``
    attribute (:class:`~xeval.record.Inputs`, :class:`~xeval.record.Record`). Raises
    :class:`~xeval.errors.InputError` for another type, another shape, a non-float dtype
    or non-finite values (naming the first bad index).
    """
    if not isinstance(images, np.ndarray) and hasattr(images, "images"):
        images = images.images
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # a torch tensor
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array of shape (B, C, H, W), got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[0] == 0:
        raise InputError(
            f"{name} must have shape (B, C, H, W) (rank 4) with B >= 1, got shape {images.shape}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(
            f"{name} must be floating point in [0, 1] (float32), got dtype {images.dtype} "
            f"with shape {images.shape}"
        )
    if not np.all(np.isfinite(images)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(images))[0])
        raise InputError(f"{name} hold non-finite values (NaN or inf; first at index {bad})")
    return np.ascontiguousarray(images, dtype=np.float32)


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; a bool or a float is an error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral)):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(value: object, name: str) -> bool:
    """``value`` if it is a real boolean (``True``/``False``); the string ``"false"`` and
    the integer 1 are errors (a truthy string must never switch a safety option on)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{name} must be true or false (a boolean), got {value!r}")


def check_probability(value: object, name: str, *, open_low: bool = True) -> float:
    """``value`` as a float in ``(0, 1]`` (``[0, 1]`` with ``open_low=False``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number in (0, 1], got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > 0 if open_low else v >= 0) and v <= 1
    if not ok:
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise InputError(f"{name} must lie in {interval}, got {value!r}")
    return v
