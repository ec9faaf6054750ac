"""What every example-importance method shares: the problem (a detector, its training
images, the training loss and its l2 term), the differentiable model behind the
detector, a base class, and the helpers that compute gradient similarity matrices.

Sign convention (every method): ``I[i, j] > 0`` means training image ``j`` makes test
image ``i`` look **normal** (removing ``j`` from training would raise ``i``'s anomaly
score). Self-influence ``I[j, j] > 0`` means ``j`` supports its own low score
("self-supporting", memorised): the **high** end of the self-influence ranking is the
suspicious one (candidate anomalies planted in the training set).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import find_torch_module
from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.influence.gradients import (
    PROJECTIONS,
    DifferentiableModel,
    RandomProjection,
    per_example_grads,
    stack_grads,
)

__all__ = ["InfluenceMethod", "Problem", "GradientMethod", "check_layers"]


@dataclass
class Problem:
    """An influence question: ``detector`` trained on ``train`` (checked
    ``(N, C, H, W)`` float32) with per-example training loss ``loss(module, x) ->
    (B,)`` (None: the detector's own score) and objective
    ``mean_j loss(x_j; θ) + (l2 / 2) ||θ||²``."""

    detector: object
    train: np.ndarray
    loss: Callable | None = None
    l2: float = 0.0
    _models: dict = field(default_factory=dict, repr=False)

    @property
    def n_train(self) -> int:
        return int(len(self.train))

    def model(self, layers: Sequence[str] | None = None) -> DifferentiableModel:
        """The detector's differentiable model over the parameters under ``layers``
        (cached per selection). Raises InputError saying what is missing."""
        key = None if layers is None else tuple(layers)
        if key not in self._models:
            self._models[key] = resolve_model(self.detector, loss=self.loss, layers=key)
        return self._models[key]


# -------------------------------------------------------------------- the model
def _detector_name(detector: object) -> str:
    return str(getattr(detector, "name", type(detector).__name__))


def gradient_unavailable(detector: object) -> str | None:
    """Why gradients of ``detector``'s score with respect to its parameters cannot be
    taken, or None when they can."""
    hook = getattr(detector, "torch_score", None)
    try:
        score = hook() if callable(hook) else None
    except Exception as exc:  # noqa: BLE001 - e.g. not fitted: say so
        return f"a differentiable score (torch_score() failed: {exc})"
    if not callable(score):
        return "a differentiable score (detector.torch_score() is None: not differentiable)"
    module = find_torch_module(detector)
    if module is None or not any(True for _ in module.parameters()):
        return (
            "learned torch parameters (detector.torch_module() has none: the detector's "
            "learned part is not a torch module, e.g. a memory bank)"
        )
    return None


def check_layers(module: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """Names of the parameters of ``module`` under the prefixes ``layers`` (all when
    None)."""
    names = [n for n, _ in module.named_parameters()]
    if layers is None:
        return names
    if isinstance(layers, str) or not all(isinstance(s, str) for s in layers):
        raise InputError(f"layers must be a list of module or parameter names, got {layers!r}")
    out: list[str] = []
    for prefix in layers:
        hit = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hit:
            tops = sorted({n.rsplit(".", 1)[0] for n in names})
            raise InputError(
                f"layers: {prefix!r} names no parameter of the detector's module; "
                f"modules with parameters: {tops}"
            )
        out += [n for n in hit if n not in out]
    return out


def resolve_model(
    detector: object, *, loss: Callable | None, layers: Sequence[str] | None
) -> DifferentiableModel:
    """The :class:`DifferentiableModel` of ``detector``.

    Parameters: those of ``detector.torch_module()`` under ``layers`` that require
    grad; when none does (the built-in detectors freeze their module after fitting),
    all of them. The score is ``detector.torch_score()``; the loss ``loss(module, x)``
    or, by default, that score.
    """
    reason = gradient_unavailable(detector)
    if reason is not None:
        raise InputError(f"detector {_detector_name(detector)!r} has no {reason}")
    if loss is not None and not callable(loss):
        raise InputError(f"loss must be callable loss(module, x) -> (B,), got {loss!r}")
    module = find_torch_module(detector)
    assert module is not None
    named = dict(module.named_parameters())
    selected = check_layers(module, layers)
    trainable = [n for n in selected if named[n].requires_grad]
    names = tuple(trainable or selected)
    score = detector.torch_score()

    def score_fn(_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return score(x)

    device = named[names[0]].device
    return DifferentiableModel(
        module=module,
        names=names,
        score=score_fn,
        loss=loss if loss is not None else score_fn,
        device=device,
    )


# ------------------------------------------------------------------ base class
def check_common(*, batch_size: object, seed: object, projection_dim: object) -> None:
    check_positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"seed must be an integer, got {seed!r}")
    if projection_dim is not None:
        check_positive_int(projection_dim, "projection_dim")


class InfluenceMethod(ABC):
    """An example-importance method (see :mod:`xeval.influence`).

    Subclasses set ``name`` and ``needs`` (a phrase: what the detector must offer),
    take their options as keyword-only constructor arguments, and implement
    :meth:`influence` and :meth:`self_influence`. :meth:`unavailable` says why the
    method cannot run on a detector (None when it can).
    """

    name: str = ""
    needs: str = ""

    def unavailable(self, detector: object) -> str | None:
        return None

    @abstractmethod
    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        """``(n_test, n_train)`` float64 matrix (sign: see the module docstring)."""

    @abstractmethod
    def self_influence(self, problem: Problem) -> np.ndarray:
        """``(n_train,)`` float64 (high = suspicious)."""


class GradientMethod(InfluenceMethod):
    """Base of the methods built on per-example parameter gradients.

    Options shared by all of them: ``layers`` (parameter name prefixes; default all
    the parameters of the module), ``projection_dim`` (None: exact gradients;
    an int: a seeded random projection of every gradient to that many numbers,
    bounding memory at ``(n_test + batch_size) x projection_dim``), ``projection``
    (``"gaussian"``: a dense Gaussian matrix, :class:`RandomProjection`, the
    Johnson–Lindenstrauss projection of TracIn's paper; ``"count_sketch"``:
    :class:`CountSketch`, ``O(n_params)`` memory and time, for large models),
    ``batch_size`` (images per vectorised gradient chunk), ``seed``.
    """

    needs = "differentiable torch parameters (torch_score() and torch_module())"

    def __init__(
        self,
        *,
        layers: list[str] | None = None,
        projection_dim: int | None = None,
        projection: str = "gaussian",
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        check_common(batch_size=batch_size, seed=seed, projection_dim=projection_dim)
        if projection not in PROJECTIONS:
            raise InputError(f"projection must be one of {sorted(PROJECTIONS)}, got {projection!r}")
        self.projection = projection
        self.layers = None if layers is None else list(layers)
        self.projection_dim = None if projection_dim is None else int(projection_dim)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def unavailable(self, detector: object) -> str | None:
        return gradient_unavailable(detector)

    def projector(self, model: DifferentiableModel) -> RandomProjection | None:
        if self.projection_dim is None:
            return None
        cls = PROJECTIONS[self.projection]
        return cls(model.n_params, self.projection_dim, seed=self.seed)

    # ------------------------------------------------------------------ helpers
    def test_grads(self, model, params, images, projector) -> torch.Tensor:
        """``(n, D)`` float64 gradients of the score on ``images``."""
        return (
            stack_grads(
                model.bound("score"),
                params,
                images,
                batch_size=self.batch_size,
                device=model.device,
                transform=projector,
            )
            .double()
            .cpu()
        )

    def train_grads(self, model, params, images, projector):
        """Chunks ``(rows, (B, D) float64)`` of gradients of the training loss."""
        for rows, g in per_example_grads(
            model.bound("loss"),
            params,
            images,
            batch_size=self.batch_size,
            device=model.device,
            transform=projector,
        ):
            yield rows, g.double().cpu()


def grad_similarity(
    method: GradientMethod,
    model: DifferentiableModel,
    params: dict,
    train: np.ndarray,
    test: np.ndarray,
    *,
    cosine: bool = False,
    projector: RandomProjection | None = None,
) -> torch.Tensor:
    """``S[i, j] = <∇s(test_i), ∇ℓ(train_j)>`` (or their cosine) at ``params``;
    the test gradients are held, the training ones streamed in chunks."""
    t = method.test_grads(model, params, test, projector)
    if cosine:
        t = _unit(t, "test image")
    out = torch.empty(len(test), len(train), dtype=torch.float64)
    for rows, g in method.train_grads(model, params, train, projector):
        out[:, rows] = t @ (_unit(g, "training image", offset=rows.start) if cosine else g).T
    return out


def grad_self_dot(
    method: GradientMethod,
    model: DifferentiableModel,
    params: dict,
    train: np.ndarray,
    *,
    projector: RandomProjection | None = None,
) -> torch.Tensor:
    """``<∇s(train_j), ∇ℓ(train_j)>`` for every training image (``||∇ℓ_j||²`` when the
    loss is the score)."""
    out = torch.empty(len(train), dtype=torch.float64)
    same = model.loss is model.score
    for rows, g in method.train_grads(model, params, train, projector):
        s = g if same else method.test_grads(model, params, train[rows], projector)
        out[rows] = (s * g).sum(dim=1)
    return out


def _unit(g: torch.Tensor, what: str, *, offset: int = 0) -> torch.Tensor:
    norm = g.norm(dim=1, keepdim=True)
    if bool((norm == 0).any()):
        i = int(torch.nonzero(norm[:, 0] == 0)[0]) + offset
        raise InputError(
            f"grad_cos: the gradient of {what} {i} is zero (a cosine is undefined); "
            "use grad_dot, or check that the score depends on the parameters"
        )
    return g / norm
