"""Baselines (reference inputs) for IG, GradientSHAP, DeepLIFT, occlusion and ablation.

DESIGN.md: *baselines for IG/SHAP/DeepLIFT are normal reference images by default, not
black*. An attribution against a baseline ``b`` answers "what in ``x`` makes it more
anomalous than ``b``?"; against a black image the answer is mostly "everything that is
not black", which says nothing about the anomaly. The default is therefore
:class:`NormalReference`: the mean of normal training images (one reference), or ``K``
of them drawn with a seed (a distribution, for GradientSHAP / DeepLiftShap).

Each baseline gives

- :meth:`Baseline.single` ``(images (B,C,H,W)) -> (B,C,H,W)``: one reference per input
  (IG, DeepLIFT, occlusion, feature ablation);
- :meth:`Baseline.distribution` ``(images, k, seed) -> (K,C,H,W)`` shared by the batch,
  or ``(B,K,C,H,W)`` when it depends on the input (blur).

Available: :class:`NormalReference`, :class:`Black`, :class:`Blur`,
:class:`Uniform`, :class:`Constant` (an explicit array). :func:`resolve_baseline` turns
the ``baseline=`` / ``reference=`` arguments of an explainer into one of them.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np
from scipy import ndimage

from xeval.errors import InputError

BASELINE_NAMES = ("normal", "black", "blur", "uniform")


def array_fingerprint(a: np.ndarray) -> str:
    """sha256 (hex, first 16 chars) of a float32 array's shape and bytes."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def _check_like(ref: np.ndarray, images: np.ndarray, what: str) -> None:
    if tuple(ref.shape[-3:]) != tuple(images.shape[1:]):
        raise InputError(
            f"{what} has shape (C, H, W) = {tuple(ref.shape[-3:])} but the images have "
            f"{tuple(images.shape[1:])}: pass a baseline / reference at the images' "
            "channels and resolution (the detector's input size)"
        )


class Baseline(ABC):
    """A reference input against which an attribution is computed."""

    name: str = "baseline"

    @abstractmethod
    def single(self, images: np.ndarray) -> np.ndarray:
        """One reference per input, ``(B, C, H, W)`` float32."""

    @abstractmethod
    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        """``(K, C, H, W)`` shared by all inputs, or ``(B, K, C, H, W)`` per input."""

    def config(self) -> dict:
        return {"name": self.name}


class Black(Baseline):
    """All-zero image. Kept for comparison; on anomaly detectors it is a poor reference
    (a black image is itself highly anomalous)."""

    name = "black"

    def single(self, images: np.ndarray) -> np.ndarray:
        return np.zeros_like(images, dtype=np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        return np.zeros((1, *images.shape[1:]), dtype=np.float32)


class Blur(Baseline):
    """Gaussian blur of the input itself (standard deviation ``sigma`` pixels, reflected
    borders): keeps colour and layout, removes fine structure (and fine defects)."""

    name = "blur"

    def __init__(self, sigma: float = 5.0) -> None:
        if not float(sigma) > 0:
            raise InputError(f"Blur sigma must be > 0 pixels, got {sigma!r}")
        self.sigma = float(sigma)

    def single(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        s = (0, 0, self.sigma, self.sigma)
        return ndimage.gaussian_filter(x, sigma=s, mode="reflect").astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        return self.single(images)[:, None]

    def config(self) -> dict:
        return {"name": self.name, "sigma": self.sigma}


class Uniform(Baseline):
    """Uniform noise in ``[low, high)`` drawn with ``seed`` (offset by the call's seed)."""

    name = "uniform"

    def __init__(self, low: float = 0.0, high: float = 1.0, *, seed: int = 0) -> None:
        if not float(high) > float(low):
            raise InputError(f"Uniform needs high > low, got low={low!r}, high={high!r}")
        self.low, self.high, self.seed = float(low), float(high), int(seed)

    def single(self, images: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.uniform(self.low, self.high, size=images.shape).astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(seed)])
        size = (int(k), *images.shape[1:])
        return rng.uniform(self.low, self.high, size=size).astype(np.float32)

    def config(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "seed": self.seed}


class Constant(Baseline):
    """An explicit array: ``(C, H, W)`` (one reference) or ``(K, C, H, W)``.

    ``single`` needs exactly one reference (``K == 1``); a distribution of ``K > 1``
    belongs to GradientSHAP / DeepLiftShap (or pass its mean).
    """

    name = "array"

    def __init__(self, array: np.ndarray) -> None:
        a = _as_float_array(array, "baseline")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[0] < 1:
            raise InputError(
                f"baseline array must have shape (C, H, W) or (K, C, H, W), got {a.shape}"
            )
        self.array = a

    def single(self, images: np.ndarray) -> np.ndarray:
        _check_like(self.array, images, "baseline")
        if self.array.shape[0] != 1:
            raise InputError(
                f"this method takes one baseline, shape (C, H, W) or (1, C, H, W); got "
                f"{self.array.shape[0]} of them (shape {self.array.shape}). Use "
                "gradient_shap / deeplift_shap for a distribution of baselines, or pass "
                "its mean"
            )
        return np.broadcast_to(self.array, images.shape).astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int, seed: int) -> np.ndarray:
        _check_like(self.array, images, "baseline")
        return self.array

    def config(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.array.shape),
            "sha256": array_fingerprint(self.array),
        }


