"""xeval.wrap on torch modules and black-box callables: shapes, direction, gradients."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters.base import Detector
from xeval.adapters.callable import BlackBoxDetector
from xeval.adapters.torch_module import TorchModuleDetector
from xeval.adapters.wrap import infer_kind, wrap
from xeval.errors import InputError

H = W = 16


def images(n: int, *, anomalous: bool = False, seed: int = 0) -> np.ndarray:
    """Smooth grey images; anomalous ones carry a bright 3x3 square."""
    rng = np.random.default_rng(seed)
    x = 0.5 + 0.02 * rng.standard_normal((n, 3, H, W))
    if anomalous:
        for i in range(n):
            r, c = rng.integers(3, H - 6, size=2)
            x[i, :, r : r + 3, c : c + 3] = 1.0
    return x.astype(np.float32)


class Smoother(nn.Module):
    """An 'autoencoder' that reconstructs the low frequencies: a 5x5 mean filter."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)  # inactive in eval mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False))


class DeviationMap(nn.Module):
    """(B, 1, H, W) map: |x - 0.5| averaged over channels (plus a learnable offset)."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5).abs().mean(dim=1, keepdim=True) + self.offset


class DeviationScore(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - 0.5) ** 2).flatten(1).amax(dim=1)


Out = namedtuple("Out", ["pred_score", "anomaly_map"])


@dataclass
class DOut:
    logit: torch.Tensor
    heat: torch.Tensor


class MultiOut(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.inner = DeviationMap()

    def forward(self, x: torch.Tensor):
        m = self.inner(x)[:, 0]
        s = m.flatten(1).mean(dim=1)
        if self.kind == "dict":
            return {"score": s, "anomaly_map": m}
        if self.kind == "namedtuple":
            return Out(s, m)
        if self.kind == "tuple":
            return (m, s)
        return DOut(logit=s, heat=m)


def direction_ok(det: Detector) -> np.ndarray:
    s_norm = det.score(images(6, seed=1))
    s_anom = det.score(images(6, anomalous=True, seed=2))
    assert s_anom.min() > s_norm.max(), (s_norm, s_anom)
    return s_anom


# -- torch modules ---------------------------------------------------------------------
def test_reconstruction_output_gives_squared_error_map_and_max_score():
    det = wrap(Smoother(), input_size=H, batch_size=4)
    assert isinstance(det, TorchModuleDetector) and det.has_map and det.differentiable
    x = images(7, anomalous=True)
    scores, maps = det.fit([images(4)]).predict(x)
    assert scores.shape == (7,) and maps.shape == (7, H, W)
    assert scores.dtype == np.float32 and maps.dtype == np.float32
    xt = torch.from_numpy(x)
    rec = F.avg_pool2d(xt, 5, stride=1, padding=2, count_include_pad=False)
    expected = ((rec - xt) ** 2).mean(dim=1).numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(scores, expected.reshape(7, -1).max(axis=1), rtol=1e-5)
    direction_ok(det)
    assert not det.module.training  # eval mode: dropout off, deterministic
    np.testing.assert_array_equal(det.score(x), scores)
    mean_det = wrap(Smoother(), input_size=H, reduction="mean")
    np.testing.assert_allclose(mean_det.score(x), expected.reshape(7, -1).mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize("module", [DeviationMap(), Smoother()])
def test_torch_score_is_differentiable_and_equals_predict(module):
    det = wrap(module, input_size=H, batch_size=3)
    x = images(7, anomalous=True)
    fn = det.torch_score()
    xt = torch.from_numpy(x).requires_grad_(True)
    s = fn(xt)
    assert s.shape == (7,) and s.requires_grad
    np.testing.assert_allclose(s.detach().numpy(), det.score(x), rtol=1e-6)
    s.sum().backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0
    assert det.torch_module() is module


def test_map_output_and_score_output():
    det = wrap(DeviationMap(), input_size=H)
    x = images(5, anomalous=True)
    s, m = det.predict(x)
    assert m.shape == (5, H, W)
    np.testing.assert_allclose(m, np.abs(x - 0.5).mean(axis=1), rtol=1e-5, atol=1e-7)
    direction_ok(det)

    sdet = wrap(DeviationScore(), input_size=H)
    assert sdet.has_map is False  # found out by a probe pass
    s, m = sdet.predict(x)
    assert s.shape == (5,) and m.shape == (5, 0, 0)
    direction_ok(sdet)
    with pytest.raises(InputError, match="image scores only.*DeviationScore|TorchModuleDetector"):
        sdet.anomaly_map(x)


@pytest.mark.parametrize(
    ("kind", "how"),
    [
        ("dict", {}),
        ("namedtuple", {}),
        ("tuple", {}),
        ("dataclass", {"score": "logit", "map": "heat"}),
        ("dataclass", {"score_fn": lambda o, x: o.logit, "map_fn": lambda o, x: o.heat}),
    ],
)
def test_structured_outputs(kind, how):
    det = wrap(MultiOut(kind), input_size=H, **how)
    x = images(4, anomalous=True)
    s, m = det.predict(x)
    ref = np.abs(x - 0.5).mean(axis=1)
    np.testing.assert_allclose(m, ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(s, ref.reshape(4, -1).mean(axis=1), rtol=1e-5)
    fn = det.torch_score()
    np.testing.assert_allclose(fn(torch.from_numpy(x)).detach().numpy(), s, rtol=1e-6)


def test_higher_is_anomalous_false_negates():
    x = images(3, anomalous=True)
    a = wrap(DeviationMap(), input_size=H).predict(x)
    b = wrap(DeviationMap(), input_size=H, higher_is_anomalous=False).predict(x)
    np.testing.assert_allclose(b[1], -a[1])
    np.testing.assert_allclose(b[0], (-a[1]).reshape(3, -1).max(axis=1))
    c = wrap(DeviationScore(), input_size=H, higher_is_anomalous=False).score(x)
    np.testing.assert_allclose(c, -wrap(DeviationScore(), input_size=H).score(x))


def test_fit_fn_is_called_and_required():
    seen = []

    def fit_fn(module, batches):
        seen.extend(np.asarray(b).shape for b in batches)
        with torch.no_grad():
            module.offset.fill_(1.0)

    det = wrap(DeviationMap(), input_size=H, fit_fn=fit_fn)
    with pytest.raises(InputError, match="not fitted"):
        det.predict(images(2))
    det.fit(iter([images(3), images(2)]))
    assert seen == [(3, 3, H, W), (2, 3, H, W)]
    assert det.score(images(2)).min() >= 1.0


def test_pretrained_fit_is_noop():
    module = DeviationMap()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    det = wrap(module, input_size=H).fit([images(2)])
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])
    assert det.config()["kind"] == "torch_module"


# -- errors ------------------------------------------------------------------------------
class BadShape(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 5)


class NaNScore(nn.Module):
    def forward(self, x):
        s = x.flatten(1).mean(dim=1)
        s[0] = float("nan")
        return s


def test_wrong_shape_names_adapter_and_shape():
    det = wrap(BadShape(), input_size=H, name="bad")
    with pytest.raises(InputError, match=r"TorchModuleDetector 'bad'.*\(2, 5\)"):
        det.predict(images(2))


def test_nan_scores_are_refused():
    det = wrap(NaNScore(), input_size=H, name="nanny")
    with pytest.raises(InputError, match=r"TorchModuleDetector 'nanny'.*NaN.*\[0\]"):
        det.predict(images(3))


def test_score_fn_returning_wrong_shape():
    det = wrap(DeviationMap(), input_size=H, score_fn=lambda o, x: o.flatten())
    with pytest.raises(InputError, match=r"returned scores of shape \(512,\), expected \(2,\)"):
        det.predict(images(2))


def test_non_differentiable_path_asked_for_gradients():
    det = wrap(
        DeviationMap(), input_size=H, name="det", score_fn=lambda o, x: o.amax((1, 2, 3)).detach()
    )
    fn = det.torch_score()
    with pytest.raises(InputError, match=r"TorchModuleDetector 'det'.*gradients were asked for"):
        fn(torch.from_numpy(images(2)).requires_grad_(True))
    # without a gradient request the value is still available
    assert fn(torch.from_numpy(images(2))).shape == (2,)
    assert wrap(DeviationMap(), input_size=H, differentiable=False).torch_score() is None


def test_bad_images_and_options():
    det = wrap(DeviationMap(), input_size=H, name="d")
    with pytest.raises(InputError, match=r"'d'.*\(B, C, H, W\)"):
        det.predict(np.zeros((3, H, W), np.float32))
    with pytest.raises(InputError, match="floating point"):
        det.predict(np.zeros((1, 3, H, W), np.uint8))
    with pytest.raises(InputError, match="output must be one of"):
        wrap(DeviationMap(), output="nope")
    with (
        pytest.raises(InputError, match="CUDA is not available")
        if not torch.cuda.is_available()
        else _nothing()
    ):
        wrap(DeviationMap(), device="cuda")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_device():
    det = wrap(Smoother(), input_size=H, device="cuda")
    x = images(3, anomalous=True)
    s, m = det.predict(x)
    cpu = wrap(Smoother(), input_size=H).predict(x)
    np.testing.assert_allclose(s, cpu[0], rtol=1e-4, atol=1e-6)
    out = det.torch_score()(torch.from_numpy(x))
    assert out.device.type == "cpu"


# -- black boxes -----------------------------------------------------------------------
def dev_scores(x: np.ndarray) -> np.ndarray:
    return np.abs(x - 0.5).reshape(len(x), -1).max(axis=1)


def dev_maps(x: np.ndarray) -> np.ndarray:
    return np.abs(x - 0.5).mean(axis=1)


@pytest.mark.parametrize(
    ("fn", "has_map"),
    [
        (dev_scores, False),
        (lambda x: (dev_scores(x), dev_maps(x)), True),
        (lambda x: dev_maps(x)[:, None], True),
        (
            lambda x: {
                "score": dev_scores(x).tolist(),
                "anomaly_map": torch.from_numpy(dev_maps(x)),
            },
            True,
        ),
    ],
)
def test_blackbox_outputs(fn, has_map):
    det = wrap(fn, input_size=H, batch_size=4)
    assert isinstance(det, BlackBoxDetector)
    assert det.differentiable is False and det.torch_score() is None
    assert det.has_map is has_map
    x = images(6, anomalous=True)
    s, m = det.fit([images(2)]).predict(x)
    assert s.shape == (6,) and s.dtype == np.float32
    assert m.shape == ((6, H, W) if has_map else (6, 0, 0))
    direction_ok(det)
    with pytest.raises(InputError, match="not differentiable.*perturbation"):
        det.require_torch_score()


def test_blackbox_batches_and_direction_override():
    calls = []

    def fn(x):
        calls.append(len(x))
        return -dev_scores(x)  # a 'normality' score

    det = wrap(fn, input_size=H, batch_size=4, higher_is_anomalous=False, has_map=False)
    x = images(10, anomalous=True)
    np.testing.assert_allclose(det.score(x), dev_scores(x), rtol=1e-6)
    assert calls == [4, 4, 2]
    direction_ok(det)


def test_blackbox_errors():
    det = wrap(lambda x: np.ones(len(x) + 1), input_size=H, name="bb")
    with pytest.raises(InputError, match=r"BlackBoxDetector 'bb'.*shape \(4,\), expected \(3,\)"):
        det.predict(images(3))
    det = wrap(lambda x: np.full(len(x), np.nan), input_size=H, name="bb")
    with pytest.raises(InputError, match=r"BlackBoxDetector 'bb'.*NaN or infinite scores"):
        det.predict(images(2))
    det = wrap(lambda x: (dev_scores(x), dev_maps(x)), input_size=H, has_map=False, name="bb")
    with pytest.raises(InputError, match="has_map=False"):
        det.predict(images(2))
    det = wrap(lambda x: (dev_scores(x), np.ones((len(x), 2))), input_size=H, name="bb")
    with pytest.raises(InputError, match=r"maps of shape \(2, 2\)"):
        det.predict(images(2))
    det = wrap(dev_scores, input_size=H)
    with pytest.raises(InputError, match="image scores only"):
        det.anomaly_map(images(2))


# -- dispatch ----------------------------------------------------------------------------
def test_dispatch():
    det = wrap(DeviationMap(), input_size=H)
    assert wrap(det) is det
    with pytest.raises(InputError, match="already a Detector"):
        wrap(det, input_size=8)
    assert infer_kind(DeviationMap()) == "torch_module"
    assert infer_kind(DeviationMap(), {"method": "energy"}) == "ood_classifier"
    assert infer_kind(dev_scores) == "blackbox"
    assert isinstance(wrap(DeviationMap(), kind="blackbox", input_size=H), BlackBoxDetector)
    with pytest.raises(InputError, match="cannot wrap"):
        wrap(42)
    with pytest.raises(InputError, match="kind must be one of"):
        wrap(dev_scores, kind="nope")
