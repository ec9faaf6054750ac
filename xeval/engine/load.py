"""Phase 1 -- load: the dataset's category splits, and the normal images each unit fits
on and calibrates on."""

from __future__ import annotations

import numpy as np

from xeval.data.sample import Sample
from xeval.data.split import CategorySplit
from xeval.errors import InputError
from xeval.protocols.config import RunConfig
from xeval.registry import DATASETS

__all__ = ["fit_and_validation", "holdout", "load_dataset"]


def load_dataset(cfg: RunConfig) -> dict[str, CategorySplit]:
    """``{category: split}`` of the configured dataset (its reader from the registry;
    the run's seed unless the dataset section sets its own)."""
    reader = DATASETS.get(cfg.dataset.name)
    splits = reader(**{"seed": cfg.seed, **cfg.dataset.params})
    if not splits:
        raise InputError(f"dataset {cfg.dataset.to_dict()!r} has no categories to evaluate")
    return splits


def holdout(train: list[Sample], *, fraction: float, seed: int) -> tuple[list, list]:
    """Split normal training images into (fit, validation), seeded and stable."""
    if len(train) < 2:
        raise InputError(
            f"need at least 2 normal training images to hold out validation data, got {len(train)}"
        )
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train))
    n_val = min(max(1, round(fraction * len(train))), len(train) - 1)
    val = sorted(idx[:n_val].tolist())
    fit = sorted(idx[n_val:].tolist())
    return [train[i] for i in fit], [train[i] for i in val]


def fit_and_validation(split: CategorySplit, cfg: RunConfig) -> tuple[list, list]:
    """The normal images a unit fits on and those it calibrates on: the format's own
    validation split when it has one, else a seeded fraction held out of ``train``."""
    if split.validation:
        return list(split.train), list(split.validation)
    return holdout(split.train, fraction=cfg.evaluation.validation_fraction, seed=cfg.seed)
