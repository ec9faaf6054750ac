"""Phase 3 -- calibrate: values fitted on **normal validation** images for each explainer,
before the test set is seen (thresholds are never tuned on the test set).

Metrics ask for them through :meth:`~xeval.metrics.base.Metric.calibrations`; each kind
of request is a small streaming estimator here:

``("normal_quantile", q)``
    The ``q`` quantile of the pixel scores of the explainer's maps on the normal
    validation images, at native resolution -- exact (``np.quantile``) but streaming:
    :class:`~xeval.metrics.quantile.StreamingQuantile` keeps only the top ``1 - q``
    share of the pixels (their total is known from the image headers).
``("normal_scores",)``
    The image-level scores of the explanation on the normal validation images.
``("detector_scores",)``
    The detector's scores on the normal validation images (their spread tells a
    faithfulness metric which score differences are meaningful).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from xeval.adapters.base import Detector
from xeval.data.io import image_size
from xeval.data.loader import iter_batches
from xeval.data.sample import Sample
from xeval.engine.explain import checked_predict, explain_inputs, image_scores, to_native
from xeval.errors import ConfigError
from xeval.explainers.base import Explainer
from xeval.metrics._validation import check_float32_safe, undefined
from xeval.metrics.quantile import StreamingQuantile
from xeval.metrics.threshold import constant_threshold_why

__all__ = ["CALIBRATIONS", "calibrate"]


class _Quantile:
    """The quantile threshold; NaN with a warning when every validation pixel has the
    same score (a constant validation set defines no threshold)."""

    def __init__(self, request: tuple, n_pixels: int) -> None:
        self.state = StreamingQuantile(float(request[1]), n_pixels)
        self.lo, self.hi = math.inf, -math.inf

    def update(self, native: list[np.ndarray], scores: np.ndarray, det_scores) -> None:
        for m in native:
            self.state.update(m)
            if m.size:
                self.lo, self.hi = min(self.lo, float(m.min())), max(self.hi, float(m.max()))

    def result(self) -> float:
        if self.lo == self.hi:
            return undefined(
                f"the {self.state.q:g} quantile threshold",
                constant_threshold_why(self.lo, self.state.n_seen),
            )
        return self.state.result()


class _Scores:
    def __init__(self, request: tuple, n_pixels: int) -> None:
        self.values: list[float] = []
        self.detector = request[0] == "detector_scores"

    def update(self, native: list[np.ndarray], scores: np.ndarray, det_scores) -> None:
        s = det_scores if self.detector else scores
        self.values.extend(np.asarray(s, dtype=float).tolist())

    def result(self) -> np.ndarray:
        return np.asarray(self.values, dtype=float)


CALIBRATIONS: dict[str, Callable] = {
    "normal_quantile": _Quantile,
    "normal_scores": _Scores,
    "detector_scores": _Scores,
}
"""Request kind -> streaming estimator."""


def calibrate(
    det: Detector,
    explainers: list[Explainer],
    requests: list[tuple],
    samples: list[Sample],
    *,
    batch_size: int,
    category: str,
) -> tuple[dict[str, dict[tuple, object]], float]:
    """``({explainer name: {request: value}}, seconds)`` over the normal ``samples``."""
    requests = list(dict.fromkeys(requests))
    out: dict[str, dict[tuple, object]] = {e.name: {} for e in explainers}
    if not requests:
        return out, 0.0
    for r in requests:
        if r[0] not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration request {r!r}; known: {sorted(CALIBRATIONS)}")
    t = time.perf_counter()
    n_pixels = int(sum(np.prod(image_size(s.image_path)) for s in samples))
    states = {e.name: {r: CALIBRATIONS[r[0]](r, n_pixels) for r in requests} for e in explainers}
    for rec in iter_batches(
        samples,
        batch_size=batch_size,
        image_size=tuple(det.input_size),
        with_masks=False,
        category=category,
    ):
        scores, dmaps = checked_predict(det, rec.inputs.images)
        check_float32_safe(dmaps, f"detector {det.name!r}: the maps", rec.ids)
        for e in explainers:
            native = to_native(
                explain_inputs(e, det, rec.inputs, dmaps),
                rec.inputs.native_sizes,
                frame=rec.inputs.images.shape[-2:],
                ids=rec.ids,
            )
            s, _ = image_scores(e, scores, native)
            for st in states[e.name].values():
                st.update(native, s, scores)
    for name, by_req in states.items():
        out[name] = {r: st.result() for r, st in by_req.items()}
    return out, time.perf_counter() - t
