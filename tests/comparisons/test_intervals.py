"""IQM and probability of improvement against rliable.metrics (where it installs) and
scipy; the stratified bootstrap keeps tasks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import mannwhitneyu, trim_mean

from xeval.comparisons.intervals import (
    improvement_probabilities,
    interval_estimates,
    iqm,
    probability_of_improvement,
    stratified_bootstrap_ci,
)
from xeval.errors import InputError, UndefinedMetricWarning

scores_strategy = arrays(
    float, st.tuples(st.integers(1, 6), st.integers(1, 4)), elements=st.integers(0, 5).map(float)
)


def _rliable():
    """rliable's metrics module (the cross-check; rliable.library needs arch, which
    breaks with pandas 3, and is not used): skipped without it, failed in CI."""
    from _crosscheck import require

    return require("rliable.metrics")


def test_iqm_hand_computed():
    # 8 values: the middle 4 are 3, 4, 5, 6
    assert iqm([[1, 2], [3, 4], [5, 6], [7, 100]]) == 4.5
    assert iqm([1.0, 2, 3, 4]) == 2.5


def test_probability_of_improvement_hand_computed():
    # task 0: x=[1, 3] vs y=[2, 2]: pairs 1<2, 1<2, 3>2, 3>2 -> 0.5
    # task 1: x=[5, 5] vs y=[5, 4]: 5=5 (0.5), 5>4, 5=5 (0.5), 5>4 -> (0.5+1+0.5+1)/4 = 0.75
    x = np.array([[1.0, 5], [3, 5]])
    y = np.array([[2.0, 5], [2, 4]])
    assert probability_of_improvement(x, y) == pytest.approx((0.5 + 0.75) / 2)
    assert probability_of_improvement(y, x) == pytest.approx(1 - (0.5 + 0.75) / 2)


@settings(max_examples=50, deadline=None)
@given(scores_strategy, scores_strategy)
def test_equal_rliable_and_scipy(a, b):
    metrics = _rliable()
    assert iqm(a) == pytest.approx(float(metrics.aggregate_iqm(a)))
    assert iqm(a) == pytest.approx(float(trim_mean(a, 0.25, axis=None)))
    b = np.resize(b, (b.shape[0], a.shape[1]))
    got = probability_of_improvement(a, b)
    assert got == pytest.approx(float(metrics.probability_of_improvement(a, b)))
    per_task = [
        mannwhitneyu(a[:, t], b[:, t]).statistic / (a.shape[0] * b.shape[0])
        for t in range(a.shape[1])
    ]
    assert got == pytest.approx(float(np.mean(per_task)))


def test_stratified_bootstrap_keeps_tasks():
    # runs constant within each task: every stratified resample is the data itself
    a = np.tile([[0.1, 0.5, 0.9]], (5, 1))
    assert stratified_bootstrap_ci(iqm, a, n_boot=200) == pytest.approx((iqm(a), iqm(a)))
    # pooled (unstratified) resampling would move the IQM; a varying task widens the CI
    b = a.copy()
    b[:, 0] = np.linspace(0, 0.2, 5)
    lo, hi = stratified_bootstrap_ci(iqm, b, n_boot=300, seed=1)
    assert lo <= iqm(b) <= hi
    assert hi > lo


def test_interval_tables_seeded_and_consistent():
    rng = np.random.default_rng(0)
    scores = {"ig": rng.normal(0.7, 0.05, (5, 3)), "random": rng.normal(0.5, 0.05, (4, 3))}
    est = interval_estimates(scores, n_boot=300, seed=2)
    assert est["method"].tolist() == ["ig", "random"]
    assert (est["ci_low"] <= est["iqm"]).all() and (est["iqm"] <= est["ci_high"]).all()
    assert est.equals(interval_estimates(scores, n_boot=300, seed=2))
    poi = improvement_probabilities(scores, n_boot=300, seed=2)
    p = dict(zip(zip(poi.x, poi.y, strict=True), poi.probability, strict=True))
    assert p[("ig", "random")] == pytest.approx(1 - p[("random", "ig")])
    assert p[("ig", "random")] > 0.9


def test_one_run_is_undefined_and_errors():
    with pytest.warns(UndefinedMetricWarning, match="fewer than 2 runs"):
        lo, hi = stratified_bootstrap_ci(iqm, np.ones((1, 3)))
    assert np.isnan(lo) and np.isnan(hi)
    with pytest.raises(InputError, match="same tasks"):
        probability_of_improvement(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(InputError, match="NaN or inf"):
        iqm([[1.0, np.nan]])
    with pytest.raises(InputError, match="same number of tasks"):
        interval_estimates({"a": np.ones((2, 2)), "b": np.ones((2, 3))})
    with pytest.raises(InputError, match="level"), warnings.catch_warnings():
        stratified_bootstrap_ci(iqm, np.ones((2, 2)), level=2)
