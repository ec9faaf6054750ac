"""Explanations of a video detector, frame by frame ("a frame is an image").

A video explainer turns one test video and the detector's :class:`VideoPrediction` into
a :class:`VideoExplanation`: per frame a map (at the detector's working size), a frame
score, optionally boxes and reason scores. Registered in
:data:`xeval.registry.VIDEO_EXPLAINERS`:

``native``
    The detector's own maps, frame scores, boxes and reason scores.
``random`` (control)
    Uniform noise maps (the image control :class:`~xeval.explainers.controls.RandomMap`,
    seeded per frame id) and **uniform random reason scores** (seeded per frame): the
    random reason scorer every reasoning method must beat.
``sobel`` (control)
    Sobel edge magnitude of each frame (input-dependent, detector-independent).
``centre`` (control)
    A centred Gaussian, the same for every frame (input-independent).

Control frame scores are the maximum of their map (as on the image side), so that a
control is scored by every frame, pixel and region metric like the detector.

Every image attribution method of :func:`xeval.explain` (``saliency``,
``integrated_gradients``, ``occlusion``...) is registered too, under its own name: it
explains each frame ``t`` through :func:`~xeval.adapters.video.frame_view.frame_view`
("a frame is an image": the detector's score of frame ``t`` as a function of that frame,
the other frames fixed), with the image explainer's own options; baselines default to
normal training frames (:meth:`FrameAttribution.fit_reference`). The frame score of an
attribution is the maximum of its map. Gradient methods need a differentiable clip
detector (a :class:`~xeval.adapters.video.clip.ClipAdapter` such as
``clip_autoencoder``); asking one of another detector is an error that lists the methods
that work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from xeval.adapters.video.base import VideoPrediction
from xeval.data.video.base import ReasonVocabulary
from xeval.errors import InputError
from xeval.explainers.controls import CentrePrior, RandomMap, SobelEdges
from xeval.record import Inputs
from xeval.registry import VIDEO_EXPLAINERS
from xeval.rng import sample_seed

__all__ = ["VideoExplainer", "VideoExplanation", "frames_to_images"]


@dataclass
class VideoExplanation:
    """One explainer's output on one video of ``T`` frames (see the module docstring)."""

    maps: np.ndarray
    scores: np.ndarray
    boxes: list[np.ndarray] | None = None
    reasons: np.ndarray | None = None
    reason_names: tuple[tuple[str, str], ...] = ()


def frames_to_images(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, C)`` uint8 frames -> ``(T, C, h, w)`` float32 in ``[0, 1]`` at ``size``
    (bilinear, antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x.numpy()


def boxes_per_frame(boxes: np.ndarray | None, n_frames: int) -> list[np.ndarray] | None:
    """Detections ``(n, 6)`` rows ``(frame, x1, y1, x2, y2, score)`` -> per frame an
    ``(k, 5)`` array (None stays None)."""
    if boxes is None:
        return None
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
    frame = b[:, 0].astype(np.int64)
    order = np.argsort(frame, kind="stable")
    b, frame = b[order], frame[order]
    starts = np.searchsorted(frame, np.arange(n_frames + 1))
    return [b[starts[t] : starts[t + 1], 1:] for t in range(n_frames)]


class VideoExplainer:
    """Base class: ``explain(frames, prediction, *, video_id, frame_names, vocabulary)``."""

    name: ClassVar[str] = "video_explainer"
    control: ClassVar[bool] = False

    def explain(
        self,
        frames: np.ndarray,
        prediction: VideoPrediction,
        *,
        video_id: str,
        frame_names: list[str],
        vocabulary: ReasonVocabulary | None,
        detector=None,
    ) -> VideoExplanation:
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.name}


@VIDEO_EXPLAINERS.register
class NativeVideo(VideoExplainer):
    """The detector's own maps, scores, boxes and reasons."""

    name = "native"

    def explain(self, frames, prediction, *, video_id, frame_names, vocabulary, detector=None):
        return VideoExplanation(
            maps=prediction.maps,
            scores=prediction.scores,
            boxes=boxes_per_frame(prediction.boxes, len(prediction.scores)),
            reasons=prediction.reasons,
            reason_names=tuple(prediction.reason_names),
        )


