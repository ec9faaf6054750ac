"""Wrap a black-box function (numpy images in, scores or maps out) as a Detector.

A black box gives no gradients: :meth:`~BlackBoxDetector.torch_score` is None and
``differentiable`` is False, so only explainers that need nothing but
:meth:`~xeval.adapters.Detector.predict` apply (occlusion and other perturbation
explainers, the native map when the function returns one, the trivial controls).
The engine checks each explainer's ``requires`` against the detector before a run and
names the explainers that work with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from xeval.adapters._wrapped import (
    WrappedDetector,
    check_batch_size,
    check_input_size,
    check_reduction,
    describe,
    iter_images,
    to_numpy,
)
from xeval.checks import check_bool
from xeval.errors import InputError

SCORE_KEYS = ("score", "scores", "pred_score", "anomaly_score")
MAP_KEYS = ("map", "maps", "anomaly_map", "anomaly_maps")


class BlackBoxDetector(WrappedDetector):
    """A function ``fn(images) -> scores | (scores, maps) | maps | dict`` as a detector.

    Score definition: whatever ``fn`` returns, assumed higher = more anomalous (pass
    ``higher_is_anomalous=False`` to negate it). Accepted return values for a batch of
    ``B`` images ``(B, C, H, W)`` float32 in ``[0, 1]``:

    - scores ``(B,)``;
    - ``(scores, maps)`` with maps ``(B, h, w)`` or ``(B, 1, h, w)``;
    - maps alone ``(B, h, w)`` / ``(B, 1, h, w)``: the score is their max or mean
      (``reduction``);
    - a dict with a score key (``score``, ``scores``, ``pred_score``) and/or a map key
      (``map``, ``maps``, ``anomaly_map``).

    Numpy arrays, lists or torch tensors are accepted. Every output is checked: wrong
    shapes and NaN/inf values raise :class:`~xeval.errors.InputError` naming the
    adapter and what the function returned.

    Parameters
    ----------
    fn:
        The detector function.
    name:
        Identifier in result tables.
    input_size:
        ``(H, W)`` the engine resizes images to before calling ``fn``.
    has_map:
        Whether ``fn`` returns maps. None (default): found out from its first output
        (a probe call on one black image if asked before any prediction).
    batch_size:
        Images per call of ``fn`` (None: the whole batch at once).
    fit_fn:
        ``fit_fn(batches)`` called by :meth:`fit` with the normal batches; without it
        :meth:`fit` is a no-op.
    reduction:
        ``"max"`` or ``"mean"`` of the map when ``fn`` returns maps only.
    higher_is_anomalous:
        False when ``fn``'s scores grow with normality (they are negated).
    in_channels:
        Channels of the probe image (see ``has_map``).
    seed:
        Recorded in :meth:`config` only (the function's randomness is its own).
    """

    kind = "blackbox"
    differentiable = False

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        *,
        name: str = "blackbox",
        input_size: int | tuple[int, int] = (128, 128),
        has_map: bool | None = None,
        batch_size: int | None = None,
        fit_fn: Callable[[Iterable[np.ndarray]], Any] | None = None,
        reduction: str = "max",
        higher_is_anomalous: bool = True,
        in_channels: int = 3,
        seed: int = 0,
    ) -> None:
        self.name = str(name)
        if not callable(fn):
            raise InputError(f"{self.who}: fn must be callable, got {describe(fn)}")
        if fit_fn is not None and not callable(fit_fn):
            raise InputError(f"{self.who}: fit_fn must be callable, got {describe(fit_fn)}")
        self.fn = fn
        self.input_size = check_input_size(input_size)
        self._has_map = None if has_map is None else check_bool(has_map, "has_map")
        self.batch_size = None if batch_size is None else check_batch_size(batch_size)
        self.fit_fn = fit_fn
        self.reduction = check_reduction(reduction)
        self.higher_is_anomalous = check_bool(higher_is_anomalous, "higher_is_anomalous")
        self.in_channels = int(in_channels)
        self.seed = int(seed)

    def _split(self, out: Any, b: int) -> tuple[Any, Any]:
        """(scores, maps or None) from one output of ``fn``."""
        if isinstance(out, dict):
            s_key = next((k for k in SCORE_KEYS if k in out), None)
            m_key = next((k for k in MAP_KEYS if k in out), None)
            if s_key is None and m_key is None:
                raise InputError(
                    f"{self.who}: the function returned a dict without a score key "
                    f"{SCORE_KEYS} or a map key {MAP_KEYS}: {describe(out)}"
                )
            return (out[s_key] if s_key else None), (out[m_key] if m_key else None)
        if isinstance(out, tuple | list) and len(out) == 2:
            first = to_numpy(out[0])
            if first.ndim >= 1 and first.dtype != object:
                return out[0], out[1]
        arr = to_numpy(out)
        if arr.dtype != object and (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[1] == 1)):
            return None, out
        return out, None

    def _call(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        b = len(x)
        out = self.fn(x)
        s, m = self._split(out, b)
        maps = None if m is None else self._maps(m, b, source="the function")
        sign = 1.0 if self.higher_is_anomalous else -1.0
        if maps is not None:
            maps = sign * maps
        if s is None:  # reduce the sign-fixed map: the most anomalous pixel
            flat = maps.reshape(b, -1)  # type: ignore[union-attr]
            scores = flat.max(axis=1) if self.reduction == "max" else flat.mean(axis=1)
        else:
            scores = sign * self._scores(s, b, source="the function")
        if self._has_map is not None and self._has_map != (maps is not None):
            raise InputError(
                f"{self.who} was created with has_map={self._has_map} but the function "
                f"returned {describe(out)}"
            )
        self._has_map = maps is not None
        return scores.astype(np.float32, copy=False), maps

    def _infer_has_map(self) -> bool:
        self._call(np.zeros((1, self.in_channels, *self.input_size), np.float32))
        return bool(self._has_map)

    def fit(self, batches: Iterable[np.ndarray]) -> BlackBoxDetector:
        """No-op unless ``fit_fn`` was given; then ``fit_fn(batches)``."""
        if self.fit_fn is not None:
            self.fit_fn(iter_images(batches))
        return self

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores (B,), maps (B, h, w))`` float32, higher = more anomalous.

        A function that returns scores only gives maps of shape ``(B, 0, 0)``
        (``has_map`` is False and :meth:`anomaly_map` raises).
        """
        x = self._images(images)
        step = self.batch_size or len(x)
        scores, maps = [], []
        for i in range(0, len(x), step):
            s, m = self._call(x[i : i + step])
            scores.append(s)
            if m is not None:
                maps.append(m)
        if maps:
            shapes = {m.shape[1:] for m in maps}
            if len(shapes) > 1:
                raise InputError(f"{self.who}: the function returned maps of sizes {shapes}")
            return np.concatenate(scores), np.concatenate(maps)
        return np.concatenate(scores), self._no_maps(len(x))

    def torch_score(self) -> None:
        """None: a black box has no gradients (use perturbation explainers)."""
        return None

    def config(self) -> dict:
        return {
            **super().config(),
            "function": getattr(self.fn, "__qualname__", type(self.fn).__name__),
            "has_map": self._has_map,
            "batch_size": self.batch_size,
            "reduction": self.reduction,
            "higher_is_anomalous": self.higher_is_anomalous,
            "seed": self.seed,
        }
