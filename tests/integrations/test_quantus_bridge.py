"""The Quantus bridge: Quantus metrics on xeval detectors, with the single-output fixes.

Tiny detectors written here: ``score = sum over a fixed region of sum_c |x - normal|``
(differentiable torch score or black box) and a one-conv detector for randomisation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _crosscheck import optional, require
from torch import nn

# imported at test time, not collection time, so that a run that deselects these tests
# (pytest -m anomalib in the anomalib venv) neither skips nor fails on a missing Quantus
quantus = optional("quantus")

from xeval.adapters.base import Detector  # noqa: E402
from xeval.errors import InputError  # noqa: E402
from xeval.integrations.quantus import ScoreAsLogit, run_quantus, wrap_detector  # noqa: E402
from xeval.metrics import deletion_curve, relevance_mass_per_image  # noqa: E402
from xeval.substrates import SubstrateWarning  # noqa: E402

H = W = 8


@pytest.fixture(autouse=True)
def _needs_quantus():
    require("quantus")  # skips each test here without Quantus (fails in CI)


class RegionDetector(Detector):
    """score = sum_{region} sum_c |x - normal| (float64); torch score unless black box."""

    name = "region"

    def __init__(self, normal: np.ndarray, region: np.ndarray, *, black_box: bool = False):
        self.normal = normal.astype(np.float64)
        self.region = region.astype(np.float64)
        self.black_box = black_box

    def fit(self, batches):
        return self

    def predict(self, images):
        m = np.abs(images.astype(np.float64) - self.normal).sum(axis=1) * self.region
        return m.sum(axis=(1, 2)), m

    def torch_score(self):
        if self.black_box:
            return None
        normal = torch.from_numpy(self.normal)
        region = torch.from_numpy(self.region)
        return lambda x: ((x.double() - normal).abs().sum(1) * region).sum(dim=(1, 2))


class ConvDetector(Detector):
    """score = mean(conv(x - normal)^2): torch_score is a closure over the module."""

    name = "conv"

    def __init__(self, normal: np.ndarray, *, expose_module: bool = True):
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 1))
        self.normal = torch.from_numpy(normal.astype(np.float32))
        self.expose_module = expose_module

    def fit(self, batches):
        return self

    def predict(self, images):
        with torch.no_grad():
            s = self.torch_score()(torch.from_numpy(images))
        return s.numpy(), np.zeros((len(images), 0, 0), np.float32)

    def torch_score(self):
        net, normal = self.net, self.normal
        return lambda x: net(x - normal).pow(2).mean(dim=(1, 2, 3))

    def torch_module(self):
        return self.net if self.expose_module else nn.Linear(2, 2)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    normal = rng.uniform(0.3, 0.7, size=(1, H, W)).astype(np.float32)
    train = (normal[None] + rng.normal(0, 0.02, (6, 1, H, W))).astype(np.float32)
    images = np.repeat(normal[None], 6, axis=0) + rng.normal(0, 0.01, (6, 1, H, W))
    masks = np.zeros((6, H, W), bool)
    for i in range(6):
        r, c = 1 + i % 4, 2 + i % 3
        images[i, :, r : r + 3, c : c + 3] += 0.4
        masks[i, r : r + 3, c : c + 3] = True
    masks[4:] = False  # two normal images: empty masks
    region = np.zeros((H, W), bool)
    region[1:7, 1:7] = True
    return {
        "normal": normal,
        "train": train,
        "images": images.astype(np.float32),
        "masks": masks,
        "region": region,
        "maps": rng.random((6, H, W)) + 2.0 * masks,  # non-negative, no ties
    }


def test_pixel_flipping_equals_deletion_curve(data):
    det = RegionDetector(data["normal"], data["region"])
    steps = 16
    got = run_quantus(
        quantus.PixelFlipping,
        det,
        data["images"],
        data["maps"],
        reference=data["train"],
        metric_kwargs={"features_in_step": H * W // steps},
    )
    curve = deletion_curve(
        det, data["images"], data["maps"], substrate="normal", reference=data["train"], steps=steps
    )
    assert got.shape == (6, steps)
    np.testing.assert_allclose(got, curve.scores[:, 1:], rtol=1e-5, atol=1e-5)
    assert np.ptp(got[0]) > 0.1  # softmax off: not flat


def test_region_perturbation_normal_substrate(data):
    det = RegionDetector(data["normal"], data["region"])
    p, n_patches = 4, (H // 4) * (W // 4)
    got = run_quantus(
        quantus.RegionPerturbation(patch_size=p, regions_evaluation=n_patches, order="morf"),
        det,
        data["images"],
        data["maps"],
        reference=data["train"],
    )
    curve = deletion_curve(
        det,
        data["images"],
        data["maps"],
        substrate="normal",
        reference=data["train"],
        steps=n_patches,
        patch_size=p,
    )
    drops = curve.scores[:, :1] - curve.scores[:, 1:]
    np.testing.assert_allclose(got, drops, rtol=1e-5, atol=1e-5)


def test_softmax_default_gives_flat_curves(data):
    det = RegionDetector(data["normal"], data["region"])
    kw = {"features_in_step": 4, "normalise": False, "disable_warnings": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = quantus.PixelFlipping(**kw)(
            model=wrap_detector(det),
            x_batch=data["images"],
            y_batch=np.zeros(6, int),
            a_batch=data["maps"][:, None],
            device="cpu",
        )
    assert np.ptp(np.asarray(raw)) == 0.0  # Quantus' softmax=True on one logit
    ours = run_quantus(
        "PixelFlipping",
        det,
        data["images"],
        data["maps"],
        features_in_step=4,
        reference=data["train"],
    )
    assert np.ptp(ours, axis=1).min() > 0.0
    flat = run_quantus(
        "PixelFlipping",
        det,
        data["images"],
        data["maps"],
        features_in_step=4,
        reference=data["train"],
        softmax=True,
    )
    assert np.ptp(flat) == 0.0


def test_no_reference_warns_quantus_baseline(data):
    det = RegionDetector(data["normal"], data["region"])
    with pytest.warns(SubstrateWarning, match="creates new anomalies"):
        run_quantus("PixelFlipping", det, data["images"], data["maps"], features_in_step=16)


def test_pointing_game_empty_masks_are_nan(data):
    det = RegionDetector(data["normal"], data["region"])
    got = run_quantus(quantus.PointingGame, det, data["images"], data["maps"], masks=data["masks"])
    assert np.isnan(got[4:]).all()
    np.testing.assert_array_equal(got[:4], 1.0)
    raw = quantus.PointingGame(normalise=False, disable_warnings=True)(
        model=None,
        x_batch=data["images"],
        y_batch=np.zeros(6, int),
        a_batch=data["maps"][:, None],
        s_batch=data["masks"][:, None].astype(float),
    )
    assert [bool(v) for v in raw[4:]] == [True, True]  # Quantus: empty mask = hit


def test_relevance_mass_equals_xeval(data):
    det = RegionDetector(data["normal"], data["region"])
    got = run_quantus(
        "RelevanceMassAccuracy", det, data["images"], data["maps"], masks=data["masks"]
    )
    np.testing.assert_allclose(
        got, relevance_mass_per_image(data["masks"], data["maps"]), rtol=1e-6
    )


def test_max_sensitivity_with_xeval_saliency(data):
    rng = np.random.default_rng(1)
    w = rng.normal(size=(1, H, W))

    class Linear(RegionDetector):
        def torch_score(self):
            wt = torch.from_numpy(w)
            return lambda x: (x.double() * wt).sum(dim=(1, 2, 3))

    lin = Linear(data["normal"], data["region"])
    kw = {"metric_kwargs": {"nr_samples": 3}, "explain_method": "saliency"}
    zero = run_quantus(quantus.MaxSensitivity, lin, data["images"], None, **kw)
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)  # linear: constant gradient

    class Quadratic(RegionDetector):  # gradient 2 (x - normal): changes with the noise
        def torch_score(self):
            normal = torch.from_numpy(self.normal)
            return lambda x: ((x.double() - normal) ** 2).sum(dim=(1, 2, 3))

    det = Quadratic(data["normal"], data["region"])
    sens = run_quantus(quantus.MaxSensitivity, det, data["images"], None, **kw)
    assert sens.shape == (6,) and np.all(np.isfinite(sens)) and sens.max() > 0
    again = run_quantus(quantus.MaxSensitivity, det, data["images"], None, **kw)
    np.testing.assert_array_equal(sens, again)  # seeded
    with pytest.raises(InputError, match="explain_method"):
        run_quantus(quantus.MaxSensitivity, det, data["images"], data["maps"])


def test_gradient_metrics_refused_on_black_box(data):
    bb = RegionDetector(data["normal"], data["region"], black_box=True)
    assert not wrap_detector(bb).differentiable
    with pytest.raises(InputError, match="needs gradients"):
        run_quantus("MaxSensitivity", bb, data["images"], data["maps"], explain_method="saliency")
    with pytest.raises(InputError, match="black box"):
        run_quantus("MPRT", bb, data["images"], data["maps"], explain_method="occlusion")
    # perturbation metrics need only scores: the black box works
    got = run_quantus(
        "PixelFlipping",
        bb,
        data["images"],
        data["maps"],
        features_in_step=4,
        reference=data["train"],
    )
    det = RegionDetector(data["normal"], data["region"])
    ref = run_quantus(
        "PixelFlipping",
        det,
        data["images"],
        data["maps"],
        features_in_step=4,
        reference=data["train"],
    )
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "why"),
    [("ROAD", "argmax"), ("Consistency", "argmax"), ("Monotonicity", "never changes")],
)
def test_refused_metrics(data, name, why):
    det = RegionDetector(data["normal"], data["region"])
    with pytest.raises(InputError, match=why):
        run_quantus(name, det, data["images"], data["maps"], explain_method="saliency")


def test_quantus_monotonicity_is_always_true(data):
    """Why Monotonicity is refused: in 0.6.0 it is True even for a reversed map."""
    det = ConvDetector(data["normal"])
    m = quantus.Monotonicity(features_in_step=4, normalise=False, disable_warnings=True)
    for a in (data["maps"], -data["maps"] + 10.0):
        raw = m(
            model=wrap_detector(det),
            x_batch=data["images"],
            y_batch=np.zeros(6, int),
            a_batch=a[:, None],
            softmax=False,
            device="cpu",
        )
        assert all(bool(v) for v in raw)


def test_per_sample_normalisation_vs_quantus_batch(data):
    det = RegionDetector(data["normal"], data["region"])
    x = np.repeat(data["images"][:1], 2, axis=0)
    a = np.stack([data["maps"][0], 100.0 * data["maps"][0]])  # same map, scales 1 and 100
    kw = {"metric_kwargs": {"perturb_patch_sizes": [4], "n_perturb_samples": 1}}
    kw["reference"] = data["train"]
    per = run_quantus(quantus.Infidelity, det, x, a, normalise="per_sample", **kw)
    np.testing.assert_allclose(per[0], per[1], rtol=1e-6)  # scale-free per image
    batch = run_quantus(quantus.Infidelity, det, x, a, normalise=True, **kw)
    assert not np.isclose(batch[0], batch[1], rtol=1e-3)  # image 0 depends on image 1
    np.testing.assert_allclose(batch[1], per[1], rtol=1e-6)  # the batch max is image 1's


def test_mprt_randomisation_reaches_closure_score(data):
    det = ConvDetector(data["normal"])
    before = [p.detach().clone() for p in det.net.parameters()]
    got = run_quantus(
        quantus.MPRT,
        det,
        data["images"][:3],
        None,
        explain_method="saliency",
        metric_kwargs={"return_last_correlation": True},
    )
    assert got.shape == (3,) and np.all(got < 0.99)
    for p, q in zip(before, det.net.parameters(), strict=True):
        assert torch.equal(p, q)  # the detector itself is untouched
    layers = run_quantus(quantus.MPRT, det, data["images"][:3], None, explain_method="saliency")
    assert layers.shape == (3, 3)  # original + 2 conv layers
    np.testing.assert_allclose(layers[:, 0], 1.0, atol=1e-6)  # same explanation
    with pytest.raises(InputError, match="does not change"):
        run_quantus(
            "MPRT",
            ConvDetector(data["normal"], expose_module=False),
            data["images"][:3],
            None,
            explain_method="saliency",
        )


def test_wrapper_shape_and_errors(data):
    det = RegionDetector(data["normal"], data["region"])
    m = wrap_detector(det)
    assert isinstance(m, ScoreAsLogit) and not m.training
    out = m(torch.from_numpy(data["images"]))
    assert tuple(out.shape) == (6, 1)
    np.testing.assert_allclose(out[:, 0].detach().numpy(), det.score(data["images"]), rtol=1e-6)
    with pytest.raises(InputError, match="accepts no argument"):
        run_quantus("PixelFlipping", det, data["images"], data["maps"], bogus=1)
    with pytest.raises(InputError, match="masks"):
        run_quantus("PointingGame", det, data["images"], data["maps"])
    with pytest.raises(InputError, match="per-image"):
        run_quantus(
            "PointingGame",
            det,
            data["images"],
            data["maps"],
            masks=data["masks"],
            return_aggregate=True,
        )
