"""AnomalibDetector on a stand-in with anomalib's structure (fast; no anomalib needed)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from xeval.adapters.anomalib import AnomalibDetector
from xeval.adapters.wrap import infer_kind, wrap
from xeval.errors import InputError


class InferenceBatch(NamedTuple):
    pred_score: torch.Tensor
    anomaly_map: torch.Tensor


class GaussModel(nn.Module):
    """Memory-bank model: train mode collects pixels, fit() stores the mean; no_grad like PaDiM."""

    def __init__(self, grad: bool = False) -> None:
        super().__init__()
        self.register_buffer("memory_bank", torch.empty(0))
        self.embedding_store: list[torch.Tensor] = []
        self.grad = grad

    def forward(self, x):
        if self.training:
            self.embedding_store.append(x.mean(dim=(0, 2, 3)))
            return x
        with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
            m = ((x - self.memory_bank.view(1, -1, 1, 1)) ** 2).sum(dim=1, keepdim=True)
        return InferenceBatch(pred_score=m.flatten(1).amax(dim=1) * 2, anomaly_map=m)


class Pre(nn.Module):
    transform = None

    def forward(self, x):
        return x * 2 - 1


class AnomalibModule(nn.Module):  # the class name is what the adapter recognises
    def __init__(self, grad: bool = False) -> None:
        super().__init__()
        self.model = GaussModel(grad)
        self.pre_processor = Pre()
        self.post_processor = lambda b: b  # never called by the adapter

    def fit(self):
        self.model.memory_bank = torch.stack(self.model.embedding_store).mean(dim=0)
        self.model.embedding_store.clear()


def imgs(n, *, anomalous=False, seed=0):
    rng = np.random.default_rng(seed)
    x = 0.5 + 0.02 * rng.standard_normal((n, 3, 16, 16))
    if anomalous:
        x[:, :, 4:8, 4:8] = 1.0
    return x.astype(np.float32)


def test_raw_scores_maps_fit_and_direction():
    mod = AnomalibModule()
    assert infer_kind(mod) == "anomalib"
    det = wrap(mod, input_size=16, batch_size=3)
    assert isinstance(det, AnomalibDetector)
    det.fit([imgs(5), imgs(4, seed=1)])
    assert mod.model.memory_bank.shape == (3,) and not mod.model.training
    x = np.concatenate([imgs(3, seed=2), imgs(3, anomalous=True, seed=3)])
    s, m = det.predict(x)
    assert s.shape == (6,) and m.shape == (6, 16, 16)
    pre = torch.from_numpy(x) * 2 - 1
    raw = ((pre - mod.model.memory_bank.view(1, -1, 1, 1)) ** 2).sum(dim=1)
    np.testing.assert_allclose(m, raw.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        s, 2 * raw.flatten(1).amax(dim=1).numpy(), rtol=1e-5
    )  # raw pred_score
    assert s[3:].min() > s[:3].max()
    det_max = wrap(mod, input_size=16, score="map_max")
    np.testing.assert_allclose(det_max.score(x), raw.flatten(1).amax(dim=1).numpy(), rtol=1e-5)
    # fit="auto" does not refit a fitted model
    bank = mod.model.memory_bank.clone()
    det.fit([imgs(2, anomalous=True)])
    assert torch.equal(bank, mod.model.memory_bank)
    # no_grad inside the model: no torch_score
    assert det.differentiable is False and det.torch_score() is None


def test_differentiable_model_gets_torch_score():
    mod = AnomalibModule(grad=True)
    det = wrap(mod, input_size=16).fit([imgs(4)])
    fn = det.torch_score()
    assert fn is not None
    xt = torch.from_numpy(imgs(2, anomalous=True)).requires_grad_(True)
    out = fn(xt)
    np.testing.assert_allclose(out.detach().numpy(), det.score(xt.detach().numpy()), rtol=1e-6)
    out.sum().backward()
    assert float(xt.grad.abs().sum()) > 0


def test_errors():
    mod = AnomalibModule()
    det = wrap(mod, input_size=16, name="a")
    with pytest.raises(InputError, match="score must be one of"):
        AnomalibDetector(mod, score="nope")
    with pytest.raises(InputError, match="already normalises"):
        AnomalibDetector(mod, normalize="imagenet")
    mod.model.train()
    with pytest.raises(InputError, match=r"AnomalibDetector 'a'.*InferenceBatch"):
        det._forward(torch.zeros(1, 3, 16, 16))
