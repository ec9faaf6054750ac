"""Explainers turn (detector, batch) into one explanation per sample.

An explainer declares what it needs in :attr:`Explainer.requires` (``"map"`` for the
detector's own anomaly map, ``"gradients"``, ``"baseline"``, ``"training_data"``...);
the engine checks the pairing before a run starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from xeval.adapters.base import Detector
from xeval.batch import Batch


class Explainer(ABC):
    """Produces ``(B, h, w)`` float32 attribution maps (higher = more relevant).

    ``maps`` passed to :meth:`explain` are the detector's own maps for the batch,
    already computed by the engine (explanations are computed once per sample and
    shared by all metrics; nothing calls the detector twice).

    ``control`` is True for trivial baselines (random, edge, centre prior) that every
    real explainer must beat.
    """

    name: str = "explainer"
    requires: frozenset[str] = frozenset()
    control: bool = False

    @abstractmethod
    def explain(
        self, detector: Detector, batch: Batch, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Return ``(B, h, w)`` float32 maps for ``batch``."""

    def config(self) -> dict:
        return {"name": self.name}
