"""Explainers turn (detector, inputs) into one explanation per sample.

An explainer declares what it needs from the detector in :attr:`Explainer.requires`
(``"map"`` for the detector's own anomaly map, ``"gradients"`` for a differentiable
score, ``"layer"`` for a convolutional layer, ``"encoder"`` for a feature encoder,
``"baseline"`` for normal reference images); :mod:`xeval.explainers.pairing` checks the
pairing with the detector's capabilities before a run starts. Explainers receive
:class:`~xeval.record.Inputs` only -- never the ground truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from xeval.adapters.base import Detector
from xeval.record import Inputs


class Explainer(ABC):
    """Produces ``(B, h, w)`` float32 attribution maps (higher = more relevant).

    ``maps`` passed to :meth:`explain` are the detector's own maps for the inputs,
    already computed by the engine (explanations are computed once per sample and
    shared by all metrics; nothing calls the detector twice).

    ``control`` is True for trivial baselines (random, edge, centre prior) that every
    real explainer must beat.
    """

    name: ClassVar[str] = "explainer"
    requires: frozenset[str] = frozenset()
    control: ClassVar[bool] = False
    #: Image-level score of this explanation: ``"max"`` of the map, or ``"detector"``
    #: (the detector's own score, for its native map).
    image_score: ClassVar[str] = "max"
    #: False for maps that ignore the image (the centre prior): they are perfectly
    #: robust by construction and not valid comparators for robustness.
    input_dependent: ClassVar[bool] = True

    @abstractmethod
    def explain(
        self, detector: Detector, inputs: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Return ``(B, h, w)`` float32 maps for ``inputs`` (or a ``(B, C, H, W)`` array)."""

    @classmethod
    def unsupported_reason(cls, detector: Detector, **kwargs: Any) -> str | None:
        """Why this explainer cannot explain a *fitted* ``detector`` beyond what
        :attr:`requires` says (None if it can)."""
        return None

    def check(self, detector: Detector) -> None:
        """Raise :class:`~xeval.errors.InputError` if this explainer cannot explain
        ``detector`` (the message lists the explainers that can)."""
        from xeval.explainers.pairing import check_pairing

        check_pairing(detector, self)

    def config(self) -> dict:
        return {"name": self.name}


def ids_of(inputs: Inputs | np.ndarray) -> list[str]:
    """The sample ids of ``inputs`` (positions ``"0"``, ``"1"``... for a bare array)."""
    if isinstance(inputs, np.ndarray):
        return [str(i) for i in range(len(inputs))]
    return list(inputs.ids)


def images_of(inputs: Inputs | np.ndarray) -> np.ndarray:
    """The ``(B, C, H, W)`` images of ``inputs`` (checked)."""
    from xeval.checks import check_images

    return check_images(inputs)
