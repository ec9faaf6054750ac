"""Ground truth for example importance where retraining is cheap: exact leave-one-out
retraining and the linear datamodelling score (LDS).

Everything here takes a ``retrain(keep) -> scores`` callable: it trains the model from
scratch on the training images ``keep`` (sorted integer indices) and returns the anomaly
scores ``(n_eval,)`` of a fixed set of evaluation images. How the model is trained (same
initialisation seed, full-batch, no augmentation...) is the caller's choice and decides
how much of a difference is the data and how much is training noise; the engine's
ground truth (:mod:`xeval.engine.influence`) retrains a tiny copy of the detector
full-batch from the same seed, so that removing an image is the only change.

Sign convention, as :func:`xeval.influence`: ``loo[i, j] = score_i(train without j) -
score_i(train)``; positive = training image j makes evaluation image i look normal.

Definitions
-----------
- **Leave-one-out correlation**: per evaluation image i, the Spearman correlation over
  training images j of ``influence[i, j]`` and ``loo[i, j]`` (Koh & Liang 2017, Fig. 2).
- **LDS** (Park et al. 2023, TRAK, Definition 2): draw m random subsets ``S_1..S_m`` of
  ``round(fraction * n)`` training images; retrain on each; per evaluation image i, the
  Spearman correlation over subsets of the **actual** score ``f_i(S_s)`` and the
  **predicted** one. TRAK predicts ``g_i(S) = sum_{j in S} tau_i[j]`` with attributions
  ``tau`` that are positive when including j raises the output; with our sign
  (``tau = -influence``) that is ``-sum_{j in S} influence[i, j]`` =
  ``sum_{j not in S} influence[i, j] - sum_j influence[i, j]``. The second term does not
  depend on S, so the Spearman correlation equals that of
  ``sum_{j not in S} influence[i, j]``: the linear datamodel's prediction of how much
  removing the complement of S raises the score, which :func:`predicted_subset_scores`
  returns. The LDS of a method is the mean over evaluation images with a defined
  correlation.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from xeval._validation import undefined
from xeval.errors import InputError

__all__ = [
    "leave_one_out",
    "linear_datamodeling_score",
    "loo_correlation",
    "predicted_subset_scores",
    "random_subsets",
    "subset_scores",
]


def _n(n_train, name: str = "n_train") -> int:
    if not isinstance(n_train, numbers.Integral) or isinstance(n_train, bool) or n_train < 2:
        raise InputError(f"{name} must be an integer >= 2, got {n_train!r}")
    return int(n_train)


def _scores(out, n_eval: int | None, what: str) -> np.ndarray:
    s = np.asarray(out, dtype=np.float64)
    if s.ndim != 1 or (n_eval is not None and len(s) != n_eval):
        want = f"({n_eval},)" if n_eval is not None else "(n_eval,)"
        raise InputError(f"retrain({what}) must return scores of shape {want}, got {s.shape}")
    if not np.isfinite(s).all():
        raise InputError(f"retrain({what}) returned NaN or infinite scores")
    return s


def leave_one_out(
    retrain: Callable[[np.ndarray], np.ndarray],
    n_train: int,
    *,
    indices=None,
) -> np.ndarray:
    """Exact leave-one-out effects ``(n_eval, len(indices))``:
    ``retrain(all but j) - retrain(all)`` for each training image j in ``indices``
    (default all), i.e. ``n + 1`` retrainings. Positive = j makes the image look normal."""
    n = _n(n_train)
    idx = np.arange(n) if indices is None else np.asarray(indices)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or ((idx < 0) | (idx >= n)).any():
        raise InputError(f"indices must be integers in [0, {n}), got {indices!r}")
    everything = np.arange(n)
    full = _scores(retrain(everything), None, "all training images")
    out = np.empty((len(full), len(idx)))
    for c, j in enumerate(idx):
        out[:, c] = _scores(retrain(np.delete(everything, j)), len(full), f"all but {j}") - full
    return out


def random_subsets(n_train: int, *, fraction: float, n_subsets: int, seed: int) -> np.ndarray:
    """``(n_subsets, n_train)`` bool masks, each selecting exactly ``round(fraction *
    n_train)`` training images uniformly at random (seeded, independent draws)."""
    n = _n(n_train)
    if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise InputError(f"fraction must be a number in (0, 1), got {fraction!r}")
    if not isinstance(n_subsets, numbers.Integral) or isinstance(n_subsets, bool) or n_subsets < 2:
        raise InputError(f"n_subsets must be an integer >= 2, got {n_subsets!r}")
    size = int(round(fraction * n))
    if not 1 <= size <= n - 1:
        raise InputError(
            f"fraction={fraction} of {n} training images keeps {size}; expected between 1 "
            f"and {n - 1}"
        )
    from xeval.rng import rng

    gen = rng(int(seed), "lds-subsets")
    masks = np.zeros((int(n_subsets), n), dtype=bool)
    for s in range(int(n_subsets)):
        masks[s, gen.choice(n, size=size, replace=False)] = True
    return masks


def _masks(masks, n_train: int | None = None) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim != 2 or m.dtype != bool or (n_train is not None and m.shape[1] != n_train):
        cols = n_train if n_train is not None else "n_train"
        raise InputError(f"masks must be a bool (n_subsets, {cols}) array, got {m.dtype} {m.shape}")
    return m


def subset_scores(retrain: Callable[[np.ndarray], np.ndarray], masks) -> np.ndarray:
    """``(n_subsets, n_eval)``: the actual scores after retraining on each subset."""
    m = _masks(masks)
    rows = [_scores(retrain(np.flatnonzero(m[0])), None, "subset 0")]
    for s in range(1, len(m)):
        rows.append(_scores(retrain(np.flatnonzero(m[s])), len(rows[0]), f"subset {s}"))
    return np.stack(rows)


def predicted_subset_scores(influence, masks) -> np.ndarray:
    """``(n_subsets, n_eval)``: ``sum_{j not in S} influence[i, j]`` for each subset S
    (see the module docstring: TRAK's prediction up to a constant per image)."""
    a = np.asarray(influence, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"influence must be an (n_eval, n_train) array, got {a.shape}")
    m = _masks(masks, a.shape[1])
    return (~m).astype(np.float64) @ a.T


def _spearman_rows(x: np.ndarray, y: np.ndarray, metric: str, what: str) -> np.ndarray:
    """Spearman correlation of ``x[:, i]`` and ``y[:, i]`` for each column i (scipy);
    NaN with a warning where either is constant."""
    from scipy.stats import spearmanr

    out = np.full(x.shape[1], np.nan)
    for i in range(x.shape[1]):
        if np.ptp(x[:, i]) == 0 or np.ptp(y[:, i]) == 0:
            undefined(metric, f"{what} {i}: a constant series has no rank correlation")
            continue
        out[i] = spearmanr(x[:, i], y[:, i]).statistic
    return out


def linear_datamodeling_score(influence, masks, actual) -> np.ndarray:
    """Per evaluation image, the Spearman correlation over subsets of
    :func:`predicted_subset_scores` and the ``actual`` retrained scores
    ``(n_subsets, n_eval)``: ``(n_eval,)``; its mean is the LDS (Park et al. 2023)."""
    pred = predicted_subset_scores(influence, masks)
    act = np.asarray(actual, dtype=np.float64)
    if act.shape != pred.shape:
        raise InputError(
            f"actual must have shape {pred.shape} (n_subsets, n_eval), got {act.shape}"
        )
    return _spearman_rows(pred, act, "linear_datamodeling_score", "evaluation image")


def loo_correlation(influence, loo) -> np.ndarray:
    """Per evaluation image i, the Spearman correlation over training images of
    ``influence[i]`` and the exact leave-one-out effects ``loo[i]``: ``(n_eval,)``."""
    a = np.asarray(influence, dtype=np.float64)
    b = np.asarray(loo, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise InputError(f"influence {a.shape} and loo {b.shape} must be equal (n_eval, n_train)")
    return _spearman_rows(a.T, b.T, "loo_correlation", "evaluation image")
