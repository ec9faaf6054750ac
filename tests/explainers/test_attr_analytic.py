"""Known answers: a linear toy detector (score = sum w * x over a known region) and
completeness (sum of signed attributions = score(x) - score(baseline)) for IG/DeepLIFT."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _attr_toys import BlackBox, LinearDetector, TinyAEDetector, images, region_weights

from xeval.explainers import attribution as A
from xeval.explainers.api import explain

W = region_weights()
LIN = LinearDetector(W)
X = images(3)
REF = images(5, seed=9)
B = REF.mean(0)


def test_saliency_is_w():
    a = A.Saliency().attribute(LIN, X)
    np.testing.assert_allclose(a, np.broadcast_to(W, X.shape), atol=1e-6)
    np.testing.assert_allclose(
        explain(LIN, X, "saliency"), np.broadcast_to(np.abs(W).sum(0), (3, 16, 16)), atol=1e-5
    )


def test_input_x_gradient_is_w_times_x():
    np.testing.assert_allclose(A.InputXGradient().attribute(LIN, X), W * X, atol=1e-6)


@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift"])
def test_reference_methods_are_w_times_x_minus_b(method):
    a = A.METHODS[method](reference=REF).attribute(LIN, X)
    np.testing.assert_allclose(a, W * (X - B), atol=1e-5)
    # explicit single baseline array, signed reduction
    m = explain(LIN, X, method, baseline=B, reduce="sum")
    np.testing.assert_allclose(m, (W * (X - B)).sum(1), atol=1e-5)


@pytest.mark.parametrize("method", ["deeplift_shap", "gradient_shap"])
def test_shap_methods_linear(method):
    # on a linear score both are exact: w * (x - mean of the baselines used)
    kw = {"n_samples": 40} if method == "gradient_shap" else {}
    a = A.METHODS[method](reference=REF, n_baselines=5, **kw).attribute(LIN, X)
    if method == "deeplift_shap":
        np.testing.assert_allclose(a, W * (X - B), atol=1e-5)
    else:  # random draws of baselines: check completeness in expectation (loose)
        assert np.allclose(a.sum((1, 2, 3)), (W * (X - B)).sum((1, 2, 3)), atol=1.0)


def test_occlusion_patch_is_its_w_dot_x_minus_b_sum():
    e = A.Occlusion(reference=REF, window=4, stride=4)
    a = e.attribute(LIN, X)
    contrib = (W * (X - B)).sum(1)  # (B, H, W)
    blocks = contrib.reshape(3, 4, 4, 4, 4).sum(axis=(2, 4))  # per 4x4 patch
    expected = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)
    for c in range(3):
        np.testing.assert_allclose(a[:, c], expected, atol=1e-4)
    # zero outside the region, like the true attribution
    assert np.all(a[:, :, :4, :] == 0) and np.all(a[:, :, 12:, :] == 0)


def test_occlusion_black_box_matches_differentiable():
    a1 = A.Occlusion(reference=REF, window=4, stride=2).attribute(LIN, X)
    a2 = A.Occlusion(reference=REF, window=4, stride=2).attribute(BlackBox(W), X)
    np.testing.assert_allclose(a1, a2, atol=1e-4)


def test_feature_ablation_grid_is_segment_contribution():
    a = A.FeatureAblation(reference=REF, segments="grid", window=8).attribute(LIN, X)
    contrib = (W * (X - B)).sum(1).reshape(3, 2, 8, 2, 8).sum(axis=(2, 4))
    np.testing.assert_allclose(a[:, 0, :8, :8], np.broadcast_to(contrib[:, 0, 0, None, None],
                               (3, 8, 8)), atol=1e-4)  # fmt: skip


def test_native_is_the_map():
    np.testing.assert_allclose(explain(LIN, X, "native"), (W * X).sum(1), atol=1e-6)


def test_black_baseline_ig_is_input_x_gradient():
    a = A.IntegratedGradients(baseline="black").attribute(LIN, X)
    np.testing.assert_allclose(a, W * X, atol=1e-5)


# -------------------------------------------------------------------------- completeness
AE = TinyAEDetector()
XA = images(4, seed=2)


def _delta(det, x, b):
    return det.score(x) - det.score(np.broadcast_to(b, x.shape).copy())


def test_ig_completeness_tiny_ae():
    a = A.IntegratedGradients(reference=REF, n_steps=64).attribute(AE, XA)
    np.testing.assert_allclose(a.sum((1, 2, 3)), _delta(AE, XA, B), rtol=2e-3, atol=2e-5)


def test_deeplift_completeness_tiny_ae():
    a = A.DeepLift(reference=REF).attribute(AE, XA)
    np.testing.assert_allclose(a.sum((1, 2, 3)), _delta(AE, XA, B), rtol=1e-4, atol=1e-6)


def test_deeplift_shap_completeness_tiny_ae():
    a = A.DeepLiftShap(reference=REF, n_baselines=5, internal_batch_size=6).attribute(AE, XA)
    expected = AE.score(XA) - AE.score(REF).mean()
    np.testing.assert_allclose(a.sum((1, 2, 3)), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_completeness_conv_autoencoder():
    ae_mod = pytest.importorskip("xeval.adapters.autoencoder")
    det = ae_mod.ConvAutoencoder(input_size=16, epochs=1, width=4, bottleneck=4,
                                 batch_size=8, augment=False)  # fmt: skip
    det.fit([images(8)])
    x, ref = images(2, seed=3), images(4, seed=4)
    a = A.IntegratedGradients(reference=ref, n_steps=128, method="riemann_trapezoid")
    delta = _delta(det, x, ref.mean(0))
    np.testing.assert_allclose(a.attribute(det, x).sum((1, 2, 3)), delta, rtol=0.05, atol=1e-5)
    # each layer has its own LeakyReLU module: deeplift hooks them all, no reuse warning
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = explain(det, x, "deeplift", reference=ref)
    assert m.shape == (2, 16, 16) and np.all(np.isfinite(m))
    assert not any("reuses" in str(w.message) or "several times" in str(w.message) for w in rec)
    assert explain(det, x, "grad_cam").shape == (2, 16, 16)
