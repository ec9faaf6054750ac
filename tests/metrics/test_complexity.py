"""Complexity of explanations: Gini sparseness and entropy by hand, invariances, all-zero
maps, mergeable state, input errors, cross-check against Quantus."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xeval import metrics as M
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics import ComplexityMetrics
from xeval.metrics import complexity as C


def _naive_gini(a):
    """Mean absolute difference form: sum_ij |x_i - x_j| / (2 n^2 mean(x))."""
    x = np.abs(np.asarray(a, float)).ravel()
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())


def test_hand_computed_values():
    a = np.array([[[0.0, 0.0], [1.0, -3.0]]])  # |a| sorted: 0 0 1 3; weights -3 -1 1 3
    assert M.gini_sparseness(a)[0] == pytest.approx((1 * 1 + 3 * 3) / (4 * 4))
    assert M.entropy_complexity(a)[0] == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    )


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_extremes_uniform_and_one_hot(n):
    uniform = np.full((1, 1, n), -2.5)
    one_hot = np.zeros((1, 1, n))
    one_hot[0, 0, n // 2] = 4.0
    assert M.gini_sparseness(uniform)[0] == pytest.approx(0.0, abs=1e-15)
    assert M.gini_sparseness(one_hot)[0] == pytest.approx((n - 1) / n)
    assert M.entropy_complexity(uniform)[0] == pytest.approx(math.log(n))
    assert M.entropy_complexity(one_hot)[0] == 0.0


def test_all_zero_map_is_nan_with_warning_others_kept():
    a = np.zeros((3, 4, 4))
    a[0, 0, 0] = 1.0
    a[2] = 1.0
    with pytest.warns(
        UndefinedMetricWarning, match=r"gini_sparseness for 1 image\(s\) \(index 1\)"
    ):
        g = M.gini_sparseness(a)
    with pytest.warns(UndefinedMetricWarning, match=r"entropy_complexity .*all zeros"):
        h = M.entropy_complexity(a)
    np.testing.assert_allclose(g, [15 / 16, np.nan, 0.0], atol=1e-15)
    np.testing.assert_allclose(h, [0.0, np.nan, math.log(16)])


def test_directions_are_declared():
    assert C.GINI_HIGHER_IS_BETTER is True and C.ENTROPY_HIGHER_IS_BETTER is False
    assert C.HIGHER_IS_BETTER == {"gini_sparseness": True, "entropy_complexity": False}
    assert ComplexityMetrics.higher_is_better == C.HIGHER_IS_BETTER


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 1e3))
def test_matches_naive_and_invariances(seed, scale):
    rng = np.random.default_rng(seed)
    n, h, w = rng.integers(1, 5), rng.integers(1, 9), rng.integers(1, 9)
    a = rng.normal(size=(n, h, w)) * (rng.random((n, h, w)) < 0.6)
    a[:, 0, 0] = 1.0  # never all zero
    g, e = M.gini_sparseness(a), M.entropy_complexity(a)
    np.testing.assert_allclose(g, [_naive_gini(x) for x in a], rtol=1e-9, atol=1e-12)
    p = [np.abs(x).ravel() / np.abs(x).sum() for x in a]
    np.testing.assert_allclose(e, [-(q[q > 0] * np.log(q[q > 0])).sum() for q in p], atol=1e-12)
    assert np.all((g >= -1e-12) & (g < 1)) and np.all((e >= 0) & (e <= np.log(h * w) + 1e-12))
    # per-image positive scaling (different per image), sign flips, pixel permutations
    s = scale * np.arange(1, n + 1)[:, None, None]
    flip = np.where(rng.random(a.shape) < 0.5, -1.0, 1.0)
    perm = rng.permutation(h * w)
    b = (a * s * flip).reshape(n, -1)[:, perm].reshape(n, h, w)
    np.testing.assert_allclose(M.gini_sparseness(b), g, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(M.entropy_complexity(b), e, rtol=1e-9, atol=1e-12)
    # a list of 2-D maps gives the same per-image values; float32 input too
    np.testing.assert_allclose(M.gini_sparseness(list(a)), g, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(M.entropy_complexity(a.astype(np.float32)), e, rtol=1e-5)


def test_lists_of_different_sizes_and_single_image():
    maps = [np.ones((2, 3)), np.eye(4), np.array([[5.0]])]
    np.testing.assert_allclose(M.gini_sparseness(maps), [0, 0.75, 0], atol=1e-15)
    np.testing.assert_allclose(M.entropy_complexity(maps), [math.log(6), math.log(4), 0])
    assert M.gini_sparseness(np.eye(4)).shape == (1,)


def test_input_errors():
    for bad in (np.nan, np.inf):
        a = np.ones((2, 3, 3))
        a[1, 1, 1] = bad
        for fn in (M.gini_sparseness, M.entropy_complexity):
            with pytest.raises(InputError, match="non-finite"):
                fn(a)
    with pytest.raises(InputError, match=r"\(N, H, W\)"):
        M.gini_sparseness(np.ones((2, 3, 4, 4)))  # channels must be reduced first
    with pytest.raises(InputError, match="empty"):
        M.entropy_complexity([])
    with pytest.raises(InputError, match="ids has 1 entries for 2 images"):
        m = ComplexityMetrics()
        m.update(m.init(), np.ones((2, 3, 3)), ids=["x"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data())
def test_merge_of_split_states_equals_whole(seed, d):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    maps = [rng.normal(size=rng.integers(1, 8, 2)) * (rng.random() < 0.8) for _ in range(n)]
    split = d.draw(st.integers(1, n - 1))
    metric = ComplexityMetrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        whole = metric.compute(metric.update(metric.init(), maps, ids=range(n)))
        a = metric.update(metric.init(), maps[:split], ids=range(split))
        b = metric.update(metric.init(), maps[split:], ids=range(split, n))
        merged = metric.compute(metric.merge(b, a))
    order = np.argsort(merged["ids"])
    for name in ComplexityMetrics.names:
        x, y = whole[name], merged[name]
        assert (np.isnan(x) and np.isnan(y)) or x == y, name
        assert whole["n/" + name] == merged["n/" + name]
        np.testing.assert_array_equal(
            merged[name + "_per_image"][order], whole[name + "_per_image"]
        )


def test_state_matches_functions():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 5, 6))
    a[2] = 0.0
    metric = ComplexityMetrics()
    with pytest.warns(UndefinedMetricWarning):
        out = metric.compute(metric.update(metric.init(), a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        g, e = M.gini_sparseness(a), M.entropy_complexity(a)
    np.testing.assert_array_equal(out["gini_sparseness_per_image"], g)
    np.testing.assert_array_equal(out["entropy_complexity_per_image"], e)
    assert out["gini_sparseness"] == pytest.approx(np.nanmean(g))
    assert out["n/entropy_complexity"] == 3 and out["ids"] == [None] * 4


# ------------------------------------------------------------------ Quantus check
def _quantus(cls, maps):
    from _crosscheck import require

    quantus = require("quantus")
    n = len(maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, cls)(normalise=False, abs=True, disable_warnings=True)
        out = metric(
            model=None,
            x_batch=np.zeros((n, 1) + maps.shape[1:], np.float32),
            y_batch=np.zeros(n, int),
            a_batch=maps[:, None].astype(np.float64),
        )
    return np.asarray(out, dtype=float)


def test_quantus_agrees():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(6, 12, 10)) * (rng.random((6, 12, 10)) < 0.5)
    a[:, 0, 0] = 2.0
    # Quantus adds 1e-7 to |a| (Gini) and 1e-12 inside the log (entropy): tiny offsets
    np.testing.assert_allclose(_quantus("Sparseness", a), M.gini_sparseness(a), atol=1e-6)
    np.testing.assert_allclose(_quantus("Complexity", a), M.entropy_complexity(a), atol=1e-9)


def test_quantus_deviation_on_all_zero_and_tiny_maps():
    z = np.zeros((2, 4, 4))  # Quantus refuses a batch that is all zeros
    z[1, 0, 0] = 1.0
    assert _quantus("Sparseness", z)[0] == pytest.approx(0.0)  # Quantus: 0, not undefined
    assert np.isnan(_quantus("Complexity", z)[0])  # NaN there too, silently
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(M.gini_sparseness(z)[0])
    tiny = np.zeros((1, 4, 4))
    tiny[0, 0, 0] = 1e-7  # the +1e-7 shift halves Quantus's Gini of a one-hot map
    assert M.gini_sparseness(tiny)[0] == pytest.approx(15 / 16)
    assert _quantus("Sparseness", tiny)[0] < 0.5
