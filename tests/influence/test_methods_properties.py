"""Invariants of every method (hypothesis): permuting the training images permutes the
columns, the rows of a test set are independent of each other, and built method
objects behave like names."""

from __future__ import annotations

import numpy as np
import pytest
from _influence_toys import NetDetector, blobs, one_thread  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

import xeval
from xeval.errors import InputError
from xeval.influence import build_method

CASES = [
    ("grad_dot", {}),
    ("grad_cos", {}),
    ("knn", {}),
    ("representation", {}),
    ("tracin", {}),
    ("influence_function", {"solver": "exact", "damping": 0.5}),
    ("influence_function", {"solver": "cg", "damping": 0.5}),
    ("label_free", {"base": "grad_dot"}),
]


@pytest.fixture(scope="module")
def net():
    train = blobs(7, seed=0)
    return NetDetector(4, seed=2).fit(train, epochs=6, every=3), train


@settings(max_examples=8, deadline=None)
@given(perm_seed=st.integers(0, 1000), case=st.sampled_from(CASES))
def test_permuting_training_images_permutes_columns(net, perm_seed, case):
    det, train = net
    method, kw = case
    test = blobs(2, seed=9)
    perm = np.random.default_rng(perm_seed).permutation(len(train))
    a = xeval.influence(det, train, test, method=method, **kw)
    b = xeval.influence(det, train[perm], test, method=method, **kw)
    np.testing.assert_allclose(b, a[:, perm], rtol=1e-7, atol=1e-12 * max(np.abs(a).max(), 1))


@settings(max_examples=8, deadline=None)
@given(rows=st.lists(st.integers(0, 4), min_size=1, max_size=4), case=st.sampled_from(CASES))
def test_test_rows_are_independent(net, rows, case):
    det, train = net
    method, kw = case
    test = blobs(5, seed=11)
    full = xeval.influence(det, train, test, method=method, **kw)
    part = xeval.influence(det, train, test[rows], method=method, **kw)
    np.testing.assert_allclose(part, full[rows], rtol=1e-7, atol=1e-12 * max(np.abs(full).max(), 1))


def test_a_built_method_is_accepted(net):
    det, train = net
    m = build_method("grad_dot", batch_size=2)
    np.testing.assert_allclose(
        xeval.influence(det, train, train[:2], method=m),
        xeval.influence(det, train, train[:2], method="grad_dot"),
        rtol=1e-12,
    )
    with pytest.raises(InputError, match="pass the method's name instead"):
        xeval.influence(det, train, train[:2], method=m, seed=1)
