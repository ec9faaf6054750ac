"""The top-level API: `xeval.wrap` and `xeval.explain` on a plain torch module."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import xeval


def test_wrap_and_explain_a_torch_autoencoder():
    torch.manual_seed(0)
    ae = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))
    det = xeval.wrap(ae)
    x = np.random.default_rng(0).random((2, 3, 16, 16)).astype(np.float32)
    scores, maps = det.predict(x)
    assert scores.shape == (2,) and maps.shape == (2, 16, 16)
    sal = xeval.explain(det, x, "saliency")
    assert sal.shape == (2, 16, 16) and np.isfinite(sal).all()
    ig = xeval.explain(det, x, "integrated_gradients", reference=x[:1] * 0 + 0.5, n_steps=8)
    assert ig.shape == (2, 16, 16)
