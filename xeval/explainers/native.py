"""The detector's own anomaly map as an explanation."""

from __future__ import annotations

import numpy as np

from xeval.adapters.base import Detector
from xeval.batch import Batch
from xeval.errors import InputError
from xeval.explainers.base import Explainer


class NativeMap(Explainer):
    """The detector's native anomaly map (higher = more anomalous), unchanged.

    Returns ``maps`` when the engine passes them (the detector's maps for the batch,
    computed once); otherwise calls ``detector.anomaly_map(batch.images)``. The map is
    at the detector's own resolution; no normalisation, clamping or resizing is applied.
    """

    name = "native"
    requires = frozenset({"map"})

    def explain(
        self, detector: Detector, batch: Batch, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        if maps is None:
            maps = detector.anomaly_map(batch.images)
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[0] != len(batch):
            raise InputError(
                f"maps must have shape (B, h, w) with B={len(batch)}, got {maps.shape}"
            )
        return maps.astype(np.float32, copy=False)
