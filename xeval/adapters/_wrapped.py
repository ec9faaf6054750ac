"""Shared machinery of the adapters that wrap a user's detector (see :func:`xeval.wrap`).

Private module. Every check raises :class:`~xeval.errors.InputError` naming the adapter
(its class and ``name``) and what the wrapped object returned, so that a user can tell
whether the fault is in their model, their ``score_fn``/``map_fn`` or their images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from xeval.adapters.base import Detector
from xeval.errors import InputError

REDUCTIONS = ("max", "mean")

#: The explainers' ``requires`` tags that a score-only detector can still serve.
SCORE_ONLY_HINT = (
    "explainers that derive a map from the image score apply: gradient attributions "
    "(requires 'gradients', only when torch_score() is not None) and perturbation "
    "explainers such as occlusion; the 'native' explainer needs a detector map"
)


def describe(value: Any) -> str:
    """A short description of a returned value for error messages."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return f"torch.Tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(value, np.ndarray):
        return f"numpy array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, dict):
        return f"dict with keys {sorted(map(str, value))}"
    if isinstance(value, tuple | list):
        inner = ", ".join(describe(v) for v in value[:4])
        return f"{type(value).__name__} of {len(value)} ({inner})"
    return f"{type(value).__name__} {value!r}"[:200]


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (detached, on the CPU)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return value.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(value)


def get_field(out: Any, key: str) -> Any:
    """``out[key]`` for a mapping, else ``getattr(out, key)`` (dataclass, namedtuple...)."""
    if isinstance(out, dict):
        return out[key]
    return getattr(out, key)


def has_field(out: Any, key: str) -> bool:
    if isinstance(out, dict):
        return key in out
    return hasattr(out, key) and not callable(getattr(out, key))


def iter_images(batches: Iterable[Any]) -> Iterable[Any]:
    """Batches as given, a single ``(B, C, H, W)`` array counting as one batch."""
    if isinstance(batches, np.ndarray) and batches.ndim == 4:
        return [batches]
    try:
        import torch

        if isinstance(batches, torch.Tensor) and batches.ndim == 4:
            return [batches]
    except ImportError:  # pragma: no cover
        pass
    return batches


class WrappedDetector(Detector):
    """Base of the adapters around user objects: input/output checks and error wording.

    Subclasses set :attr:`name`, :attr:`input_size`, implement :meth:`fit` and
    :meth:`predict`, and call :meth:`_images`, :meth:`_scores`, :meth:`_maps` on what
    goes in and what comes out.
    """

    kind: str = "wrapped"
    _has_map: bool | None = None

    # -- identity ---------------------------------------------------------------------
    @property
    def who(self) -> str:
        """``"ClassName 'name'"``, used at the start of every error message."""
        return f"{type(self).__name__} {self.name!r}"

    @property
    def has_map(self) -> bool:  # type: ignore[override]
        if self._has_map is None:
            self._has_map = bool(self._infer_has_map())
        return self._has_map

    def _infer_has_map(self) -> bool:
        return True

    # -- checks -----------------------------------------------------------------------
    def _images(self, images: Any, *, name: str = "images") -> np.ndarray:
        """Validate ``(B, C, H, W)`` floats (numpy, torch or Inputs) -> float32 numpy."""
        if hasattr(images, "images") and not isinstance(images, np.ndarray):
            images = images.images
        arr = to_numpy(images) if not isinstance(images, np.ndarray) else images
        if not isinstance(arr, np.ndarray) or arr.dtype == object:
            raise InputError(
                f"{self.who}: {name} must be a (B, C, H, W) float array, got {describe(images)}"
            )
        if arr.ndim != 4:
            raise InputError(
                f"{self.who}: {name} must have shape (B, C, H, W), got shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise InputError(f"{self.who}: {name} is empty (shape {arr.shape})")
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(
                f"{self.who}: {name} must be floating point in [0, 1], got dtype {arr.dtype}"
            )
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{self.who}: {name} contains NaN or infinite values")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _scores(self, scores: Any, b: int, *, source: str) -> np.ndarray:
        """Check that ``source`` returned ``b`` finite scores; return float32 ``(b,)``."""
        arr = to_numpy(scores)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise InputError(
                f"{self.who}: {source} must return numeric scores of shape ({b},), "
                f"got {describe(scores)}"
            )
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.shape != (b,):
            raise InputError(
                f"{self.who}: {source} returned scores of shape {arr.shape}, expected ({b},) "
                f"(one score per image); got {describe(scores)}"
            )
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
            raise InputError(
                f"{self.who}: {source} returned NaN or infinite scores at indices {bad} "
                f"(values {arr[bad].tolist()})"
            )
        return arr.astype(np.float32, copy=False)

    def _maps(self, maps: Any, b: int, *, source: str) -> np.ndarray:
        """Check ``(b, h, w)`` (or ``(b, 1, h, w)``) finite maps; return float32 ``(b, h, w)``."""
        arr = to_numpy(maps)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise InputError(
                f"{self.who}: {source} must return maps of shape ({b}, h, w), got {describe(maps)}"
            )
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3 or arr.shape[0] != b or min(arr.shape[1:]) < 1:
            raise InputError(
                f"{self.who}: {source} returned maps of shape {arr.shape}, expected "
                f"({b}, h, w) or ({b}, 1, h, w)"
            )
        if not np.all(np.isfinite(arr)):
            raise InputError(
                f"{self.who}: {source} returned NaN or infinite values in its maps "
                f"({int((~np.isfinite(arr)).sum())} of {arr.size} pixels)"
            )
        return arr.astype(np.float32, copy=False)

    @staticmethod
    def _no_maps(b: int) -> np.ndarray:
        return np.zeros((b, 0, 0), dtype=np.float32)

    # -- Detector API -----------------------------------------------------------------
    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        """Pixel anomaly maps ``(B, h, w)``; InputError for a score-only detector."""
        if not self.has_map:
            raise InputError(
                f"{self.who} gives image scores only, no anomaly map (has_map=False); "
                f"{SCORE_ONLY_HINT}"
            )
        return self.predict(images)[1]

    def require_torch_score(self) -> Callable:
        """:meth:`torch_score`, or an InputError saying why gradients are unavailable."""
        fn = self.torch_score()
        if fn is None:
            raise InputError(
                f"{self.who} is not differentiable (torch_score() is None): gradient "
                "explainers do not apply to it; use perturbation explainers (occlusion, "
                "deletion/insertion with normal content), which need only predict()"
            )
        return fn

    def config(self) -> dict:
        return {"name": self.name, "kind": self.kind, "input_size": list(self.input_size)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "kind")
        return f"{type(self).__name__}({params})"


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_input_size(input_size: Any) -> tuple[int, int]:
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise InputError(f"input_size must be an int or (H, W), got {input_size!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"input_size must be positive, got {(h, w)}")
    return h, w


def check_batch_size(batch_size: Any) -> int:
    try:
        bs = int(batch_size)
    except (TypeError, ValueError):
        raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}") from None
    if bs < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
    return bs
