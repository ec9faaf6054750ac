"""Explicit channel reduction of ``(B, C, H, W)`` attributions to ``(B, H, W)`` maps.

DESIGN.md: reduce channels explicitly (sum of ``|a|`` by default, signed kept available)
and say which; normalise per sample, never per batch. Every attribution explainer
records its reduction in ``config()["reduce"]``.

Reductions
----------
``"abs_sum"`` (default)
    ``sum_c |a_c|``: unsigned relevance, whatever the direction of the effect.
``"sum"``
    ``sum_c a_c``: signed; positive = the pixel pushes the score up (more anomalous)
    relative to the reference, negative = it pushes it down. The only reduction that
    keeps completeness (``sum_pixels == score(x) - score(baseline)`` for IG/DeepLIFT).
``"l2"``
    ``sqrt(sum_c a_c**2)``: unsigned Euclidean norm over channels.
``"max_abs"``
    ``max_c |a_c|``: unsigned, the strongest channel.
"""

from __future__ import annotations

import numpy as np
import torch

from xeval.errors import InputError

REDUCTIONS = ("abs_sum", "sum", "l2", "max_abs")


def check_reduce(reduce: str) -> str:
    """Validate a reduction name and return it."""
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce must be one of {list(REDUCTIONS)}, got {reduce!r}")
    return reduce


def reduce_channels(attributions: torch.Tensor | np.ndarray, reduce: str = "abs_sum"):
    """Reduce ``(B, C, H, W)`` attributions over the channel axis to ``(B, H, W)``.

    Works on torch tensors (returns a tensor) and numpy arrays (returns an array); see
    the module docstring for the meaning and sign of each reduction.
    """
    check_reduce(reduce)
    if attributions.ndim != 4:
        raise InputError(
            f"attributions must have shape (B, C, H, W), got {tuple(attributions.shape)}"
        )
    if isinstance(attributions, torch.Tensor):
        a = attributions
        if reduce == "abs_sum":
            return a.abs().sum(dim=1)
        if reduce == "sum":
            return a.sum(dim=1)
        if reduce == "l2":
            return a.pow(2).sum(dim=1).sqrt()
        return a.abs().amax(dim=1)
    a = np.asarray(attributions)
    if reduce == "abs_sum":
        return np.abs(a).sum(axis=1)
    if reduce == "sum":
        return a.sum(axis=1)
    if reduce == "l2":
        return np.sqrt((a * a).sum(axis=1))
    return np.abs(a).max(axis=1)


NORMALIZATIONS = ("max_abs", "l1", "l2")


def normalize_per_sample(maps: np.ndarray, how: str = "max_abs", *, eps: float = 1e-12):
    """Scale each ``(H, W)`` map of ``(B, H, W)`` on its own (never across the batch).

    ``"max_abs"`` divides by ``max |m|``, ``"l1"`` by ``sum |m|``, ``"l2"`` by the
    Euclidean norm. Signs are kept; an all-zero map stays zero.
    """
    if how not in NORMALIZATIONS:
        raise InputError(f"how must be one of {list(NORMALIZATIONS)}, got {how!r}")
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim != 3:
        raise InputError(f"maps must have shape (B, H, W), got {m.shape}")
    flat = m.reshape(len(m), -1)
    if how == "max_abs":
        s = np.abs(flat).max(axis=1)
    elif how == "l1":
        s = np.abs(flat).sum(axis=1)
    else:
        s = np.sqrt((flat * flat).sum(axis=1))
    return (m / np.maximum(s, eps)[:, None, None]).astype(np.float32)
