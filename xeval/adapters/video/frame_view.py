"""A frame is an image: one frame of a clip, seen by a video detector, as an xeval image
:class:`~xeval.adapters.base.Detector`.

``frame_view(video_detector, frames, t)`` returns a detector whose ``score(x)`` /
``anomaly_map(x)`` for a batch ``x`` ``(B, C, H, W)`` of candidate frames (float32 in
``[0, 1]``) are the video detector's score and map **of frame t** when frame ``t`` of the
clip ``frames`` is replaced by each candidate (the other frames are the context). So the
image-side explainers (:func:`xeval.explain`: captum gradient methods for differentiable
clip models, perturbation methods otherwise) work unchanged on video detectors.

- :class:`~xeval.adapters.video.clip.ClipAdapter`: inputs at the adapter's working size;
  :meth:`~xeval.adapters.base.Detector.torch_score` is the differentiable
  ``(B, C, H, W) -> (B,)`` torch callable
  (:meth:`~xeval.adapters.video.clip.ClipAdapter.frame_outputs`), and
  ``torch_module()`` the clip model.
- :class:`~xeval.adapters.video.clip.FrameByFrame`: the wrapped image detector itself
  (the context plays no role).
- Any other :class:`~xeval.adapters.video.base.VideoDetector`: inputs at the native
  frame size; each candidate is quantised to uint8 (``round(255 x)``, clipped), put in
  place of frame ``t`` and the detector's ``predict`` runs on the frames
  ``[t - context, t + context]`` (all frames with ``context=None``; one ``predict`` per
  candidate, so give a ``context`` for perturbation methods on long videos); no
  gradients (``torch_score()`` is None).

The view's :meth:`fit` does nothing: the video detector is fitted already.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector
from xeval.adapters.video.base import VideoDetector
from xeval.adapters.video.clip import ClipAdapter, FrameByFrame, frames_to_tensor
from xeval.adapters.video.frame_difference import check_video
from xeval.checks import check_images
from xeval.errors import InputError

__all__ = ["frame_view"]


def _check_t(t: object, n: int) -> int:
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or not 0 <= t < n:
        raise InputError(f"t must be a frame index in 0..{n - 1}, got {t!r}")
    return int(t)


class _View(Detector):
    """Common part: the candidate batch check and the no-op fit."""

    differentiable = False

    def __init__(self, detector: VideoDetector, frames: np.ndarray, t: int) -> None:
        self.video_detector = detector
        self.frames = frames
        self.t = t
        self.name = f"{getattr(detector, 'name', 'video')}[frame {t}]"

    def fit(self, batches: Iterable[np.ndarray]) -> Detector:
        return self

    def _check(self, images: np.ndarray) -> np.ndarray:
        x = check_images(images)
        c = self.frames.shape[3]
        if x.shape[1] != c or tuple(x.shape[2:]) != tuple(self.input_size):
            raise InputError(
                f"frame view {self.name!r}: candidate frames must have shape (B, {c}, "
                f"{self.input_size[0]}, {self.input_size[1]}), got {x.shape}"
            )
        return x

    def config(self) -> dict:
        cfg = getattr(self.video_detector, "config", None)
        return {"name": self.name, "frame": self.t, "video_detector": cfg() if cfg else None}


class _ClipView(_View):
    differentiable = True

    def __init__(self, detector: ClipAdapter, frames: np.ndarray, t: int) -> None:
        super().__init__(detector, frames, t)
        detector._plan(len(frames))  # a clip too short for the model: an error now
        self.context = frames_to_tensor(frames, detector.input_size)
        self.input_size = tuple(self.context.shape[-2:])

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        det: ClipAdapter = self.video_detector  # type: ignore[assignment]
        scores, maps = [], []
        for i in range(0, len(x), det.batch_size):
            s, m = det.frame_outputs(self.context, self.t, x[i : i + det.batch_size])
            scores.append(s)
            maps.append(m)
        return torch.cat(scores), torch.cat(maps)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(self._check(images))
        self.video_detector.module.eval()
        with torch.no_grad():
            s, m = self._outputs(x)
        return (
            s.to("cpu", torch.float32).numpy(),
            m.to("cpu", torch.float32).numpy(),
        )

    def torch_score(self) -> Callable[[torch.Tensor], torch.Tensor]:
        def score(x: torch.Tensor) -> torch.Tensor:
            if not isinstance(x, torch.Tensor) or x.ndim != 4:
                raise InputError(
                    f"frame view {self.name!r}: torch_score expects a (B, C, H, W) tensor"
                )
            self.video_detector.module.eval()
            return self._outputs(x)[0].to(x.device)

        return score

    def torch_module(self) -> nn.Module:
        return self.video_detector.module


class _GenericView(_View):
    def __init__(
        self, detector: VideoDetector, frames: np.ndarray, t: int, context: int | None
    ) -> None:
        super().__init__(detector, frames, t)
        self.input_size = tuple(frames.shape[1:3])
        n = len(frames)
        self.lo = 0 if context is None else max(0, t - context)
        self.hi = n if context is None else min(n, t + context + 1)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._check(images)
        q = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        clip = self.frames[self.lo : self.hi].copy()
        k = self.t - self.lo
        scores, maps = [], []
        for cand in q:
            clip[k] = cand
            p = self.video_detector.predict(clip)
            scores.append(p.scores[k])
            maps.append(p.maps[k])
        return np.asarray(scores, np.float32), np.asarray(maps, np.float32)


def frame_view(
    video_detector: VideoDetector, frames: np.ndarray, t: int, *, context: int | None = None
) -> Detector:
    """Frame ``t`` of ``frames`` ``(T, H, W, C)`` uint8, as seen by the fitted
    ``video_detector``, as an image detector (module docstring). ``context``: frames on
    each side of ``t`` a generic video detector sees (None: all; ignored by clip and
    frame-by-frame detectors, whose context is fixed by their model)."""
    frames = check_video(frames)
    t = _check_t(t, len(frames))
    if context is not None and (
        isinstance(context, (bool, np.bool_))
        or not isinstance(context, numbers.Integral)
        or context < 0
    ):
        raise InputError(f"context must be None or an integer >= 0, got {context!r}")
    if isinstance(video_detector, FrameByFrame):
        return video_detector.detector
    if isinstance(video_detector, ClipAdapter):
        return _ClipView(video_detector, frames, t)
    if not isinstance(video_detector, VideoDetector):
        raise InputError(
            f"video_detector must be a VideoDetector, got {type(video_detector).__name__}"
        )
    return _GenericView(video_detector, frames, t, context)
