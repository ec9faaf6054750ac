"""Toy detectors for the attribution tests (own module: tests/ has no __init__.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector


class LinearDetector(Detector):
    """score = sum(w * x) with ``w`` zero outside a known region; map = sum_c w * x."""

    name = "linear_toy"

    def __init__(self, w: np.ndarray) -> None:
        self.w = np.asarray(w, dtype=np.float32)
        self.input_size = tuple(self.w.shape[1:])
        self._wt = torch.from_numpy(self.w)

    def fit(self, batches):
        return self

    def predict(self, images):
        x = np.asarray(images, dtype=np.float32)
        m = (self.w[None] * x).sum(axis=1)
        return m.reshape(len(x), -1).sum(axis=1).astype(np.float32), m.astype(np.float32)

    def torch_score(self):
        def score(x: torch.Tensor) -> torch.Tensor:
            return (x * self._wt.to(x.device, x.dtype)).flatten(1).sum(dim=1)

        return score


class _TinyAE(nn.Module):
    """Conv autoencoder-like net; every non-linearity its own nn.ReLU module."""

    def __init__(self, c: int = 3, width: int = 4, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.enc = nn.Conv2d(c, width, 3, padding=1, stride=2)
        self.act = nn.ReLU()
        self.dec = nn.ConvTranspose2d(width, c, 4, padding=1, stride=2)
        self.pos = nn.ReLU()
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            p.requires_grad_(False)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.enc(x))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        r = x - self.dec(self.code(x))
        # |r| = 2 relu(r) - r. The clone matters: captum's DeepLIFT rescales the whole
        # gradient of the ReLU's *input tensor*, so that tensor must not be used
        # elsewhere (here also linearly as "- r"), or summation-to-delta breaks.
        return (2 * self.pos(r.clone()) - r).mean(dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.error(x).flatten(1).mean(dim=1)


class TinyAEDetector(Detector):
    """score = mean |x - AE(x)| (piecewise linear: DeepLIFT is exact on it)."""

    name = "tiny_ae"
    differentiable = True

    def __init__(self, size: int = 16, seed: int = 0) -> None:
        self.input_size = (size, size)
        self.model = _TinyAE(seed=seed)

    def fit(self, batches):
        return self

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.score(x)

    def predict(self, images):
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(images, dtype=np.float32))
            m = self.model.error(x)
            return m.flatten(1).mean(1).numpy(), m.numpy()

    def torch_score(self):
        return self._score

    def torch_module(self):
        return self.model

    def encoder(self):
        return self.model.code


class BlackBox(LinearDetector):
    """Same scores as LinearDetector, numpy only (no torch_score)."""

    name = "black_box"

    def torch_score(self):
        return None


class WrongShape(LinearDetector):
    name = "wrong_shape"

    def torch_score(self):
        return lambda x: torch.stack([x.flatten(1).sum(1)] * 2, dim=1)


class NaNScore(LinearDetector):
    name = "nan_score"

    def torch_score(self):
        return lambda x: x.flatten(1).sum(1) * float("nan")


class Detached(LinearDetector):
    name = "detached"

    def torch_score(self):
        return lambda x: x.detach().flatten(1).sum(1)


class ThroughNumpy(LinearDetector):
    name = "through_numpy"

    def torch_score(self):
        return lambda x: torch.from_numpy(self.score(x.detach().numpy()))


def images(b: int = 3, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (b, c, h, w)).astype(np.float32)


def region_weights(c: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> np.ndarray:
    """Random weights inside rows/cols 4..11, zero elsewhere."""
    wt = np.zeros((c, h, w), dtype=np.float32)
    wt[:, 4:12, 4:12] = np.random.default_rng(seed).normal(size=(c, 8, 8))
    return wt
