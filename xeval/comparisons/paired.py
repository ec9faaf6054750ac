"""Paired comparison of two methods on the same images, and Holm's correction.

:func:`paired_test` compares two per-image value arrays ``a`` and ``b`` measured on the
**same** images (pair ``i`` = image ``i``):

- the difference ``d_i = a_i - b_i`` (``b_i - a_i`` when lower is better), so that a
  positive mean difference always means *a is better*;
- a paired percentile bootstrap CI of ``mean(d)``: images are resampled with
  replacement (pairs kept together), ``n_boot`` resamples from ``seed``
  (:func:`xeval.stats.bootstrap_mean_ci`);
- the two-sided Wilcoxon signed-rank test of ``H0: d is symmetric about 0``
  (:func:`scipy.stats.wilcoxon`; Wilcoxon 1945). Zero differences are dropped before
  ranking (``zero_method="wilcox"``, Wilcoxon's own convention; they still count in
  ``n``); tied ``|d|`` get mid-ranks. The p-value is scipy's ``method="auto"``: the exact
  null distribution when ``n <= 50`` and there are no ties or zeros; with ties or zeros
  and ``n <= 13`` the exact permutation distribution over all ``2**n`` sign flips; else
  the normal approximation with the tie-corrected variance (no continuity correction).
  The statistic is ``min(R+, R-)``.

:func:`holm` adjusts a family of p-values by Holm's (1979) step-down method.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import wilcoxon

from xeval._validation import undefined
from xeval.errors import InputError
from xeval.stats import bootstrap_mean_ci, check_n_boot

__all__ = ["PairedResult", "holm", "paired_test"]


@dataclass(frozen=True)
class PairedResult:
    """The outcome of :func:`paired_test`.

    Attributes
    ----------
    n : int
        Pairs used (both values finite).
    n_dropped : int
        Pairs dropped because ``a`` or ``b`` was NaN.
    mean_a, mean_b : float
        Means of ``a`` and ``b`` over the pairs used (as given, not sign-flipped).
    mean_diff : float
        Mean of ``a - b`` (of ``b - a`` when lower is better): positive = ``a`` better.
    ci_low, ci_high : float
        Paired percentile bootstrap CI of ``mean_diff`` at ``level`` (NaN when n < 2).
    statistic : float
        Wilcoxon signed-rank statistic ``min(R+, R-)`` (NaN when undefined).
    p_value : float
        Two-sided Wilcoxon signed-rank p-value (NaN when every difference is zero or
        there is no pair).
    higher_is_better : bool
        The direction used for the sign of the difference.
    level : float
        Coverage of the CI.
    """

    n: int
    n_dropped: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    higher_is_better: bool
    level: float

    def as_dict(self) -> dict:
        """The fields as a plain dict (e.g. a row of a table)."""
        return asdict(self)


def _as_1d(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}") from exc
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D array of per-image values, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise InputError(f"{name} holds inf: a paired test needs finite values (or NaN)")
    return arr


def paired_test(
    a,
    b,
    *,
    higher_is_better: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedResult:
    """Compare two methods' per-image values on the same images (see the module doc).

    Parameters
    ----------
    a, b : array-like, shape (n,)
        Per-image values of the two methods, pair ``i`` = image ``i``. Pairs where
        either is NaN are dropped (and counted in ``n_dropped``).
    higher_is_better : bool
        The metric's direction; the difference is flipped when False.
    n_boot : int
        Bootstrap resamples of the CI.
    seed : int
        Seed of the bootstrap.
    level : float
        Coverage of the CI, in (0, 1).

    Returns
    -------
    PairedResult

    Raises
    ------
    InputError
        When ``a`` and ``b`` are not 1-D, differ in length, hold inf, or an option is
        invalid.
    """
    if not isinstance(higher_is_better, (bool, np.bool_)):
        raise InputError(f"higher_is_better must be True or False, got {higher_is_better!r}")
    n_boot = check_n_boot(n_boot)
    _check_level(level)
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape != y.shape:
        raise InputError(
            f"a and b must hold the same images (equal lengths), got {x.size} and {y.size}"
        )
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = int(x.size)
    d = (x - y) if higher_is_better else (y - x)
    nan = math.nan
    if n == 0:
        undefined("the paired test", "no pair has both values")
        return PairedResult(
            0,
            int((~keep).sum()),
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            nan,
            bool(higher_is_better),
            float(level),
        )
    ci_low, ci_high = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed, level=level)
    if not np.any(d != 0):
        undefined("the Wilcoxon signed-rank test", "every paired difference is zero")
        statistic, p_value = nan, nan
    else:
        with warnings.catch_warnings():
            # scipy computes a z it does not use for the exact / permutation methods
            warnings.simplefilter("ignore", RuntimeWarning)
            res = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")
        statistic, p_value = float(res.statistic), float(res.pvalue)
    return PairedResult(
        n=n,
        n_dropped=int((~keep).sum()),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_diff=float(d.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        statistic=statistic,
        p_value=p_value,
        higher_is_better=bool(higher_is_better),
        level=float(level),
    )


def _check_level(level) -> None:
    ok = isinstance(level, numbers.Real) and not isinstance(level, (bool, np.bool_))
    if not ok or not 0 < float(level) < 1:
        raise InputError(f"level (CI coverage) must be a number in (0, 1), got {level!r}")


def holm(p_values) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values.

    With the ``m`` finite p-values sorted ``p_(1) <= ... <= p_(m)``, the adjusted value
    is ``p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``: monotone in ``p``, never
    below ``p``, capped at 1; rejecting ``p~ <= alpha`` controls the family-wise error
    rate at ``alpha``. NaN entries (undefined tests) stay NaN and are not counted in
    ``m``. Equals ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]``.

    Parameters
    ----------
    p_values : array-like, shape (m,)
        p-values in [0, 1] (NaN allowed).

    Returns
    -------
    ndarray, shape (m,)
        Adjusted p-values in the input order.
    """
    p = _as_1d(p_values, "p_values")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        bad = p[ok][(p[ok] < 0) | (p[ok] > 1)][:3]
        raise InputError(f"p_values must lie in [0, 1], got {bad.tolist()}")
    out = np.full(p.shape, np.nan)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    stepped = (m - np.arange(m)) * q[order]
    adjusted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    back = np.empty(m)
    back[order] = adjusted
    out[ok] = back
    return out
