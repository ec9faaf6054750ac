"""paired_test and holm against scipy, statsmodels and hand-computed cases."""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wilcoxon
from statsmodels.stats.multitest import multipletests

from xeval.comparisons import PairedResult, holm, paired_test
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.stats import bootstrap_mean_ci


def test_paired_test_matches_scipy_and_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.normal(0.6, 0.1, 40)
    b = a - rng.normal(0.05, 0.05, 40)
    r = paired_test(a, b, n_boot=500, seed=3)
    assert isinstance(r, PairedResult)
    ref = wilcoxon(a - b, zero_method="wilcox", alternative="two-sided")
    assert r.statistic == pytest.approx(float(ref.statistic))
    assert r.p_value == pytest.approx(float(ref.pvalue))
    assert (r.ci_low, r.ci_high) == bootstrap_mean_ci(a - b, n_boot=500, seed=3)
    assert r.mean_diff == pytest.approx(np.mean(a - b))
    assert (r.mean_a, r.mean_b) == (pytest.approx(a.mean()), pytest.approx(b.mean()))
    assert r.n == 40 and r.n_dropped == 0 and r.ci_low < r.mean_diff < r.ci_high


def test_hand_computed_exact_wilcoxon():
    # d = 1..6 all positive: R- = 0, exact two-sided p = 2 / 2**6
    a = np.array([2.0, 3, 4, 5, 6, 7])
    b = np.array([1.0, 1, 1, 1, 1, 1])
    r = paired_test(a, b, n_boot=50)
    assert r.statistic == 0.0
    assert r.p_value == pytest.approx(2 / 64)
    assert r.mean_diff == pytest.approx(3.5)


def test_lower_is_better_flips_sign_not_means():
    a, b = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 3, 4, 5, 7])
    hi = paired_test(a, b, higher_is_better=True, n_boot=100)
    lo = paired_test(a, b, higher_is_better=False, n_boot=100)
    assert lo.mean_diff == -hi.mean_diff > 0
    assert (lo.ci_low, lo.ci_high) == pytest.approx((-hi.ci_high, -hi.ci_low))
    assert lo.p_value == pytest.approx(hi.p_value)
    assert (lo.mean_a, lo.mean_b) == (hi.mean_a, hi.mean_b) == (3.0, 4.2)


def test_nan_pairs_dropped_and_counted():
    a = np.array([1.0, np.nan, 3, 4, 5, 6, 7])
    b = np.array([0.0, 1, np.nan, 2, 2, 2, 1])
    r = paired_test(a, b, n_boot=100)
    keep = ~(np.isnan(a) | np.isnan(b))
    ref = paired_test(a[keep], b[keep], n_boot=100)
    assert (r.n, r.n_dropped) == (5, 2)
    assert r.as_dict() | {"n_dropped": 0} == ref.as_dict()


def test_zero_differences_dropped_before_ranking():
    d = np.array([0.0, 0, 1, 2, -3, 4, 5, 6, 7])
    r = paired_test(d, np.zeros_like(d), n_boot=50)
    ref = wilcoxon(d, zero_method="wilcox")
    assert r.p_value == pytest.approx(float(ref.pvalue)) and r.n == 9
    # ranks of the 7 non-zero |d|: the statistic is R- = rank of |-3| = 3
    assert r.statistic == 3.0


def test_all_zero_differences_is_undefined():
    with pytest.warns(UndefinedMetricWarning, match="every paired difference is zero"):
        r = paired_test([1.0, 2, 3], [1.0, 2, 3], n_boot=10)
    assert np.isnan(r.p_value) and np.isnan(r.statistic) and r.mean_diff == 0


def test_no_pairs_is_undefined():
    with pytest.warns(UndefinedMetricWarning, match="no pair"):
        r = paired_test([np.nan, 1.0], [2.0, np.nan])
    assert r.n == 0 and r.n_dropped == 2 and np.isnan(r.p_value) and np.isnan(r.ci_low)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"a": [1, 2], "b": [1, 2, 3]}, "equal lengths"),
        ({"a": [[1, 2]], "b": [[1, 2]]}, "1-D"),
        ({"a": [1, np.inf], "b": [1, 2]}, "inf"),
        ({"a": [1, 2], "b": [1, 2], "n_boot": 0}, "n_boot"),
        ({"a": [1, 2], "b": [1, 2], "level": 1.5}, "level"),
        ({"a": [1, 2], "b": [1, 2], "higher_is_better": "yes"}, "higher_is_better"),
        ({"a": ["x", "y"], "b": [1, 2]}, "numbers"),
    ],
)
def test_bad_input(kwargs, match):
    a, b = kwargs.pop("a"), kwargs.pop("b")
    with pytest.raises(InputError, match=match):
        paired_test(a, b, **kwargs)


def test_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    assert paired_test(a, b, seed=5) == paired_test(a, b, seed=5)
    assert paired_test(a, b, seed=5).ci_low != paired_test(a, b, seed=6).ci_low


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=25), st.integers(0, 9))
def test_swapping_a_and_b_negates(values, seed):
    a = np.array(values)
    b = np.roll(a, 1) * 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ab, ba = paired_test(a, b, n_boot=30, seed=seed), paired_test(b, a, n_boot=30, seed=seed)
    assert ab.mean_diff == pytest.approx(-ba.mean_diff, abs=1e-12)
    assert ab.ci_low == pytest.approx(-ba.ci_high, abs=1e-12)
    np.testing.assert_allclose(ab.p_value, ba.p_value, rtol=1e-9)


# --------------------------------------------------------------------------- holm


def _statsmodels_holm(p):
    # multipletests calls gc.collect() (~0.3 s on a busy machine): skip that here
    with mock.patch("gc.collect", lambda *a: 0):
        return multipletests(p, method="holm")[1]


def test_holm_hand_computed():
    # sorted p: .01 .02 .03 .04 -> 4*.01, 3*.02, 2*.03, 1*.04 = .04 .06 .06 .04 -> monotone
    np.testing.assert_allclose(holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_equals_statsmodels(ps):
    p = np.array(ps)
    np.testing.assert_allclose(holm(p), _statsmodels_holm(p), rtol=1e-12, atol=0)
    adj = holm(p)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15) and np.all(adj >= p) and np.all(adj <= 1)


def test_holm_nan_kept_out_of_family():
    p = np.array([0.01, np.nan, 0.04])
    out = holm(p)
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], _statsmodels_holm([0.01, 0.04]))
    assert holm([]).shape == (0,)


def test_holm_bad_input():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        holm([0.1, 1.2])
