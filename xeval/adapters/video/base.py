"""The video detector interface.

A video detector is fitted on normal training videos and predicts, for every frame of a
test video, an anomaly score (higher = more anomalous), an anomaly map and, where it
has them, boxes of anomalous objects and one score per reason (X-MAN vocabulary).
Frames go in as ``(T, H, W, C)`` uint8 at native size (as
:meth:`xeval.data.video.base.Video.frames` returns them); a detector resizes them itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from xeval.errors import InputError

__all__ = ["VideoDetector", "VideoPrediction"]


@dataclass
class VideoPrediction:
    """What a video detector says about one video of ``T`` frames.

    scores:
        ``(T,)`` float64 frame scores (higher = more anomalous).
    maps:
        ``(T, h, w)`` float32 anomaly maps at the detector's working size (metrics
        upsample them bilinearly to the mask's native size).
    boxes:
        ``(n, 6)`` float64 detections ``(frame, x1, y1, x2, y2, score)`` in native pixel
        coordinates, or None (then boxes come from the maps through
        :func:`xeval.metrics.regions_from_maps`).
    reasons:
        ``(T, R)`` float64 reason scores in the order of ``reason_names``, or None.
    reason_names:
        The ``(coarse, fine)`` pairs the columns of ``reasons`` stand for.
    """

    scores: np.ndarray
    maps: np.ndarray
    boxes: np.ndarray | None = None
    reasons: np.ndarray | None = None
    reason_names: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        t = self.scores.shape[0] if self.scores.ndim == 1 else -1
        if self.scores.ndim != 1:
            raise InputError(f"VideoPrediction.scores must be (T,), got {self.scores.shape}")
        self.maps = np.asarray(self.maps, dtype=np.float32)
        if self.maps.ndim != 3 or self.maps.shape[0] != t:
            raise InputError(
                f"VideoPrediction.maps must be (T, h, w) with T={t}, got {self.maps.shape}"
            )
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 6)
        if self.reasons is not None:
            self.reasons = np.asarray(self.reasons, dtype=np.float64)
            if self.reasons.shape != (t, len(self.reason_names)):
                raise InputError(
                    f"VideoPrediction.reasons must be (T, R) = ({t}, {len(self.reason_names)}), "
                    f"got {self.reasons.shape}"
                )


class VideoDetector(ABC):
    """Base class of video detectors (registered in
    :data:`xeval.registry.VIDEO_DETECTORS`). Options are keyword-only constructor
    parameters."""

    name: ClassVar[str] = "video_detector"
    #: True when :meth:`predict` gives reason scores.
    gives_reasons: ClassVar[bool] = False

    @abstractmethod
    def fit(self, videos: Iterable[np.ndarray]) -> VideoDetector:
        """Fit on normal training videos, each ``(T, H, W, C)`` uint8."""

    @abstractmethod
    def predict(self, frames: np.ndarray) -> VideoPrediction:
        """Scores, maps (and boxes / reasons where available) for every frame of one
        video ``(T, H, W, C)`` uint8."""

    def set_vocabulary(self, vocabulary) -> None:  # noqa: B027 - optional hook
        """Called before :meth:`predict` with the test set's
        :class:`~xeval.data.video.base.ReasonVocabulary` (detectors with reasons map
        their own reasons onto it)."""
