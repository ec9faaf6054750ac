"""Seeding, in one place: every random draw in xeval comes from a seed and stable keys.

Rules (DESIGN.md: same config + same seed = same numbers, on 1 or N workers):

- a draw that belongs to one *sample* is keyed by the sample's id, never by its position
  in a batch (:func:`rng` with the id as a key), so it does not depend on batching or on
  which worker sees the sample;
- string keys are hashed with CRC-32 (stable across processes, unlike Python's salted
  ``hash``);
- libraries that draw from global generators (captum, torch initialisation) run inside
  :func:`torch_seeded`, which restores the caller's generator states afterwards.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator

import numpy as np

__all__ = ["derived_seed", "rng", "sample_seed", "seed_key", "torch_seeded"]


def seed_key(key: int | str) -> int:
    """A non-negative 32-bit integer for ``key`` (CRC-32 of a string, an int as is)."""
    if isinstance(key, str):
        return zlib.crc32(key.encode())
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"a seed key must be an int or a str, got {key!r}")
    k = int(key)
    if k < 0:
        raise ValueError(f"a seed key must be >= 0, got {k}")
    return k


def _entropy(seed: int, keys: tuple) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, *(seed_key(k) for k in keys)]


def sample_seed(seed: int, *keys: int | str) -> np.random.SeedSequence:
    """The seed sequence of ``(seed, *keys)``, e.g. ``sample_seed(0, "brick/test/x/000")``."""
    return np.random.SeedSequence(_entropy(seed, keys))


def rng(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent numpy generator for ``(seed, *keys)``."""
    return np.random.default_rng(_entropy(seed, keys))


def derived_seed(seed: int, *keys: int | str) -> int:
    """One 32-bit integer seed derived from ``(seed, *keys)`` (for APIs that take an int)."""
    return int(np.random.SeedSequence(_entropy(seed, keys)).generate_state(1)[0])


@contextlib.contextmanager
def torch_seeded(seed: int, *, numpy_global: bool = False) -> Iterator[None]:
    """Seed torch's global generators (and numpy's legacy global one with
    ``numpy_global=True``: captum draws from it) inside the block, restoring the caller's
    states afterwards."""
    import torch

    np_state = np.random.get_state() if numpy_global else None  # noqa: NPY002
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        if numpy_global:
            np.random.seed(int(seed) % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            if np_state is not None:
                np.random.set_state(np_state)  # noqa: NPY002
