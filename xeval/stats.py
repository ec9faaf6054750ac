"""Statistics over images: percentile bootstrap confidence intervals (seeded).

Arguments are checked: ``n_boot`` is a positive integer (not 0, a float, a bool or a
string) and ``level`` lies in (0, 1), else :class:`~xeval.errors.InputError`. A CI that
the data cannot give is ``(NaN, NaN)`` with an :class:`~xeval.errors.UndefinedMetricWarning`
saying why: fewer than 2 values (after dropping NaN) for the mean, one class only for the
AUROC.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.stats import rankdata

from xeval._validation import check_labels_scores, pow2_scale, undefined
from xeval.errors import InputError

__all__ = ["bootstrap_auroc_ci", "bootstrap_mean_ci", "check_n_boot"]


def check_n_boot(n_boot) -> int:
    """``n_boot`` as a positive int (a count of bootstrap resamples)."""
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, numbers.Integral):
        raise InputError(f"n_boot (bootstrap resamples) must be a positive integer, got {n_boot!r}")
    if int(n_boot) < 1:
        raise InputError(f"n_boot (bootstrap resamples) must be >= 1, got {n_boot!r}")
    return int(n_boot)


def _check_level(level) -> float:
    ok = isinstance(level, numbers.Real) and not isinstance(level, (bool, np.bool_))
    if not ok or not 0 < float(level) < 1:
        raise InputError(f"level (CI coverage) must be a number in (0, 1), got {level!r}")
    return float(level)


def bootstrap_auroc_ci(
    labels, scores, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the AUROC over image resamples (stratified: the numbers of normal
    and anomalous images are kept, so every resample has both classes). ``(NaN, NaN)``
    with a warning when the labels hold one class only."""
    n_boot = check_n_boot(n_boot)
    level = _check_level(level)
    y, s = check_labels_scores(labels, scores)
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        undefined("the bootstrap CI of the AUROC", "the labels hold one class only")
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    p = pos[rng.integers(0, pos.size, (n_boot, pos.size))]
    n = neg[rng.integers(0, neg.size, (n_boot, neg.size))]
    r = rankdata(np.concatenate([p, n], axis=1), axis=1)  # midranks: ties count 1/2
    u = r[:, : pos.size].sum(axis=1) - pos.size * (pos.size + 1) / 2
    auc = u / (pos.size * neg.size)
    a = (1 - level) / 2
    return float(np.quantile(auc, a)), float(np.quantile(auc, 1 - a))


def bootstrap_mean_ci(
    values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean of per-image values (NaN values excluded). ``(NaN, NaN)``
    with a warning when fewer than 2 values remain."""
    n_boot = check_n_boot(n_boot)
    level = _check_level(level)
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if v.size < 2:
        undefined("the bootstrap CI of the mean", f"fewer than 2 values ({v.size})")
        return math.nan, math.nan
    if not np.all(np.isfinite(v)):
        raise InputError("values hold inf: a bootstrap CI of their mean needs finite values")
    s = float(pow2_scale(np.abs(v).max()))  # exact rescaling: sums near the limits
    rng = np.random.default_rng(seed)
    means = (v * s)[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1) / s
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
