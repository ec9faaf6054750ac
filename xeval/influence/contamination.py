"""Contaminated training sets: known anomalous images planted among normal ones.

The contaminated-training protocol (:mod:`xeval.engine.influence`) asks whether an
example-importance method finds anomalies hidden in a "normal" training set. This module
builds such a set, seeded and reproducible:

- ``k`` anomalous images are drawn from a pool (the anomalous test images of a category),
  **stratified over defect types**: the types are visited in a seeded order, round-robin,
  one random image of the type each time, so ``k >= n_types`` plants every type and the
  counts of two types never differ by more than one (while the pool lasts);
- the **contamination rate** is the fraction of the final training set that is planted:
  ``k = round(rate * n_normal / (1 - rate))`` so that ``k / (n_normal + k)`` is the rate
  closest to the one asked for (60 normal images: 2 % -> 1, 5 % -> 3, 10 % -> 7);
- normal and planted images are **shuffled together** (seeded), so a planted image's
  position says nothing about it (a method that breaks ties by index gains nothing);
- the planted images are **removed from the test pool** (:attr:`ContaminatedSet.test`),
  so per-test attribution never explains a test image by itself.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xeval.errors import InputError
from xeval.rng import rng as make_rng

__all__ = ["NORMAL", "ContaminatedSet", "contaminate", "planted_count"]

NORMAL = "good"
"""The type of a normal training image (MVTec AD's folder name for normal images)."""


@dataclass(frozen=True)
class ContaminatedSet:
    """A contaminated training set and what was planted in it.

    Attributes
    ----------
    train:
        The training items, normal and planted, in a seeded random order.
    types:
        ``(n_train,)`` array of str: :data:`NORMAL` for a normal image, the defect type
        of a planted one.
    planted:
        ``(n_train,)`` bool array, True where ``train[j]`` is planted.
    test:
        The items of the test pool that were **not** planted, in their original order.
    rate:
        The contamination rate asked for; ``k / len(train)`` is the one obtained.
    seed:
        The seed of the draw.
    """

    train: tuple
    types: np.ndarray
    planted: np.ndarray
    test: tuple
    rate: float
    seed: int

    @property
    def k(self) -> int:
        """Number of planted images."""
        return int(self.planted.sum())

    @property
    def planted_indices(self) -> np.ndarray:
        """Indices (into :attr:`train`) of the planted images, ascending."""
        return np.flatnonzero(self.planted)

    @property
    def actual_rate(self) -> float:
        """``k / n_train``: the contamination rate obtained."""
        return self.k / len(self.train)

    def planted_by_type(self) -> dict[str, list[int]]:
        """``{defect type: indices into train}`` of the planted images."""
        out: dict[str, list[int]] = {}
        for j in self.planted_indices:
            out.setdefault(str(self.types[j]), []).append(int(j))
        return dict(sorted(out.items()))


def _check_rate(rate) -> float:
    if (
        not isinstance(rate, numbers.Real)
        or isinstance(rate, bool)
        or not math.isfinite(rate)
        or not 0 < rate < 1
    ):
        raise InputError(f"rate must be a number in (0, 1), got {rate!r}")
    return float(rate)


def planted_count(n_normal: int, rate: float) -> int:
    """``round(rate * n_normal / (1 - rate))``: how many images to plant among
    ``n_normal`` normal ones so that they are a fraction ``rate`` of the training set
    (half-way cases round to even, as Python's ``round``)."""
    rate = _check_rate(rate)
    if not isinstance(n_normal, numbers.Integral) or isinstance(n_normal, bool) or n_normal < 1:
        raise InputError(f"n_normal must be a positive integer, got {n_normal!r}")
    return int(round(rate * int(n_normal) / (1.0 - rate)))


def _defect(item, i: int) -> str:
    d = getattr(item, "defect", None)
    if not isinstance(d, str) or not d:
        raise InputError(
            f"pool[{i}] has no defect type (expected an item with a non-empty str attribute "
            f"'defect', such as xeval.data.Sample), got {item!r:.80}"
        )
    return d


def contaminate(
    normal: Sequence,
    pool: Sequence,
    *,
    rate: float,
    seed: int,
    defects: Sequence[str] | None = None,
) -> ContaminatedSet:
    """Plant anomalous images from ``pool`` into the ``normal`` training images.

    Parameters
    ----------
    normal:
        Normal training items (e.g. :class:`xeval.data.Sample` of ``train/good``).
    pool:
        Candidate items to plant, each with a ``defect`` attribute (e.g. the test samples
        of a category); items whose ``defect`` is :data:`NORMAL` are never planted but
        stay in :attr:`ContaminatedSet.test`.
    rate:
        Fraction of the final training set that is planted, in (0, 1) (see
        :func:`planted_count`).
    seed:
        Seed of the draw: the type order, the images of each type and the shuffle.
    defects:
        Defect types that may be planted (default: every anomalous type of the pool),
        sorted before the seeded draw so that the pool's order does not matter.

    Returns
    -------
    ContaminatedSet

    Raises
    ------
    InputError
        A rate outside (0, 1), a rate that plants no image (too few normal images for it),
        more planted images than the pool holds, an unknown defect type.
    """
    rate = _check_rate(rate)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    normal, pool = list(normal), list(pool)
    if not normal:
        raise InputError("normal must hold at least one training item, got none")
    types_of_pool = [_defect(item, i) for i, item in enumerate(pool)]
    available = sorted({t for t in types_of_pool if t != NORMAL})
    if defects is None:
        wanted = available
    else:
        if isinstance(defects, str) or not all(isinstance(d, str) for d in defects):
            raise InputError(f"defects must be a list of defect type names, got {defects!r}")
        unknown = sorted(set(defects) - set(available))
        if unknown:
            raise InputError(
                f"defects {unknown} are not in the pool; anomalous types it holds: {available}"
            )
        wanted = sorted(set(defects))
    if not wanted:
        raise InputError("the pool holds no anomalous item to plant (every defect is 'good')")
    k = planted_count(len(normal), rate)
    if k < 1:
        need = math.ceil(0.5 * (1 - rate) / rate)
        raise InputError(
            f"rate={rate!r} plants round({rate} * {len(normal)} / (1 - {rate})) = 0 images "
            f"among {len(normal)} normal ones; expected at least 1 (use a larger rate, or at "
            f"least {need} normal images)"
        )
    by_type = {t: [i for i, d in enumerate(types_of_pool) if d == t] for t in wanted}
    n_avail = sum(len(v) for v in by_type.values())
    if k > n_avail:
        raise InputError(
            f"rate={rate!r} plants {k} images but the pool holds {n_avail} of types {wanted}"
        )
    gen = make_rng(int(seed), "contaminate")
    queues = {t: [idx[i] for i in gen.permutation(len(idx))] for t, idx in by_type.items()}
    order = [wanted[i] for i in gen.permutation(len(wanted))]
    chosen: list[int] = []
    while len(chosen) < k:
        for t in order:
            if queues[t] and len(chosen) < k:
                chosen.append(queues[t].pop(0))
    items = normal + [pool[i] for i in chosen]
    types = np.array([NORMAL] * len(normal) + [types_of_pool[i] for i in chosen], dtype=object)
    perm = gen.permutation(len(items))
    picked = set(chosen)
    return ContaminatedSet(
        train=tuple(items[p] for p in perm),
        types=types[perm].astype(str),
        planted=(perm >= len(normal)),
        test=tuple(item for i, item in enumerate(pool) if i not in picked),
        rate=rate,
        seed=int(seed),
    )
