"""Label-free example importance (Crabbé & van der Schaar, ICML 2022, "Label-Free
Explainability for Unsupervised Models", §2.2).

An unsupervised model has no label loss to differentiate; its representation
``f_e`` (the encoder) is trained through a pretext task (here: the detector's own
training loss, by default its anomaly score, e.g. an autoencoder's reconstruction
error). Loss-based label-free importance applies an example-importance method to the
pretext loss with the gradients **restricted to the encoder's parameters** ``θ_e`` —
the parameters the representation depends on — so that the importance is that of
training images for the representation, not for the task head (decoder)::

    influence function:  I[i, j] = (1/(n-1)) ∇_{θ_e} s_iᵀ H_{θ_e}⁻¹ (∇_{θ_e} ℓ_j - ḡ_e)
    TracIn:              I[i, j] = Σ_k η_k ∇_{θ_e} s(x_i; θ_k) · ∇_{θ_e} ℓ(x_j; θ_k)

with ``H_{θ_e}`` the Hessian of the training objective with respect to ``θ_e`` (the
decoder fixed). Sign and self-influence as everywhere in :mod:`xeval.influence`:
positive = the training image makes the test image look normal; high self-influence =
suspicious. The encoder's parameters are found by differentiating ``detector.encoder()``
on one training image: every parameter the code depends on. (The
representation-based label-free methods of the paper, similarity and nearest
neighbours in the latent space, are ``representation`` and ``knn``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xeval.adapters.base import find_torch_module
from xeval.errors import InputError
from xeval.influence.base import InfluenceMethod, Problem
from xeval.influence.gradients import _Call
from xeval.influence.registry import INFLUENCE_METHODS
from xeval.influence.similarity import _encoder

__all__ = ["LabelFree", "encoder_parameters"]

BASES = ("influence_function", "tracin", "grad_dot", "grad_cos")


def encoder_parameters(detector: object, probe: np.ndarray) -> list[str]:
    """Names (in ``detector.torch_module()``) of the parameters that
    ``detector.encoder()`` depends on, found by differentiating the code of ``probe``
    ``(1, C, H, W)`` with respect to every parameter."""
    enc = _encoder(detector)
    module = find_torch_module(detector)
    if enc is None or module is None:
        raise InputError("label_free needs a detector with an encoder() and a torch_module()")
    named = dict(module.named_parameters())
    leaves = {f"module.{n}": p.detach().clone().requires_grad_(True) for n, p in named.items()}
    wrapper = _Call(module, lambda _m, x: enc(x))
    with torch.enable_grad():
        out = torch.func.functional_call(wrapper, leaves, (torch.from_numpy(probe),), strict=False)
        grads = torch.autograd.grad(out.double().sum(), list(leaves.values()), allow_unused=True)
    names = [n for n, g in zip(named, grads, strict=True) if g is not None]
    if not names:
        raise InputError(
            "label_free: the encoder's output depends on none of the module's parameters "
            "(is encoder() built on torch_module()?)"
        )
    return names


@INFLUENCE_METHODS.register
class LabelFree(InfluenceMethod):
    """A loss-based method restricted to the encoder's parameters (module docstring).

    Parameters
    ----------
    base:
        ``"influence_function"`` (default), ``"tracin"``, ``"grad_dot"`` or
        ``"grad_cos"``.
    seed:
        The base method's seed.
    **params:
        The base method's options (``solver``, ``damping``, ``checkpoints``,
        ``projection_dim``, ``batch_size``...) except ``layers`` (the encoder decides).
    """

    name = "label_free"
    needs = "an encoder() hook over a torch module with parameters"

    def __init__(self, *, base: str = "influence_function", seed: int = 0, **params: Any) -> None:
        from xeval.registry import check_options

        if base not in BASES:
            raise InputError(f"label_free base must be one of {list(BASES)}, got {base!r}")
        if "layers" in params:
            raise InputError("label_free sets layers to the encoder's parameters: drop 'layers'")
        cls = INFLUENCE_METHODS.get(base)
        params = {**params, "seed": seed}
        check_options(cls, params, where=f"label_free base {base!r}")
        self.base_name = base
        self.params = dict(params)
        self.base = cls(**params)  # validates the values; rebuilt with layers at run time

    def unavailable(self, detector: object) -> str | None:
        if _encoder(detector) is None:
            return (
                "an encoder() hook (label-free importance attributes the representation; "
                "Crabbé & van der Schaar 2022)"
            )
        return self.base.unavailable(detector)

    def _method(self, problem: Problem) -> InfluenceMethod:
        layers = encoder_parameters(problem.detector, problem.train[:1])
        return INFLUENCE_METHODS.get(self.base_name)(layers=layers, **self.params)

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        return self._method(problem).influence(problem, test)

    def self_influence(self, problem: Problem) -> np.ndarray:
        return self._method(problem).self_influence(problem)
