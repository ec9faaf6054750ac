"""Similarity-based example importance: gradient similarity and feature-space
similarity.

- ``grad_dot``: ``I[i, j] = <∇θ s(x_i), ∇θ ℓ(x_j)>`` at the current parameters (one
  TracIn term without the learning rate, Pruthi et al. 2020; the "gradient dot
  product" of Charpiat et al. 2019). One gradient step on ``x_j`` changes ``s(x_i)``
  by ``-lr * I[i, j]``: positive = ``x_j`` makes ``x_i`` look normal.
  Self-influence: ``<∇s(x_j), ∇ℓ(x_j)>`` (``||∇ℓ(x_j)||²`` with the default loss).
- ``grad_cos``: the cosine of the same two gradients (Barshan et al. 2020's
  normalisation against high-gradient-norm outliers). No self-influence (it is 1).
- ``representation``: similarity of the detector's features ``f`` (the encoder's
  code by default): ``cos(f(x_i), f(x_j))`` or ``<f(x_i), f(x_j)>``; positive = the
  training image is represented alike. Self-influence with ``similarity="dot"``:
  ``||f(x_j)||²``. The top-k lists equal captum's ``SimilarityInfluence`` (tested).
- ``knn``: ``I[i, j] = -||f(x_i) - f(x_j)||₂`` (nearest training images rank first;
  only the order within a row is meaningful). Self-influence: the mean distance of
  ``f(x_j)`` to its ``k`` nearest *other* training images, the leave-one-out score of
  a k-nearest-neighbour detector on the features (how anomalous ``x_j`` looks once
  removed from the memory); high = isolated = suspicious. Works on any detector with
  features: its ``encoder()``, its anomaly map, or the pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.influence.base import (
    GradientMethod,
    InfluenceMethod,
    Problem,
    check_common,
    grad_self_dot,
    grad_similarity,
)
from xeval.influence.registry import INFLUENCE_METHODS

__all__ = ["GradCos", "GradDot", "Knn", "Representation", "feature_matrix"]


# -------------------------------------------------------------------- gradients
@INFLUENCE_METHODS.register
class GradDot(GradientMethod):
    """Gradient dot product ``<∇s(x_i), ∇ℓ(x_j)>`` at the current parameters.

    Parameters
    ----------
    layers, projection_dim, projection, batch_size, seed:
        See :class:`~xeval.influence.base.GradientMethod`.
    """

    name = "grad_dot"

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        model = problem.model(self.layers)
        proj = self.projector(model)
        s = grad_similarity(self, model, model.current(), problem.train, test, projector=proj)
        return s.numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        model = problem.model(self.layers)
        proj = self.projector(model)
        return grad_self_dot(self, model, model.current(), problem.train, projector=proj).numpy()


@INFLUENCE_METHODS.register
class GradCos(GradientMethod):
    """Gradient cosine ``cos(∇s(x_i), ∇ℓ(x_j))`` at the current parameters.

    Parameters
    ----------
    layers, projection_dim, projection, batch_size, seed:
        See :class:`~xeval.influence.base.GradientMethod`.
    """

    name = "grad_cos"

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        model = problem.model(self.layers)
        proj = self.projector(model)
        return grad_similarity(
            self, model, model.current(), problem.train, test, cosine=True, projector=proj
        ).numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        raise InputError(
            "method 'grad_cos' has no self-influence: the cosine of a gradient with "
            "itself is 1 for every image; use grad_dot, tracin, influence_function or knn"
        )


# --------------------------------------------------------------------- features
FEATURES = ("auto", "encoder", "map", "pixels")


def _encoder(detector: object) -> Callable | None:
    hook = getattr(detector, "encoder", None)
    try:
        enc = hook() if callable(hook) else None
    except Exception:  # noqa: BLE001 - e.g. not fitted: no encoder to use
        return None
    return enc if callable(enc) else None


def features_unavailable(detector: object, features: Any) -> str | None:
    if callable(features) or features == "pixels":
        return None
    if features == "encoder" and _encoder(detector) is None:
        return (
            "an encoder (detector.encoder() is None); pass features='map', 'pixels' or a callable"
        )
    if features == "map" and not getattr(detector, "has_map", True):
        return "an anomaly map (the detector gives image scores only)"
    if features == "auto" and _encoder(detector) is None and not getattr(detector, "has_map", True):
        return "features (no encoder() and no anomaly map); pass features='pixels' or a callable"
    return None


def feature_matrix(
    detector: object, images: np.ndarray, *, features: Any, batch_size: int
) -> torch.Tensor:
    """``(N, D)`` float64 features of ``images``.

    ``features``: ``"encoder"`` (``detector.encoder()``, flattened), ``"map"`` (the
    detector's anomaly map, flattened), ``"pixels"`` (the images, flattened), a callable
    ``(B, C, H, W) tensor -> (B, ...)``, or ``"auto"`` (the encoder when the detector
    has one, else its anomaly map).
    """
    if features == "auto":
        features = "encoder" if _encoder(detector) is not None else "map"
    reason = features_unavailable(detector, features)
    if reason is not None:
        raise InputError(f"features={features!r} needs {reason}")
    if features == "pixels":
        return torch.from_numpy(images.reshape(len(images), -1)).double()
    if features == "map":
        maps = np.asarray(detector.anomaly_map(images), dtype=np.float64)
        return torch.from_numpy(maps.reshape(len(images), -1))
    fn = _encoder(detector) if features == "encoder" else features
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            f = fn(torch.from_numpy(images[i : i + batch_size]))
            if (
                not isinstance(f, torch.Tensor)
                or f.ndim < 1
                or len(f) != len(images[i : i + batch_size])
            ):
                raise InputError(
                    "features callable must return a tensor with one row per image, got "
                    f"{type(f).__name__} {tuple(getattr(f, 'shape', ()))}"
                )
            out.append(f.detach().reshape(len(f), -1).double().cpu())
    return torch.cat(out)


class FeatureMethod(InfluenceMethod):
    needs = "features: an encoder() hook, an anomaly map, the pixels or a callable"

    def __init__(self, *, features: Any = "auto", batch_size: int = 16) -> None:
        check_common(batch_size=batch_size, seed=0, projection_dim=None)
        if not callable(features) and features not in FEATURES:
            raise InputError(
                f"features must be one of {list(FEATURES)} or a callable, got {features!r}"
            )
        self.features = features
        self.batch_size = int(batch_size)

    def unavailable(self, detector: object) -> str | None:
        return features_unavailable(detector, self.features)

    def feats(self, problem: Problem, images: np.ndarray) -> torch.Tensor:
        return feature_matrix(
            problem.detector, images, features=self.features, batch_size=self.batch_size
        )


@INFLUENCE_METHODS.register
class Representation(FeatureMethod):
    """Representation similarity of test and training images in feature space.

    Parameters
    ----------
    features:
        ``"auto"`` (the encoder, else the anomaly map), ``"encoder"``, ``"map"``,
        ``"pixels"`` or a callable ``(B, C, H, W) tensor -> (B, ...)``.
    similarity:
        ``"cosine"`` (default) or ``"dot"``.
    batch_size:
        Images per feature chunk.
    """

    name = "representation"

    def __init__(
        self, *, features: Any = "auto", similarity: str = "cosine", batch_size: int = 16
    ) -> None:
        super().__init__(features=features, batch_size=batch_size)
        if similarity not in ("cosine", "dot"):
            raise InputError(f"similarity must be 'cosine' or 'dot', got {similarity!r}")
        self.similarity = similarity

    def _prep(self, f: torch.Tensor, what: str) -> torch.Tensor:
        if self.similarity == "dot":
            return f
        norm = f.norm(dim=1, keepdim=True)
        if bool((norm == 0).any()):
            i = int(torch.nonzero(norm[:, 0] == 0)[0])
            raise InputError(
                f"representation: the features of {what} {i} are all zero (cosine "
                "undefined); use similarity='dot' or other features"
            )
        return f / norm

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        a = self._prep(self.feats(problem, test), "test image")
        b = self._prep(self.feats(problem, problem.train), "training image")
        return (a @ b.T).numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        if self.similarity == "cosine":
            raise InputError(
                "method 'representation' with similarity='cosine' has no self-influence "
                "(1 for every image); use similarity='dot' or knn"
            )
        f = self.feats(problem, problem.train)
        return (f * f).sum(dim=1).numpy()


@INFLUENCE_METHODS.register
class Knn(FeatureMethod):
    """Nearest training images in feature space: ``I[i, j] = -||f(x_i) - f(x_j)||``.

    Parameters
    ----------
    features:
        As in :class:`Representation`.
    k:
        Neighbours averaged by the self-influence (the leave-one-out kNN distance).
    batch_size:
        Images per feature chunk.
    """

    name = "knn"

    def __init__(self, *, features: Any = "auto", k: int = 1, batch_size: int = 16) -> None:
        super().__init__(features=features, batch_size=batch_size)
        self.k = check_positive_int(k, "k")

    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        a = self.feats(problem, test)
        b = self.feats(problem, problem.train)
        return -_distances(a, b).numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        n = problem.n_train
        if self.k > n - 1:
            raise InputError(
                f"knn self-influence needs k <= n_train - 1 other training images, got "
                f"k={self.k} with {n} training images"
            )
        f = self.feats(problem, problem.train)
        d = _distances(f, f)
        d.fill_diagonal_(float("inf"))  # by index: a duplicate image still counts
        return d.topk(self.k, dim=1, largest=False).values.mean(dim=1).numpy()


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