class NormalReference(Baseline):
    """Normal reference images (the default baseline).

    Parameters
    ----------
    images_normal:
        ``(N, C, H, W)`` normal (anomaly-free) images, typically the training images,
        at the resolution of the images to explain.
    k:
        Size of the distribution for GradientSHAP / DeepLiftShap: ``k`` images drawn
        without replacement with the call's seed (all of them when ``N <= k``).

    :meth:`single` returns the **mean** normal image for every input.
    """

    name = "normal_reference"

    def __init__(self, images_normal: np.ndarray, *, k: int = 16) -> None:
        a = _as_float_array(images_normal, "reference")
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[0] < 1:
            raise InputError(
                f"reference (normal images) must have shape (N, C, H, W), got {a.shape}"
            )
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k!r}")
        self.images = a
        self.k = int(k)
        self.mean = a.mean(axis=0, dtype=np.float64).astype(np.float32)
        self._fingerprint = array_fingerprint(a)

    def single(self, images: np.ndarray) -> np.ndarray:
        _check_like(self.mean, images, "reference (normal images)")
        return np.broadcast_to(self.mean[None], images.shape).astype(np.float32)

    def distribution(self, images: np.ndarray, *, k: int | None = None, seed: int = 0):
        _check_like(self.images, images, "reference (normal images)")
        k = self.k if k is None else int(k)
        n = len(self.images)
        if n <= k:
            return self.images
        idx = np.sort(np.random.default_rng(int(seed)).choice(n, size=k, replace=False))
        return self.images[idx]

    def config(self) -> dict:
        return {
            "name": self.name,
            "n": int(len(self.images)),
            "k": self.k,
            "sha256": self._fingerprint,
        }


def _as_float_array(a: object, what: str) -> np.ndarray:
    try:
        import torch

        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(a, "images") and not isinstance(a, np.ndarray):
        a = a.images
    if not isinstance(a, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(f"{what} must be floating point (images in [0, 1]), got {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contains NaN or infinite values (shape {a.shape})")
    return np.ascontiguousarray(a, dtype=np.float32)


def resolve_baseline(
    baseline: object = None, *, reference: object = None, k: int = 16
) -> Baseline | None:
    """Turn an explainer's ``baseline=`` / ``reference=`` arguments into a :class:`Baseline`.

    - ``baseline`` None or ``"normal"``: :class:`NormalReference` of ``reference`` if
      given, else None (the caller must get normal images via ``fit_reference``);
    - ``"black"``, ``"blur"``, ``"uniform"``: :class:`Black`, :class:`Blur`,
      :class:`Uniform` with default parameters;
    - an array ``(C, H, W)`` / ``(K, C, H, W)``: :class:`Constant`;
    - a :class:`Baseline`: itself.
    """
    if isinstance(baseline, Baseline):
        return baseline
    if baseline is None or (isinstance(baseline, str) and baseline == "normal"):
        if reference is None:
            return None
        if isinstance(reference, NormalReference):
            return reference
        return NormalReference(reference, k=k)
    if isinstance(baseline, str):
        if baseline == "black":
            return Black()
        if baseline == "blur":
            return Blur()
        if baseline == "uniform":
            return Uniform()
        raise InputError(
            f"baseline must be one of {list(BASELINE_NAMES)}, an array (C, H, W) or "
            f"(K, C, H, W), or a Baseline; got {baseline!r}"
        )
    return Constant(baseline)  # type: ignore[arg-type]
