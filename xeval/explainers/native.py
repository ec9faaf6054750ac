"""The detector's own anomaly map as an explanation."""

from __future__ import annotations

import numpy as np

from xeval.adapters.base import Detector
from xeval.errors import InputError
from xeval.explainers.base import Explainer, images_of
from xeval.record import Inputs
from xeval.registry import EXPLAINERS


@EXPLAINERS.register
class NativeMap(Explainer):
    """The detector's native anomaly map (higher = more anomalous), unchanged.

    Returns ``maps`` when the engine passes them (the detector's maps for the batch,
    computed once); otherwise calls ``detector.anomaly_map(batch.images)``. The map is
    at the detector's own resolution; no normalisation, clamping or resizing is applied.
    """

    name = "native"
    requires = frozenset({"map"})
    image_score = "detector"

    def explain(
        self, detector: Detector, inputs: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        images = images_of(inputs)
        if maps is None:
            maps = detector.anomaly_map(images)
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[0] != len(images):
            raise InputError(
                f"native: detector {getattr(detector, 'name', '?')!r} gave maps of shape "
                f"{maps.shape} for {len(images)} images; expected ({len(images)}, h, w)"
            )
        return maps.astype(np.float32, copy=False)
