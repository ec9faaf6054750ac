"""TracIn-CP (Pruthi et al., NeurIPS 2020, "Estimating training data influence by
tracing gradient descent"), on a detector's score and training loss.

    I[i, j] = Σ_k η_k ∇θ s(x_i; θ_k) · ∇θ ℓ(x_j; θ_k)

over saved checkpoints ``θ_k`` with the learning rate ``η_k`` of the steps that led to
them. A gradient step on ``x_j`` at ``θ_k`` changes ``s(x_i)`` by about
``-η_k ∇s_i·∇ℓ_j``, so **positive = training image j made test image i look normal**
(its removal, tracing training back, would leave ``s_i`` higher). Self-influence
``Σ_k η_k ∇s_j·∇ℓ_j`` (``Σ_k η_k ||∇ℓ_j||²`` with the default loss): high = the
image kept pulling the parameters towards itself, **high = suspicious** (Pruthi et al.
§4.1 use it to find mislabelled examples).

Checkpoints come from the ``checkpoints=`` option (a list of
:class:`~xeval.adapters._torch.Checkpoint`, of paths written by
:func:`~xeval.adapters._torch.save_checkpoint`, or of ``(state_dict, lr)`` pairs) or,
by default, from the detector's ``checkpoints_`` attribute (the built-in
:class:`~xeval.adapters.ConvAutoencoder` fills it when trained with
``checkpoints=...``). With Adam, ``η_k`` is the base learning rate (TracIn's SGD
derivation is then an approximation, as in the paper's experiments).
``projection_dim`` projects every gradient with one seeded random projection (the
"TracIn-CP with random projections" of the paper, §3.2; ``projection="count_sketch"``
for large models) to bound memory.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from xeval.adapters._torch import Checkpoint, load_checkpoint
from xeval.errors import InputError
from xeval.influence.base import GradientMethod, Problem, grad_self_dot, grad_similarity
from xeval.influence.registry import INFLUENCE_METHODS

__all__ = ["TracIn", "resolve_checkpoints"]


def resolve_checkpoints(checkpoints: Any, detector: object) -> list[Checkpoint]:
    """The checkpoints to sum over: ``checkpoints`` (list of Checkpoint, file paths or
    ``(state, lr)`` pairs) or, when None, the detector's ``checkpoints_``."""
    source = "checkpoints"
    if checkpoints is None:
        checkpoints = getattr(detector, "checkpoints_", None)
        source = "detector.checkpoints_"
    if not checkpoints:
        return []
    if isinstance(checkpoints, (str, os.PathLike, Checkpoint)) or not isinstance(
        checkpoints, (list, tuple)
    ):
        raise InputError(
            f"{source} must be a list of checkpoints (Checkpoint, file path or "
            f"(state_dict, lr) pair), got {type(checkpoints).__name__}"
        )
    out = []
    for k, c in enumerate(checkpoints):
        if isinstance(c, Checkpoint):
            out.append(c)
        elif isinstance(c, (str, os.PathLike)):
            out.append(load_checkpoint(c))
        elif (
            isinstance(c, (tuple, list))
            and len(c) == 2
            and isinstance(c[0], Mapping)
            and isinstance(c[1], numbers.Real)
            and not isinstance(c[1], bool)
        ):
            out.append(Checkpoint(epoch=k + 1, lr=float(c[1]), state=dict(c[0])))
        else:
            raise InputError(
                f"{source}[{k}] must be a Checkpoint, a file path or a (state_dict, lr) "
                f"pair, got {type(c).__name__}"
            )
        if not np.isfinite(out[-1].lr) or out[-1].lr <= 0:
            raise InputError(f"{source}[{k}]: the learning rate must be > 0, got {out[-1].lr!r}")
    return out


@INFLUENCE_METHODS.register
class TracIn(GradientMethod):
    """TracIn-CP: ``Σ_k η_k ∇s(x_i; θ_k) · ∇ℓ(x_j; θ_k)`` over checkpoints.

    Parameters
    ----------
    checkpoints:
        Checkpoints (see the module docstring); None: ``detector.checkpoints_``.
    layers, projection_dim, projection, batch_size, seed:
        See :class:`~xeval.influence.base.GradientMethod`.
    """

    name = "tracin"
    needs = "checkpoints saved during training (train the detector with checkpoints=...)"

    def __init__(
        self,
        *,
        checkpoints: Any = None,
        layers: list[str] | None = None,
        projection_dim: int | None = None,
        projection: str = "gaussian",
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(
            layers=layers,
            projection_dim=projection_dim,
            projection=projection,
            batch_size=batch_size,
            seed=seed,
        )
        self.checkpoints = checkpoints

    def unavailable(self, detector: object) -> str | None:
        reason = super().unavailable(detector)
        if reason is not None:
            return reason
        if not resolve_checkpoints(self.checkpoints, detector):
            return (
                "checkpoints saved during training (none given and the detector has no "
                "checkpoints_; train a built-in detector with checkpoints=k, or pass "
                "checkpoints=[...])"
            )
        return None

    def _each(self, problem: Problem):
        model = problem.model(self.layers)
        proj = self.projector(model)
        for k, ck in enumerate(resolve_checkpoints(self.checkpoints, problem.detector)):
            params = model.select(ck.load(), where=f"checkpoint {k} (epoch {ck.epoch})")
            yield model, params, ck.lr, proj

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        total = torch.zeros(len(test), problem.n_train, dtype=torch.float64)
        for model, params, lr, proj in self._each(problem):
            total += lr * grad_similarity(self, model, params, problem.train, test, projector=proj)
        return total.numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        total = torch.zeros(problem.n_train, dtype=torch.float64)
        for model, params, lr, proj in self._each(problem):
            total += lr * grad_self_dot(self, model, params, problem.train, projector=proj)
        return total.numpy()
