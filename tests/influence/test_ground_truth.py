"""Exact leave-one-out and the linear datamodelling score on models whose retraining is
known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.influence.ground_truth import (
    leave_one_out,
    linear_datamodeling_score,
    loo_correlation,
    predicted_subset_scores,
    random_subsets,
    subset_scores,
)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(9, 3))  # training points
Z = RNG.normal(size=(4, 3))  # evaluation points


def centre_model(keep):
    """A centre-distance detector: score = squared distance to the training mean."""
    mu = X[keep].mean(axis=0)
    return ((Z - mu) ** 2).sum(axis=1)


def test_leave_one_out_equals_the_closed_form():
    n = len(X)
    mu = X.mean(axis=0)
    want = np.empty((len(Z), n))
    for j in range(n):
        mu_j = (n * mu - X[j]) / (n - 1)  # mean without j
        want[:, j] = ((Z - mu_j) ** 2).sum(1) - ((Z - mu) ** 2).sum(1)
    np.testing.assert_allclose(leave_one_out(centre_model, n), want, atol=1e-12)
    np.testing.assert_allclose(leave_one_out(centre_model, n, indices=[2, 5]), want[:, [2, 5]])


def test_sign_removing_a_supporting_image_raises_the_score():
    # an evaluation point at training point 0, which lies far from the others
    x = X.copy()
    x[0] = [5.0, 5.0, 5.0]

    def model(keep):
        return ((x[:1] - x[keep].mean(axis=0)) ** 2).sum(axis=1)

    loo = leave_one_out(model, len(x))
    assert loo[0, 0] > 0 and loo[0, 0] == loo[0].max()


def test_lds_is_one_for_an_exactly_linear_datamodel():
    w = RNG.normal(size=(4, 12))

    def linear(keep):  # score_i(S) = sum_{j in S} w[i, j]
        return w[:, keep].sum(axis=1)

    infl = leave_one_out(linear, 12)
    np.testing.assert_allclose(infl, -w)  # removing j changes the score by -w_ij
    masks = random_subsets(12, fraction=0.5, n_subsets=20, seed=0)
    actual = subset_scores(linear, masks)
    np.testing.assert_allclose(linear_datamodeling_score(infl, masks, actual), 1.0)
    # and -1 for attributions of the opposite sign
    np.testing.assert_allclose(linear_datamodeling_score(-infl, masks, actual), -1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(4, 15), m=st.integers(3, 12))
def test_prediction_equals_trak_convention_up_to_rank(seed, n, m):
    """sum over the complement of influence ranks like TRAK's sum over S of -influence."""
    rng = np.random.default_rng(seed)
    infl = rng.normal(size=(3, n))
    masks = random_subsets(n, fraction=0.5, n_subsets=m, seed=seed)
    ours = predicted_subset_scores(infl, masks)
    trak = masks.astype(float) @ (-infl).T
    np.testing.assert_allclose(ours - trak, np.tile(infl.sum(1), (m, 1)), atol=1e-9)
    actual = rng.normal(size=(m, 3))
    for i in range(3):
        a, b = (
            spearmanr(ours[:, i], actual[:, i]).statistic,
            spearmanr(trak[:, i], actual[:, i]).statistic,
        )
        if not (math.isnan(a) and math.isnan(b)):
            assert a == pytest.approx(b)


def test_random_subsets_sizes_and_seed():
    m = random_subsets(10, fraction=0.5, n_subsets=7, seed=3)
    assert m.shape == (7, 10) and (m.sum(1) == 5).all()
    assert np.array_equal(m, random_subsets(10, fraction=0.5, n_subsets=7, seed=3))
    assert not np.array_equal(m, random_subsets(10, fraction=0.5, n_subsets=7, seed=4))
    with pytest.raises(InputError, match=r"fraction must be a number in \(0, 1\)"):
        random_subsets(10, fraction=1.0, n_subsets=3, seed=0)
    with pytest.raises(InputError, match="keeps 0"):
        random_subsets(10, fraction=0.01, n_subsets=3, seed=0)
    with pytest.raises(InputError, match="n_subsets must be an integer >= 2"):
        random_subsets(10, fraction=0.5, n_subsets=1, seed=0)


def test_loo_correlation_is_scipy_spearman_per_row_and_nan_when_constant():
    a = RNG.normal(size=(3, 8))
    b = a + RNG.normal(scale=0.5, size=(3, 8))
    b[2] = 1.0
    with pytest.warns(UndefinedMetricWarning, match="evaluation image 2: a constant series"):
        r = loo_correlation(a, b)
    for i in range(2):
        assert r[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)
    assert math.isnan(r[2])


def test_retrain_output_is_checked():
    with pytest.raises(
        InputError, match=r"retrain\(all but 0\) must return scores of shape \(4,\)"
    ):
        leave_one_out(lambda keep: np.zeros(4 if len(keep) == 9 else 3), 9)
    with pytest.raises(InputError, match="NaN or infinite"):
        leave_one_out(lambda keep: np.full(2, np.nan), 9)
    with pytest.raises(InputError, match=r"indices must be integers in \[0, 9\)"):
        leave_one_out(centre_model, 9, indices=[9])
    with pytest.raises(InputError, match=r"masks must be a bool \(n_subsets, 5\)"):
        predicted_subset_scores(np.zeros((2, 5)), np.ones((3, 4), dtype=bool))
