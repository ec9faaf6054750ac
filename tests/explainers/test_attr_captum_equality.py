"""Each xeval attribution equals captum called directly (same forward, baseline, params,
seed) after the same channel reduction. The random methods draw per sample (keyed by
(seed, sample id)): captum is fed those draws (GradientSHAP, SmoothGrad) or seeded per
image (KernelSHAP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _attr_toys import TinyAEDetector, images
from captum import attr as ca

from xeval.explainers import attribution as A
from xeval.explainers.api import explain
from xeval.explainers.attribution import ScoreModule
from xeval.explainers.reduce import reduce_channels
from xeval.rng import derived_seed, torch_seeded

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks"),
]

DET = TinyAEDetector()
X = images(4)
REF = images(6, seed=5)
B1 = REF.mean(0)


def _x():
    return torch.from_numpy(X.copy())


def _b():
    return torch.from_numpy(np.broadcast_to(B1, X.shape).copy())


def _close(ours, theirs, reduce="abs_sum"):
    theirs = reduce_channels(theirs.detach().numpy(), reduce)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


F = DET.torch_score()


@pytest.mark.parametrize("reduce", ["abs_sum", "sum", "l2", "max_abs"])
def test_saliency(reduce):
    ours = explain(DET, X, "saliency", reduce=reduce)
    _close(ours, ca.Saliency(F).attribute(_x(), abs=False), reduce)


def test_input_x_gradient():
    _close(explain(DET, X, "input_x_gradient"), ca.InputXGradient(F).attribute(_x()))


@pytest.mark.parametrize("ibs", [None, 5])
def test_integrated_gradients(ibs):
    ours = explain(DET, X, "integrated_gradients", reference=REF, n_steps=20,
                   internal_batch_size=ibs, reduce="sum")  # fmt: skip
    theirs = ca.IntegratedGradients(F).attribute(_x(), baselines=_b(), n_steps=20)
    _close(ours, theirs, "sum")


def _feed_draws(monkeypatch, *, noise=None, idx=None, alpha=None):
    """Make captum's own draws return xeval's per-sample draws (rows image-major, as
    captum lays them out): noise (``torch.normal``), baseline rows
    (``np.random.choice``) and interpolation points (``np.random.uniform``)."""
    if noise is not None:
        monkeypatch.setattr(torch, "normal", lambda *a, **k: torch.from_numpy(noise))
    if idx is not None:
        monkeypatch.setattr(np.random, "choice", lambda *a, **k: idx)
    if alpha is not None:
        monkeypatch.setattr(np.random, "uniform", lambda *a, **k: alpha)


@pytest.mark.parametrize("ibs", [None, 5])
def test_gradient_shap_is_captum_on_per_sample_draws(ibs, monkeypatch):
    """xeval's GradientSHAP = captum's GradientShap fed the draws of each image keyed by
    (seed, sample id) (GradientShap.draws), whatever internal_batch_size."""
    e = A.GradientShap(reference=REF, n_samples=6, n_baselines=6, stdevs=0.05,
                       internal_batch_size=ibs, seed=3)  # fmt: skip
    ours = e.explain(DET, X)
    draws = [e.draws(str(i), len(REF), X.shape[1:]) for i in range(len(X))]
    idx, alpha, noise = zip(*draws, strict=True)
    _feed_draws(monkeypatch, noise=np.concatenate(noise), idx=np.concatenate(idx),
                alpha=np.concatenate(alpha))  # fmt: skip
    theirs = ca.GradientShap(F).attribute(
        _x(), baselines=torch.from_numpy(REF), n_samples=6, stdevs=0.05
    )
    _close(ours, theirs)


def test_gradient_shap_draws_are_per_sample():
    e = A.GradientShap(reference=REF, n_samples=8, stdevs=0.1, seed=1)
    a = e.draws("a", 6, (3, 4, 4))
    for u, v in zip(a, e.draws("a", 6, (3, 4, 4)), strict=True):
        np.testing.assert_array_equal(u, v)
    b = e.draws("b", 6, (3, 4, 4))
    assert not np.array_equal(a[1], b[1]) and not np.array_equal(a[2], b[2])
    assert a[0].min() >= 0 and a[0].max() < 6 and a[1].min() >= 0 and a[1].max() < 1
    assert A.GradientShap(reference=REF).draws("a", 6, (3, 4, 4))[2] is None  # stdevs 0


@pytest.mark.parametrize("ibs", [None, 4])
def test_deeplift(ibs):
    ours = explain(DET, X, "deeplift", reference=REF, internal_batch_size=ibs, reduce="sum")
    theirs = ca.DeepLift(ScoreModule(F, DET.model)).attribute(_x(), baselines=_b())
    _close(ours, theirs, "sum")


@pytest.mark.parametrize("ibs", [None, 8])
def test_deeplift_shap(ibs):
    ours = explain(DET, X, "deeplift_shap", reference=REF, n_baselines=6,
                   internal_batch_size=ibs, reduce="sum")  # fmt: skip
    theirs = ca.DeepLiftShap(ScoreModule(F, DET.model)).attribute(
        _x(), baselines=torch.from_numpy(REF)
    )
    _close(ours, theirs, "sum")


def _sg_noise(e):
    return np.concatenate([e.noise(str(i), X.shape[1:]) for i in range(len(X))])


def test_smoothgrad_is_captum_on_per_sample_noise(monkeypatch):
    """xeval's SmoothGrad = captum's NoiseTunnel fed the noise of each image keyed by
    (seed, sample id) (SmoothGrad.noise)."""
    e = A.SmoothGrad(nt_samples=5, stdevs=0.1, nt_samples_batch_size=2, seed=7)
    ours = e.explain(DET, X)
    _feed_draws(monkeypatch, noise=_sg_noise(e))
    theirs = ca.NoiseTunnel(ca.Saliency(F)).attribute(
        _x(), nt_type="smoothgrad", nt_samples=5, stdevs=0.1, abs=False
    )
    _close(ours, theirs)


def test_smoothgrad_over_integrated_gradients(monkeypatch):
    e = A.SmoothGrad(base="integrated_gradients", base_params={"n_steps": 8}, reference=REF,
                     nt_samples=3, stdevs=0.1, seed=2, nt_type="vargrad")  # fmt: skip
    ours = e.explain(DET, X)
    _feed_draws(monkeypatch, noise=_sg_noise(e))
    theirs = ca.NoiseTunnel(ca.IntegratedGradients(F)).attribute(
        _x(), nt_type="vargrad", nt_samples=3, stdevs=0.1, baselines=_b(), n_steps=8,
        internal_batch_size=64,
    )  # fmt: skip
    _close(ours, theirs)


def test_grad_cam():
    ours = explain(DET, X, "grad_cam", layer="enc")
    a = ca.LayerGradCam(F, DET.model.enc).attribute(_x(), relu_attributions=True)
    theirs = ca.LayerAttribution.interpolate(a, X.shape[-2:], "bilinear")
    _close(ours, theirs, "sum")


def test_occlusion():
    ours = explain(DET, X, "occlusion", reference=REF, window=4, stride=2,
                   perturbations_per_eval=3)  # fmt: skip
    theirs = ca.Occlusion(F).attribute(
        _x(), sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=_b()
    )
    _close(ours, theirs)


def test_feature_ablation():
    e = A.FeatureAblation(reference=REF, n_segments=8)
    masks = torch.from_numpy(e.feature_mask(X))
    theirs = ca.FeatureAblation(F).attribute(_x(), baselines=_b(), feature_mask=masks)
    _close(e.explain(DET, X), theirs)
    assert masks.shape == (4, 1, 16, 16) and len(np.unique(masks[0])) > 1


def test_kernel_shap_same_seed_per_sample():
    """One captum call per image, seeded from (seed, sample id)."""
    e = A.KernelShap(reference=REF, segments="grid", window=8, n_samples=30, seed=4)
    masks = torch.from_numpy(e._fa.feature_mask(X))
    ks = ca.KernelShap(F)
    parts = []
    for i in range(4):
        with torch_seeded(derived_seed(4, str(i)), numpy_global=True):
            parts.append(ks.attribute(_x()[i : i + 1], baselines=_b()[i : i + 1],
                                      feature_mask=masks[i : i + 1], n_samples=30))  # fmt: skip
    _close(e.explain(DET, X), torch.cat(parts))
