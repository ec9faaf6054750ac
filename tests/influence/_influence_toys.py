"""Tiny detectors for the example-importance tests (closed-form leave-one-out, a small
network), built as :class:`~xeval.adapters.Detector` subclasses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xeval.adapters.base import Detector


class _Centre(nn.Module):
    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.centre = nn.Parameter(torch.zeros(len(weights), dtype=torch.float64))
        self.register_buffer("w", weights.double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * (x.flatten(1).double() - self.centre) ** 2).sum(dim=1)


class CentreDetector(Detector):
    """Score ``s(x; c) = Σ_d w_d (x_d - c_d)²`` with a learned centre ``c``.

    Objective ``mean_j s(x_j; c) + (l2 / 2) ||c||²``; its minimiser (gradient
    ``-2 w (x̄ - c) + l2 c = 0``) is ``c_d = 2 w_d x̄_d / (2 w_d + l2)``, so exact
    leave-one-out retraining is ``c_{-j} = 2 w x̄_{-j} / (2 w + l2)``.
    """

    name = "centre"
    differentiable = True
    has_map = False

    def __init__(self, weights: np.ndarray, *, l2: float = 0.0) -> None:
        self.l2 = float(l2)
        self.module = _Centre(torch.as_tensor(weights))

    @staticmethod
    def solve(images: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
        mean = images.reshape(len(images), -1).astype(np.float64).mean(axis=0)
        return 2 * w * mean / (2 * w + l2)

    def fit(self, batches) -> CentreDetector:
        x = np.concatenate(list(batches)) if not isinstance(batches, np.ndarray) else batches
        w = self.module.w.numpy()
        with torch.no_grad():
            self.module.centre.copy_(torch.from_numpy(self.solve(x, w, self.l2)))
        return self

    def score_with(self, images: np.ndarray, centre: np.ndarray) -> np.ndarray:
        x = images.reshape(len(images), -1).astype(np.float64)
        return ((x - centre) ** 2 * self.module.w.numpy()).sum(axis=1)

    def predict(self, images):
        with torch.no_grad():
            s = self.module(torch.from_numpy(np.asarray(images)))
        return s.float().numpy(), np.zeros((len(images), 0, 0), np.float32)

    def torch_score(self):
        return lambda x: self.module(x)

    def torch_module(self):
        return self.module


class _Net(nn.Module):
    def __init__(self, d: int, hidden: int, code: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, code))
        self.register_buffer("target", torch.full((code,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x.flatten(1))
        return ((z - self.target) ** 2).sum(dim=1)


class NetDetector(Detector):
    """Deep-SVDD-like: ``s(x) = ||f_θ(x) - 0.5||²`` with a tiny tanh MLP ``f_θ``,
    trained by plain SGD (learning rate ``lr``) for ``epochs`` full-batch steps; the
    parameters and learning rate after every ``every`` steps are kept (TracIn)."""

    name = "net"
    differentiable = True
    has_map = False

    def __init__(
        self, d: int, *, hidden: int = 6, code: int = 3, seed: int = 0, lr: float = 0.1
    ) -> None:
        torch.manual_seed(seed)
        self.module = _Net(d, hidden, code).double()
        self.lr = lr
        self.checkpoints_: list = []

    def fit(self, batches, *, epochs: int = 20, every: int = 5, l2: float = 0.0):
        from xeval.adapters._torch import Checkpoint

        x = torch.from_numpy(np.asarray(batches)).double()
        opt = torch.optim.SGD(self.module.parameters(), lr=self.lr)
        for step in range(1, epochs + 1):
            loss = self.module(x).mean()
            loss = loss + 0.5 * l2 * sum((p**2).sum() for p in self.module.parameters())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % every == 0:
                state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
                self.checkpoints_.append(Checkpoint(epoch=step, lr=self.lr, state=state))
        return self

    def predict(self, images):
        with torch.no_grad():
            s = self.module(torch.from_numpy(np.asarray(images)).double())
        return s.float().numpy(), np.zeros((len(images), 0, 0), np.float32)

    def torch_score(self):
        return lambda x: self.module(x.double())

    def torch_module(self):
        return self.module

    def encoder(self):
        return lambda x: self.module.encoder(x.flatten(1).double())


class BlackBox(Detector):
    """Scores from numpy only: no gradients, no features, no map."""

    name = "black_box"
    has_map = False

    def fit(self, batches):
        return self

    def predict(self, images):
        x = np.asarray(images)
        return x.reshape(len(x), -1).mean(axis=1).astype(np.float32), np.zeros(
            (len(x), 0, 0), np.float32
        )


def blobs(n: int, d: int = 4, *, seed: int = 0) -> np.ndarray:
    """``(n, 1, 1, d)`` float32 images: Gaussian points (tiny 'images')."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.5, 0.2, size=(n, 1, 1, d)).astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for the module's tests (restored after): on a loaded 2-core
    machine, two threads make double backward ten times slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
