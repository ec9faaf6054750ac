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


#: The fewest normal images a unit fits on, and calibrates on, when validation images are
#: held out of ``train``: the split is an error below these (never silently adjusted).
MIN_FIT_IMAGES = 1
MIN_VALIDATION_IMAGES = 1


def holdout(
    train: list[Sample], *, fraction: float, seed: int, category: str | None = None
) -> tuple[list, list]:
    """Split normal training images into (fit, validation), seeded and stable:
    ``round(fraction * n)`` validation images. An error naming the category and the
    counts when that leaves fewer than :data:`MIN_VALIDATION_IMAGES` validation or
    :data:`MIN_FIT_IMAGES` fit images."""
    n = len(train)
    where = f"category {category!r}: " if category is not None else ""
    n_val = round(fraction * n)
    if n_val < MIN_VALIDATION_IMAGES or n - n_val < MIN_FIT_IMAGES:
        need = MIN_FIT_IMAGES + MIN_VALIDATION_IMAGES
        if n < need:
            hint = f"it needs at least {need} normal training images"
        else:
            lo, hi = MIN_VALIDATION_IMAGES / n, (n - MIN_FIT_IMAGES) / n
            hint = f"with {n} images use a fraction between {lo:.3g} and {hi:.3g}"
        raise InputError(
            f"{where}validation_fraction={fraction!r} of its {n} normal training images "
            f"holds out {n_val} for validation and leaves {n - n_val} to fit; expected at "
            f"least {MIN_VALIDATION_IMAGES} validation and {MIN_FIT_IMAGES} fit image(s): "
            f"{hint}"
        )
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)
    val = sorted(idx[:n_val].tolist())
    fit = sorted(idx[n_val:].tolist())
    return [train[i] for i in fit], [train[i] for i in val]


def fit_and_validation(split: CategorySplit, cfg: RunConfig) -> tuple[list, list]:
    """The normal images a unit fits on and those it calibrates on: the format's own
    validation split when it has one, else a seeded fraction held out of ``train``."""
    if split.validation:
        return list(split.train), list(split.validation)
    return holdout(
        split.train,
        fraction=cfg.evaluation.validation_fraction,
        seed=cfg.seed,
        category=split.category,
    )
