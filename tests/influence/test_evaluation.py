"""Ranking metrics of example importance against independent references: scikit-learn,
quanda's MislabelingDetectionMetric formula (torch), hand-computed cases, and
brute-force averages over every order of tied scores."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, roc_auc_score

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.influence.evaluation import (
    attribution_auprc,
    cumulative_detection_auc,
    cumulative_detection_curve,
    detection_metrics,
    planted_auprc,
    planted_auroc,
    precision_at_k,
    similarity_rate,
    top_k_cardinality,
    top_k_indices,
)


def quanda_score(self_influence: np.ndarray, planted_idx) -> float:
    """quanda (dilyabareeva/quanda, MislabelingDetectionMetric.compute and
    SelfInfluenceRanking.get_global_rank) written out with torch: descending stable
    argsort, cumulative success / k, torch.trapezoid / n. Exact only without ties (quanda
    adds index * 1e-4 to break them)."""
    si = torch.as_tensor(self_influence, dtype=torch.float64)
    rank = torch.argsort(si, descending=True, stable=True)
    planted = set(int(i) for i in planted_idx)
    success = torch.tensor([int(e) in planted for e in rank])
    curve = torch.cumsum(success * 1.0, dim=0) / len(planted)
    return float(torch.trapezoid(curve) / len(si))


# ------------------------------------------------------------- hand cases
def test_cdc_auc_hand_cases():
    # n = 4, k = 1 planted, ranked first: c = [1, 1, 1, 1] -> trapezoid 3 -> 3/4
    assert cumulative_detection_auc([4, 3, 2, 1], [1, 0, 0, 0]) == pytest.approx(0.75)
    # ranked last: c = [0, 0, 0, 1] -> 0.5 / 4
    assert cumulative_detection_auc([4, 3, 2, 1], [0, 0, 0, 1]) == pytest.approx(0.125)
    # n = 5, k = 2 at ranks 1 and 3: c = [.5, .5, 1, 1, 1] -> (.5+.5)/2+(.5+1)/2+1+1 = 3.25
    assert cumulative_detection_auc([5, 4, 3, 2, 1], [1, 0, 1, 0, 0]) == pytest.approx(3.25 / 5)
    np.testing.assert_allclose(
        cumulative_detection_curve([5, 4, 3, 2, 1], [1, 0, 1, 0, 0]), [0.5, 0.5, 1, 1, 1]
    )


@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (67, 7)])
def test_cdc_auc_reference_values(n, k):
    perfect = np.r_[np.ones(k), np.zeros(n - k)].astype(bool)
    s = np.arange(n, 0, -1.0)
    assert cumulative_detection_auc(s, perfect) == pytest.approx((n - k / 2 - 1 / (2 * k)) / n)
    assert cumulative_detection_auc(s, perfect[::-1]) == pytest.approx(k / (2 * n))
    # constant scores = the expectation over random orders
    assert cumulative_detection_auc(np.zeros(n), perfect) == pytest.approx((n**2 - 1) / (2 * n**2))


def test_precision_at_k_hand_cases():
    assert precision_at_k([5, 4, 3, 2, 1], [1, 0, 1, 0, 0]) == pytest.approx(0.5)
    assert precision_at_k([5, 4, 3, 2, 1], [1, 0, 1, 0, 0], k=3) == pytest.approx(2 / 3)
    # ties at the cut-off: top-2 = {a} + one of {b, c, d} (tied, one planted) -> (1 + 1/3)/2
    assert precision_at_k([9, 1, 1, 1, 0], [1, 1, 0, 0, 0]) == pytest.approx((1 + 1 / 3) / 2)
    with pytest.raises(InputError, match=r"k must be an integer in \[1, 5\]"):
        precision_at_k([5, 4, 3, 2, 1], [1, 0, 1, 0, 0], k=6)


# ------------------------------------------------------------- references
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    data=st.data(),
)
def test_against_sklearn_and_quanda_without_ties(n, data):
    s = data.draw(arrays(np.float64, n, elements=st.floats(-100, 100), unique=True), label="scores")
    p = data.draw(arrays(bool, n), label="planted")
    if not p.any():
        p[0] = True
    assert planted_auprc(s, p) == pytest.approx(average_precision_score(p, s))
    if not p.all():
        assert planted_auroc(s, p) == pytest.approx(roc_auc_score(p, s))
    assert cumulative_detection_auc(s, p) == pytest.approx(quanda_score(s, np.flatnonzero(p)))
    k = int(p.sum())
    top = np.argsort(-s)[:k]
    assert precision_at_k(s, p) == pytest.approx(p[top].mean())


def _brute_force_over_tie_orders(s, p, fn):
    """Mean of fn over every order of the tied scores (strict scores built per order)."""
    vals = []
    for perm in itertools.permutations(range(len(s))):
        rank = np.empty(len(s))
        rank[list(perm)] = np.arange(len(s)) * 1e-6  # tiny, order-giving jitter
        vals.append(fn(s + rank, p))
    return float(np.mean(vals))


@settings(max_examples=20, deadline=None)
@given(
    s=arrays(np.float64, st.integers(2, 5), elements=st.sampled_from([0.0, 1.0, 2.0])),
    data=st.data(),
)
def test_ties_count_by_their_expectation(s, data):
    p = data.draw(arrays(bool, len(s)))
    if not p.any():
        p[-1] = True
    exp = _brute_force_over_tie_orders(s, p, lambda x, y: quanda_score(x, np.flatnonzero(y)))
    assert cumulative_detection_auc(s, p) == pytest.approx(exp)
    k = int(p.sum())
    exp_p = _brute_force_over_tie_orders(s, p, lambda x, y: y[np.argsort(-x)[:k]].mean())
    assert precision_at_k(s, p) == pytest.approx(exp_p)


@settings(max_examples=40, deadline=None)
@given(s=arrays(np.float64, st.integers(3, 30), elements=st.integers(-5, 5)), data=st.data())
def test_invariances(s, data):
    p = data.draw(arrays(bool, len(s)))
    p[0], p[-1] = True, False
    m = detection_metrics(s, p)
    # strictly increasing transforms leave every ranking metric unchanged
    m2 = detection_metrics(2 * s**3 + s + 7, p)
    for key in m:
        assert m[key] == pytest.approx(m2[key])
    # bounds
    assert 0 <= m["auroc"] <= 1 and 0 < m["auprc"] <= 1 and 0 <= m["precision_at_k"] <= 1
    assert 0 < m["cdc_auc"] < 1


def test_undefined_cases_are_nan_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="no planted image"):
        assert math.isnan(planted_auroc([1, 2, 3], [0, 0, 0]))
    with pytest.warns(UndefinedMetricWarning, match="no negative"):
        assert math.isnan(planted_auroc([1, 2, 3], [1, 1, 1]))
    with pytest.warns(UndefinedMetricWarning, match="NaN or infinite"):
        assert math.isnan(cumulative_detection_auc([1, np.nan, 3], [1, 0, 0]))
    with pytest.raises(InputError, match=r"planted must have the shape of scores \(3,\)"):
        planted_auprc([1, 2, 3], [1, 0])
    with pytest.raises(InputError, match="planted must be boolean"):
        planted_auprc([1, 2, 3], [2, 0, 0])
    with pytest.raises(InputError, match="1-D array"):
        planted_auprc([[1, 2, 3]], [[1, 0, 0]])


# ------------------------------------------------------------- per test
def test_attribution_auprc_matches_sklearn_per_row_and_nan_without_relevant():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 9))
    rel = rng.random((4, 9)) < 0.3
    rel[0] = False
    rel[1, 0] = True
    with pytest.warns(UndefinedMetricWarning, match="test image 0 has no relevant"):
        out = attribution_auprc(a, rel)
    assert math.isnan(out[0])
    for i in range(1, 4):
        if rel[i].any():
            assert out[i] == pytest.approx(average_precision_score(rel[i], a[i]))


def test_similarity_rate_and_cardinality_hand_case():
    infl = np.array(
        [
            [0.9, 0.1, 0.8, 0.0],  # top-2: 0, 2
            [0.1, 0.9, 0.2, 0.8],  # top-2: 1, 3
            [0.9, 0.1, 0.8, 0.0],  # top-2: 0, 2
        ]
    )
    train_types = ["hole", "good", "hole", "stain"]
    test_types = ["hole", "stain", "good"]
    np.testing.assert_array_equal(top_k_indices(infl, 2), [[0, 2], [1, 3], [0, 2]])
    np.testing.assert_allclose(similarity_rate(infl, train_types, test_types, k=2), [1.0, 0.5, 0.0])
    assert top_k_cardinality(infl, k=2) == 4
    # the TracIn failure: the same list for every test image -> cardinality k
    same = np.tile([0.5, 0.9, 0.1, 0.7], (5, 1)) + np.arange(5)[:, None]
    assert top_k_cardinality(same, k=2) == 2
    # ties break by the lower training index
    np.testing.assert_array_equal(top_k_indices(np.zeros((1, 3)), 2), [[0, 1]])


@settings(max_examples=40, deadline=None)
@given(
    a=arrays(
        np.float64, st.tuples(st.integers(1, 6), st.integers(2, 8)), elements=st.floats(-9, 9)
    ),
    data=st.data(),
)
def test_cardinality_bounds(a, data):
    k = data.draw(st.integers(1, a.shape[1]))
    c = top_k_cardinality(a, k=k)
    assert k <= c <= min(a.shape[1], a.shape[0] * k)
    # the union is exactly the set of indices of the lists
    assert c == len({int(j) for row in top_k_indices(a, k) for j in row})


def test_per_test_errors():
    with pytest.raises(InputError, match=r"k must be an integer in \[1, 3\]"):
        top_k_indices(np.zeros((2, 3)), 0)
    with pytest.raises(InputError, match="NaN or infinite"):
        top_k_cardinality(np.array([[np.nan, 1.0]]), k=1)
    with pytest.raises(InputError, match=r"train_types must have shape \(3,\)"):
        similarity_rate(np.zeros((2, 3)), ["a"], ["a", "b"], k=1)
    with pytest.raises(InputError, match=r"influence must be a numeric \(n_test, n_train\)"):
        attribution_auprc(np.zeros(3), np.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attribution_auprc(np.eye(2), np.eye(2))  # defined rows: no warning
