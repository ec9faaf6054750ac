"""Model-parameter randomisation test (cascading MPRT, Adebayo et al. 2018).

A tiny conv detector (untrained weights suffice: the question is whether the
explanation follows the parameters) and a model-independent Sobel control give the
classic sanity-check contrast: saliency decorrelates as layers are randomised, the
edge map stays identical.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

import xeval
from xeval.adapters.base import Detector
from xeval.errors import UndefinedMetricWarning
from xeval.metrics import (
    RandomisationResult,
    UntestableError,
    model_parameter_randomisation,
    mprt_summary,
)
from xeval.metrics.randomisation import has_fitted_statistics

S = 16
NO_REFIT = "untestable: detector has fitted statistics and no refit data was given"


def conv_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 1, 3, padding=1),
    ).eval()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(4, 3, S, S)).astype(np.float32)


@pytest.fixture
def detector():
    return xeval.wrap(conv_net(), input_size=(S, S), output="map", reduction="mean")


def sobel(_detector, x: np.ndarray) -> np.ndarray:
    """Trivial control: edges of the input, whatever the detector."""
    g = x.astype(np.float64).mean(1)
    return np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=2))


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_saliency_decorrelates_sobel_control_does_not(detector, images):
    before = state(detector.torch_module())
    res = model_parameter_randomisation(detector, images, "saliency", seed=0)
    assert isinstance(res, RandomisationResult) and res.status == "ok" and res.testable
    # cascading from the output: the last conv first
    assert res.layers == ["original", "4", "2", "0"]
    for arr in (res.spearman_abs, res.spearman_signed, res.ssim):
        assert arr.shape == (4, 4)
    np.testing.assert_allclose(res.spearman_abs[:, 0], 1.0)  # step 0: identical maps
    np.testing.assert_allclose(res.ssim[:, 0], 1.0)
    s = mprt_summary(res)
    assert s.mean_spearman_abs[-1] < 0.5 and s.mean_ssim[-1] < 0.5
    assert s.mean_spearman_abs[-1] < s.mean_spearman_abs[0] - 0.5
    assert s.passes is True
    # the classic contrast: a model-independent edge map stays identical
    ctrl = model_parameter_randomisation(detector, images, sobel, seed=0)
    np.testing.assert_allclose(ctrl.spearman_abs, 1.0)
    np.testing.assert_allclose(ctrl.spearman_signed, 1.0)
    np.testing.assert_allclose(ctrl.ssim, 1.0, atol=1e-12)
    sc = mprt_summary(ctrl)
    assert sc.passes is False and "barely depends" in sc.reason
    # the user's detector is untouched
    after = state(detector.torch_module())
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_reproducible_for_a_seed(detector, images):
    a = model_parameter_randomisation(detector, images[:2], "saliency", seed=1)
    b = model_parameter_randomisation(detector, images[:2], "saliency", seed=1)
    c = model_parameter_randomisation(detector, images[:2], "saliency", seed=2)
    for k in ("spearman_abs", "spearman_signed", "ssim"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.spearman_abs[:, 1:], c.spearman_abs[:, 1:])
    # the caller's torch RNG is not consumed
    torch.manual_seed(5)
    r1 = torch.rand(1)
    torch.manual_seed(5)
    model_parameter_randomisation(detector, images[:1], "native", seed=1)
    assert torch.equal(torch.rand(1), r1)


def test_layer_subset_and_signed_maps(detector, images):
    res = model_parameter_randomisation(
        detector, images[:2], "saliency", params={"reduce": "sum"}, layers=["0", "4"]
    )
    assert res.layers == ["original", "4", "0"]
    assert np.any(res.spearman_signed[:, 1:] != res.spearman_abs[:, 1:])
    with pytest.raises(xeval.errors.InputError, match="not modules owning parameters"):
        model_parameter_randomisation(detector, images[:1], "saliency", layers=["nope"])


class StatsDetector(Detector):
    """map = sum_c (f(x) - mu)^2 with mu the mean normal feature map (fitted statistics)."""

    name = "stats"
    input_size = (S, S)
    differentiable = True
    fitted_statistics = True
    fit_log: ClassVar[list[int]] = []  # class-level: shared with deep copies

    def __init__(self, *, retrain: bool = False) -> None:
        self.net = conv_net()
        self.mu: torch.Tensor | None = None
        self.retrain = retrain
        self.fit_calls = 0

    def fit(self, batches):
        if self.retrain:  # trains a fresh model: randomisation cannot survive
            self.net = conv_net(seed=self.fit_calls + 10)
        x = torch.from_numpy(np.concatenate(list(batches)))
        with torch.no_grad():
            self.mu = self.net(x).mean(0)
        self.fit_calls += 1
        StatsDetector.fit_log.append(id(self))
        return self

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.net(x) - self.mu) ** 2).sum(1)

    def predict(self, images):
        with torch.no_grad():
            m = self._map(torch.from_numpy(images))
        return m.flatten(1).amax(1).numpy(), m.numpy()

    def torch_score(self):
        return lambda x: self._map(x).flatten(1).mean(1)

    def torch_module(self):
        return self.net


def test_fitted_statistics_need_refit(images):
    det = StatsDetector().fit([images])
    det_state = state(det.net)
    with pytest.warns(UndefinedMetricWarning, match="no refit data"):
        res = model_parameter_randomisation(det, images[:2], "saliency")
    assert res.status.startswith(NO_REFIT) and not res.testable
    assert res.spearman_abs.shape == (2, 0) and res.layers == []
    assert mprt_summary(res).passes is None
    with pytest.raises(UntestableError, match="no refit data"):
        model_parameter_randomisation(det, images[:2], "saliency", on_untestable="raise")

    StatsDetector.fit_log.clear()
    res = model_parameter_randomisation(det, images[:2], "saliency", refit_batches=[images])
    assert res.status == "ok" and res.refitted
    # fitted on the copy: once for step 0, then after each of the 3 layers
    assert len(StatsDetector.fit_log) == 4 and id(det) not in StatsDetector.fit_log
    assert det.fit_calls == 1 and all(
        torch.equal(v, det_state[k]) for k, v in state(det.net).items()
    )
    np.testing.assert_allclose(res.spearman_abs[:, 0], 1.0)
    assert np.nanmean(res.spearman_abs[:, -1]) < 0.5
    # a generator is materialised once and reused at every step
    gen = (b for b in [images])
    res2 = model_parameter_randomisation(det, images[:2], "saliency", refit_batches=gen)
    np.testing.assert_array_equal(res2.spearman_abs, res.spearman_abs)


def test_refit_that_retrains_is_untestable(images):
    det = StatsDetector(retrain=True).fit([images])
    with pytest.warns(UndefinedMetricWarning, match="replaced the detector's torch module"):
        res = model_parameter_randomisation(det, images[:1], "saliency", refit_batches=[images])
    assert res.status.startswith("untestable: fit() replaced")


def test_auto_detection_of_fitted_statistics(detector):
    assert not has_fitted_statistics(detector)
    wrapped = xeval.wrap(conv_net(), input_size=(S, S), output="map", fit_fn=lambda m, b: None)
    assert has_fitted_statistics(wrapped)
    assert has_fitted_statistics(StatsDetector())


def test_black_box_is_untestable(images):
    bb = xeval.wrap(lambda x: x.mean(axis=(1, 2, 3)), input_size=(S, S))
    with pytest.warns(UndefinedMetricWarning, match="no torch module"):
        res = model_parameter_randomisation(bb, images[:2], "occlusion")
    assert res.status.startswith("untestable:") and "black box" in res.status
    with pytest.raises(UntestableError):
        model_parameter_randomisation(bb, images[:2], "occlusion", on_untestable="raise")


def test_constant_maps_give_nan_spearman(detector, images):
    with pytest.warns(UndefinedMetricWarning, match="constant explanation map"):
        res = model_parameter_randomisation(
            detector, images[:2], lambda d, x: np.zeros((len(x), S, S))
        )
    assert np.all(np.isnan(res.spearman_abs)) and mprt_summary(res).passes is None


def test_patch_features_randomises_its_statistics(images):
    from xeval.adapters import PatchFeatures

    for scoring in ("knn", "gaussian"):
        pf = PatchFeatures(input_size=S, memory_size=32, scoring=scoring, sigma=1.0, scales=(1.0,))
        pf.fit([images])
        before = {k: v.clone() for k, v in pf._stats.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("error", UndefinedMetricWarning)
            res = model_parameter_randomisation(pf, images[:2], "native")
        assert res.status == "ok" and res.layers == ["original", "normal statistics"]
        np.testing.assert_allclose(res.spearman_abs[:, 0], 1.0)
        assert np.all(res.spearman_abs[:, 1] < 1.0)
        assert any("feature extractor is fixed" in n for n in res.notes)
        assert all(torch.equal(before[k], pf._stats[k]) for k in before)  # untouched


def test_conv_autoencoder_cascade_order(images):
    from xeval.adapters import ConvAutoencoder

    x = np.random.default_rng(1).uniform(size=(4, 3, 16, 16)).astype(np.float32)
    ae = ConvAutoencoder(input_size=16, width=4, epochs=1, batch_size=4, downsample=2).fit([x])
    before = state(ae.model_)
    res = model_parameter_randomisation(ae, x[:1], "native", layers=["decoder.8", "encoder.0"])
    assert res.status == "ok" and not res.refitted
    assert res.layers == ["original", "decoder.8", "encoder.0"]
    assert all(torch.equal(before[k], v) for k, v in state(ae.model_).items())