class _ImageControl(VideoExplainer):
    control = True
    image_control: ClassVar[type]

    def __init__(self, **options) -> None:
        self._control = self.image_control(**options)

    def _maps(self, frames, prediction, ids) -> np.ndarray:
        size = tuple(prediction.maps.shape[-2:])
        images = frames_to_images(frames, size)
        return self._control.explain(None, Inputs(ids=ids, category="", images=images))

    def _reasons(self, ids, vocabulary):
        return None, ()

    def explain(self, frames, prediction, *, video_id, frame_names, vocabulary, detector=None):
        ids = [f"{video_id}/{n}" for n in frame_names]
        maps = self._maps(frames, prediction, ids)
        reasons, names = self._reasons(ids, vocabulary)
        scores = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
        return VideoExplanation(maps=maps, scores=scores, reasons=reasons, reason_names=names)

    def config(self) -> dict:
        return self._control.config()


@VIDEO_EXPLAINERS.register
class RandomVideo(_ImageControl):
    """Uniform noise maps and uniform random reason scores, seeded per frame id."""

    name = "random"
    image_control = RandomMap

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.seed = int(seed)

    def _reasons(self, ids, vocabulary):
        if vocabulary is None:
            return None, ()
        r = len(vocabulary.fine)
        out = np.empty((len(ids), r), dtype=np.float64)
        for i, sid in enumerate(ids):
            out[i] = np.random.default_rng(sample_seed(self.seed + 1, sid)).random(r)
        return out, tuple(vocabulary.fine)


@VIDEO_EXPLAINERS.register
class SobelVideo(_ImageControl):
    """Sobel edge magnitude of each frame."""

    name = "sobel"
    image_control = SobelEdges

    def __init__(self) -> None:
        super().__init__()


@VIDEO_EXPLAINERS.register
class CentreVideo(_ImageControl):
    """A centred Gaussian, identical for every frame."""

    name = "centre"
    image_control = CentrePrior

    def __init__(self, *, sigma_fraction: float = 0.25) -> None:
        super().__init__(sigma_fraction=sigma_fraction)


# ------------------------------------------------------------------- attributions
class FrameAttribution(VideoExplainer):
    """An image attribution method applied to every frame through
    :func:`~xeval.adapters.video.frame_view.frame_view` (module docstring); options are
    the image explainer's (checked when built)."""

    method: ClassVar[str] = ""

    @classmethod
    def requires(cls) -> frozenset:
        """What the image method needs of the detector (``"gradients"``...)."""
        from xeval.registry import EXPLAINERS

        return frozenset(getattr(EXPLAINERS.get(cls.method), "requires", frozenset()))

    def __init__(self, **params) -> None:
        from xeval.explainers.api import make_explainer

        if "reference" in params or "baseline" in params and params["baseline"] == "reference":
            raise InputError(
                f"{self.method}: reference frames come from the normal training videos; "
                "do not pass 'reference'"
            )
        make_explainer(self.method, **params)  # validates the options now
        self.params = dict(params)
        self.reference: np.ndarray | None = None

    def fit_reference(self, frames: np.ndarray) -> None:
        """Normal training frames ``(n, H, W, C)`` uint8: the default baseline."""
        self.reference = np.asarray(frames)

    def explain(self, frames, prediction, *, video_id, frame_names, vocabulary, detector=None):
        from xeval.adapters.video.frame_view import frame_view
        from xeval.explainers.api import explain as explain_images

        if detector is None:
            raise InputError(f"video explainer {self.name!r} needs the detector")
        maps = []
        ref_cache: dict = {}
        for t in range(len(frames)):
            view = frame_view(detector, frames, t)
            size = tuple(view.input_size)
            x = frames_to_images(frames[t : t + 1], size)
            if self.reference is not None and size not in ref_cache:
                ref_cache[size] = frames_to_images(self.reference, size)
            maps.append(
                explain_images(
                    view,
                    Inputs(ids=[f"{video_id}/{frame_names[t]}"], category="", images=x),
                    self.method,
                    **({"reference": ref_cache[size]} if size in ref_cache else {}),
                    **self.params,
                )[0]
            )
        maps = np.stack(maps).astype(np.float32)
        scores = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)
        return VideoExplanation(maps=maps, scores=scores)

    def config(self) -> dict:
        return {"name": self.name, **self.params}


def _register_attributions() -> None:
    """One video explainer per image attribution method (not the controls and the
    native map, which have their own video forms above)."""
    from xeval.registry import EXPLAINERS

    for method in EXPLAINERS.names():
        if method in VIDEO_EXPLAINERS._entries:
            continue
        cls = EXPLAINERS.get(method)
        if getattr(cls, "control", False) or method == "native":
            continue
        VIDEO_EXPLAINERS.register(
            type(
                f"Frame_{method}",
                (FrameAttribution,),
                {"name": method, "method": method, "__doc__": FrameAttribution.__doc__},
            )
        )


_register_attributions()
