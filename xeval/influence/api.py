"""``xeval.influence`` and ``xeval.self_influence``: example importance for any detector.

``influence(detector, train, test, method=...)[i, j]`` estimates how test image ``i``'s
anomaly score changes when training image ``j`` is **removed** from training:
**positive = training image j makes test image i look normal** (its removal would raise
the score). The training objective is ``mean_j ℓ(x_j; θ) + (l2 / 2) ||θ||²`` at the
detector's current parameters ``θ``, with ``ℓ(x; θ) = loss(module, x)`` (default: the
detector's own anomaly score on the training image, the one-class objective of
autoencoders, Deep SVDD and centre-distance models).

``self_influence(detector, train, method=...)[j]`` is the diagonal ``I[j, j]``
computed without the full matrix: **high = suspicious** (removing ``j`` would raise its
own score the most: the model fits ``j`` because ``j`` is in the training set), the end
where planted anomalies should rank.

Computations run with torch's thread count set to the detector's ``num_threads`` when
it has one (the built-in detectors' option). Results are deterministic for a given
``seed`` (random projections, Arnoldi's start vector, Hessian subsamples).

The methods (see :data:`~xeval.influence.registry.INFLUENCE_METHODS` and each class
for its definition, options and references): ``influence_function``, ``tracin``,
``grad_dot``, ``grad_cos``, ``representation``, ``knn``, ``label_free``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from xeval.checks import check_images
from xeval.errors import InputError
from xeval.influence.base import InfluenceMethod, Problem
from xeval.influence.registry import INFLUENCE_METHODS
from xeval.registry import check_options

__all__ = ["available_methods", "build_method", "influence", "self_influence"]


def build_method(method: str, **params: Any) -> InfluenceMethod:
    """The registered method ``method`` built with ``params`` (names checked against
    its options; :class:`~xeval.errors.ConfigError` lists the valid ones)."""
    if isinstance(method, InfluenceMethod):
        if params:
            raise InputError(
                f"options {sorted(params)} given with a built method {method.name!r}: "
                "pass the method's name instead"
            )
        return method
    cls = INFLUENCE_METHODS.get(method, where="method")
    check_options(cls, params, where=f"influence method {method!r}")
    return cls(**params)


def available_methods(detector: object) -> list[str]:
    """The registered methods that can run on ``detector`` with their default options."""
    out = []
    for name, cls in INFLUENCE_METHODS.items():
        try:
            if cls().unavailable(detector) is None:
                out.append(name)
        except Exception:  # noqa: BLE001 - a method whose defaults need more is not listed
            continue
    return out


def _problem(detector, train_images, *, loss, l2) -> Problem:
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not math.isfinite(l2) or l2 < 0:
        raise InputError(f"l2 must be a finite number >= 0, got {l2!r}")
    if loss is not None and not callable(loss):
        raise InputError(f"loss must be None or a callable loss(module, x) -> (B,), got {loss!r}")
    train = check_images(train_images, name="train_images")
    return Problem(detector=detector, train=train, loss=loss, l2=float(l2))


@contextlib.contextmanager
def _threads(detector: object) -> Iterator[None]:
    """torch's intra-op thread count set to the detector's ``num_threads`` (the
    built-in detectors' option) for the computation, restored after."""
    n = getattr(detector, "num_threads", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_supported(m: InfluenceMethod, detector: object) -> None:
    reason = m.unavailable(detector)
    if reason is None:
        return
    name = getattr(detector, "name", type(detector).__name__)
    others = [n for n in available_methods(detector) if n != m.name]
    raise InputError(
        f"method {m.name!r} cannot run on detector {name!r}: it needs {reason}. "
        f"Methods that work with this detector: {', '.join(others) or 'none'}"
    )


def influence(
    detector: object,
    train_images: np.ndarray,
    test_images: np.ndarray,
    *,
    method: str,
    loss: Callable | None = None,
    l2: float = 0.0,
    **params: Any,
) -> np.ndarray:
    """Example importance ``(n_test, n_train)`` float64 of ``train_images`` for
    ``test_images``.

    Parameters
    ----------
    detector:
        A fitted :class:`~xeval.adapters.Detector` (trained on ``train_images``).
    train_images, test_images:
        ``(N, C, H, W)`` float images as the detector takes them.
    method:
        A registered method name (:data:`~xeval.influence.registry.INFLUENCE_METHODS`).
    loss:
        ``loss(module, x) -> (B,)``, the per-example training loss; None: the
        detector's anomaly score (``detector.torch_score()``).
    l2:
        The coefficient of ``(l2 / 2) ||θ||²`` in the training objective.
    **params:
        The method's options (``seed``, ``batch_size``, ``projection_dim``...).

    Returns
    -------
    ndarray
        ``I[i, j]``: estimated change of test image ``i``'s score when training image
        ``j`` is removed; positive = ``j`` makes ``i`` look normal.
    """
    m = build_method(method, **params)
    problem = _problem(detector, train_images, loss=loss, l2=l2)
    test = check_images(test_images, name="test_images")
    if test.shape[1:] != problem.train.shape[1:]:
        raise InputError(
            f"test_images have shape {test.shape[1:]} per image, train_images "
            f"{problem.train.shape[1:]}: they must match"
        )
    _check_supported(m, detector)
    with _threads(detector):
        out = np.asarray(m.influence(problem, test), dtype=np.float64)
    assert out.shape == (len(test), problem.n_train), out.shape
    return out


def self_influence(
    detector: object,
    train_images: np.ndarray,
    *,
    method: str,
    loss: Callable | None = None,
    l2: float = 0.0,
    **params: Any,
) -> np.ndarray:
    """Self-influence ``(n_train,)`` float64: the diagonal of :func:`influence` with
    the training images as test images, computed without the full matrix (except for
    ``knn``, whose self-influence is the leave-one-out neighbour distance).

    **High = suspicious**: removing ``j`` would raise its own score the most. Same
    parameters as :func:`influence`.
    """
    m = build_method(method, **params)
    problem = _problem(detector, train_images, loss=loss, l2=l2)
    _check_supported(m, detector)
    with _threads(detector):
        out = np.asarray(m.self_influence(problem), dtype=np.float64)
    assert out.shape == (problem.n_train,), out.shape
    return out
