"""Interval estimates over runs (seeds), in the manner of rliable (Agarwal et al. 2021,
*Deep reinforcement learning at the edge of the statistical precipice*, NeurIPS).

Scores are ``(n_runs, n_tasks)`` arrays: one row per run (seed), one column per task
(e.g. a category or dataset); every method has the same tasks, not necessarily the same
number of runs.

- **IQM** (interquartile mean): the mean of the middle 50% of all ``n_runs x n_tasks``
  scores pooled, ``scipy.stats.trim_mean(scores, 0.25, axis=None)`` (25% cut from each
  end; equals ``rliable.metrics.aggregate_iqm``).
- **Probability of improvement** of X over Y: per task, the Mann-Whitney probability
  ``P(X > Y) + 0.5 P(X = Y)`` over all pairs of a run of X and a run of Y
  (``U / (n_x n_y)``), averaged over tasks (equals
  ``rliable.metrics.probability_of_improvement``).
- **Stratified bootstrap** CIs: each resample draws, independently for every task and
  every method, ``n_runs`` runs with replacement from that task's runs (tasks are kept:
  the CI is the uncertainty from the runs, as rliable's default ``StratifiedBootstrap``);
  percentile interval at ``level``, seeded.

Fewer than 2 runs per task give NaN CIs with an
:class:`~xeval.errors.UndefinedMetricWarning` (one run cannot be resampled).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy.stats import trim_mean

from xeval._validation import undefined
from xeval.errors import InputError
from xeval.stats import check_n_boot

__all__ = [
    "improvement_probabilities",
    "interval_estimates",
    "iqm",
    "probability_of_improvement",
    "stratified_bootstrap_ci",
]


def _scores(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an (n_runs, n_tasks) array of numbers") from exc
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"{name} must be a non-empty (n_runs, n_tasks) array, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} holds NaN or inf: every run must have a score on every task")
    return a


def iqm(scores) -> float:
    """Interquartile mean of all scores pooled (see the module doc).

    Parameters
    ----------
    scores : array-like, shape (n_runs, n_tasks) or (n_runs,)
    """
    return float(trim_mean(_scores(scores, "scores"), 0.25, axis=None))


def _poi(x: np.ndarray, y: np.ndarray) -> float:
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def probability_of_improvement(x, y) -> float:
    """``P(X > Y) + 0.5 P(X = Y)`` per task over all run pairs, averaged over tasks.

    Parameters
    ----------
    x, y : array-like, shape (n_runs_x, n_tasks), (n_runs_y, n_tasks)
        Scores of X and Y (higher is better; negate lower-is-better scores).
    """
    a, b = _scores(x, "x"), _scores(y, "y")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"x and y must have the same tasks, got {a.shape[1]} and {b.shape[1]}")
    return _poi(a, b)


def _check_level(level) -> float:
    ok = isinstance(level, (int, float, np.floating)) and not isinstance(level, bool)
    if not ok or not 0 < float(level) < 1:
        raise InputError(f"level (CI coverage) must be a number in (0, 1), got {level!r}")
    return float(level)


def stratified_bootstrap_ci(
    statistic: Callable[..., float],
    *scores,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of ``statistic(*scores)`` under the stratified bootstrap.

    Parameters
    ----------
    statistic : callable
        Maps the (resampled) score arrays to a number, e.g. :func:`iqm` or
        :func:`probability_of_improvement`.
    *scores : array-like, shape (n_runs_i, n_tasks)
        One array per method; runs are resampled within each task of each array.
    n_boot, seed, level
        Resamples, seed and coverage.

    Returns
    -------
    (float, float)
        ``(NaN, NaN)`` with a warning when some array has fewer than 2 runs.
    """
    n_boot = check_n_boot(n_boot)
    level = _check_level(level)
    arrays = [_scores(s, f"scores[{i}]") for i, s in enumerate(scores)]
    if not arrays:
        raise InputError("stratified_bootstrap_ci needs at least one score array")
    if min(a.shape[0] for a in arrays) < 2:
        undefined("the stratified bootstrap CI", "a method has fewer than 2 runs per task")
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = []
    for a in arrays:
        runs, tasks = a.shape
        idx = rng.integers(0, runs, (n_boot, runs, tasks))
        draws.append(a[idx, np.arange(tasks)])  # (n_boot, runs, tasks)
    values = np.array([statistic(*(d[b] for d in draws)) for b in range(n_boot)], float)
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def interval_estimates(
    scores: Mapping[str, object], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """IQM of each method with its stratified bootstrap CI.

    Parameters
    ----------
    scores : mapping of str to array-like (n_runs, n_tasks)
        Method -> scores (higher is better), the same tasks for every method.

    Returns
    -------
    DataFrame
        Columns ``method, n_runs, n_tasks, iqm, ci_low, ci_high``.
    """
    arrays = {str(k): _scores(v, f"scores[{k!r}]") for k, v in scores.items()}
    _same_tasks(arrays)
    rows = []
    for name, a in arrays.items():
        lo, hi = stratified_bootstrap_ci(iqm, a, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            {
                "method": name,
                "n_runs": a.shape[0],
                "n_tasks": a.shape[1],
                "iqm": iqm(a),
                "ci_low": lo,
                "ci_high": hi,
            }  # fmt: skip
        )
    return pd.DataFrame(rows, columns=["method", "n_runs", "n_tasks", "iqm", "ci_low", "ci_high"])


def improvement_probabilities(
    scores: Mapping[str, object], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Probability of improvement of every method over every other, with stratified
    bootstrap CIs (both methods' runs resampled within each task).

    Returns
    -------
    DataFrame
        Columns ``x, y, probability, ci_low, ci_high``: one row per ordered pair
        (``P(y over x) = 1 - P(x over y)``).
    """
    arrays = {str(k): _scores(v, f"scores[{k!r}]") for k, v in scores.items()}
    _same_tasks(arrays)
    rows = []
    for x, y in itertools.permutations(arrays, 2):
        lo, hi = stratified_bootstrap_ci(
            _poi, arrays[x], arrays[y], n_boot=n_boot, seed=seed, level=level
        )
        rows.append(
            {
                "x": x,
                "y": y,
                "probability": _poi(arrays[x], arrays[y]),
                "ci_low": lo,
                "ci_high": hi,
            }  # fmt: skip
        )
    return pd.DataFrame(rows, columns=["x", "y", "probability", "ci_low", "ci_high"])


def _same_tasks(arrays: dict[str, np.ndarray]) -> None:
    tasks = {k: a.shape[1] for k, a in arrays.items()}
    if len(set(tasks.values())) > 1:
        raise InputError(f"every method must have the same number of tasks, got {tasks}")
