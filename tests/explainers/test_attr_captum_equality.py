"""Each xeval attribution equals captum called directly (same forward, baseline, params,
seed) after the same channel reduction."""

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
from xeval.rng import torch_seeded

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


def test_gradient_shap_single_call_same_seed():
    ours = explain(DET, X, "gradient_shap", reference=REF, n_samples=6, n_baselines=6,
                   stdevs=0.05, internal_batch_size=None, seed=3)  # fmt: skip
    with torch_seeded(3, numpy_global=True):
        theirs = ca.GradientShap(F).attribute(
            _x(), baselines=torch.from_numpy(REF), n_samples=6, stdevs=0.05
        )
    _close(ours, theirs)


def test_gradient_shap_chunked_is_weighted_mean_of_captum_calls():
    """internal_batch_size=8 < B * n_samples = 48: one input per call, 8 then 4 samples."""
    e = A.GradientShap(reference=REF, n_baselines=6, n_samples=12, internal_batch_size=8, seed=1)
    ours = e.attribute(DET, X)
    gs = ca.GradientShap(F)
    parts = []
    with torch_seeded(1, numpy_global=True):
        for i in range(4):
            xc = _x()[i : i + 1]
            a = gs.attribute(xc, baselines=torch.from_numpy(REF), n_samples=8) * 8
            a = a + gs.attribute(xc, baselines=torch.from_numpy(REF), n_samples=4) * 4
            parts.append(a / 12)
    np.testing.assert_allclose(ours, torch.cat(parts).detach().numpy(), rtol=1e-4, atol=1e-7)


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


def test_smoothgrad_same_seed():
    ours = explain(DET, X, "smoothgrad", nt_samples=5, stdevs=0.1, nt_samples_batch_size=2,
                   seed=7)  # fmt: skip
    with torch_seeded(7, numpy_global=True):
        theirs = ca.NoiseTunnel(ca.Saliency(F)).attribute(
            _x(), nt_type="smoothgrad", nt_samples=5, nt_samples_batch_size=2, stdevs=0.1,
            abs=False,
        )  # fmt: skip
    _close(ours, theirs)


def test_smoothgrad_over_integrated_gradients():
    ours = explain(DET, X, "smoothgrad", base="integrated_gradients",
                   base_params={"n_steps": 8}, reference=REF, nt_samples=3, stdevs=0.1,
                   seed=2, nt_type="vargrad")  # fmt: skip
    with torch_seeded(2, numpy_global=True):
        theirs = ca.NoiseTunnel(ca.IntegratedGradients(F)).attribute(
            _x(), nt_type="vargrad", nt_samples=3, nt_samples_batch_size=16, stdevs=0.1,
            baselines=_b(), n_steps=8, internal_batch_size=64,
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


def test_kernel_shap_same_seed():
    e = A.KernelShap(reference=REF, segments="grid", window=8, n_samples=30, seed=4)
    masks = torch.from_numpy(e._fa.feature_mask(X))
    ks = ca.KernelShap(F)
    with torch_seeded(4, numpy_global=True):
        theirs = torch.cat([
            ks.attribute(_x()[i : i + 1], baselines=_b()[i : i + 1],
                         feature_mask=masks[i : i + 1], n_samples=30)
            for i in range(4)
        ])  # fmt: skip
    _close(e.explain(DET, X), theirs)
