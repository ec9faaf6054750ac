"""Video detectors from clip models and from image detectors.

:class:`ClipAdapter` wraps a pre-trained ``torch.nn.Module`` that takes clips
``(B, T, C, H, W)`` float32 in ``[0, 1]``:

- ``target="all"`` -- a **reconstruction** model returning a reconstruction of the same
  clip ``(B, T, C, H, W)``. Windows of ``clip_length`` frames start every ``stride``
  frames (``stride <= clip_length``; plus one window ending at the last frame, so that
  every frame is covered);
  a frame's error map is the **mean** over the windows that cover it of the
  channel-mean squared error ``mean_c (x_hat - x)^2``.
- ``target="next"`` -- a **frame-prediction** model mapping ``clip_length`` frames to a
  prediction of the next one, ``(B, C, H, W)`` (or ``(B, 1, C, H, W)``). Predicted
  frames are ``clip_length, clip_length + stride, ...`` and the last frame; a frame's
  error map is ``mean_c (x_hat - x)^2`` of its prediction. **Convention** (every frame
  must have a score): a frame without its own prediction repeats the map and score of
  the nearest earlier predicted frame; the first ``clip_length`` frames, which have no
  earlier one, repeat the **first predicted frame** (frame ``clip_length``).

Frame score (higher = more anomalous): the ``reduction`` (``"mean"``, default, or
``"max"``) of the frame's error map; with ``"mean"`` it is the frame's mean squared
error, a decreasing function of the PSNR frame-prediction papers report
(``PSNR = 10 log10(1 / MSE)``; Liu et al. 2018, "Future frame prediction for anomaly
detection"). No per-video min-max normalisation (it uses test statistics). Maps are at
the working size ``input_size`` (default: the native frame size).

:class:`FrameByFrame` applies an xeval image :class:`~xeval.adapters.base.Detector`
to every frame (frames become ``(B, C, H, W)`` float32 in ``[0, 1]`` at the detector's
``input_size``, bilinear, antialiased when shrinking); it is registered as the video
detector kind ``frame_by_frame``, whose ``detector``/``params`` build the image detector
from :data:`xeval.registry.DETECTORS` like an image recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xeval.adapters.base import Detector
from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.adapters.video.frame_difference import check_choice, check_video, check_videos
from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.registry import VIDEO_DETECTORS

__all__ = ["ClipAdapter", "FrameByFrame", "frames_to_tensor"]


def frames_to_tensor(frames: np.ndarray, size: tuple[int, int] | None) -> torch.Tensor:
    """``(T, H, W, C)`` uint8 -> ``(T, C, h, w)`` float32 in ``[0, 1]`` at ``size`` (None:
    native; bilinear, antialiased when shrinking)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(
            x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink
        )
    return x.contiguous()


def _check_size(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in value)
        or min(value) < 1
    ):
        raise InputError(f"{name} must be None, a positive int or (H, W), got {value!r}")
    return int(value[0]), int(value[1])


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


class ClipAdapter(VideoDetector):
    """A clip model (reconstruction or frame prediction) as a video detector (module
    docstring).

    Parameters
    ----------
    module:
        The pre-trained model; moved to ``device`` and put in eval mode. Input: clips
        ``(B, clip_length, C, H, W)`` float32 in ``[0, 1]``.
    clip_length:
        Frames per input clip.
    target:
        ``"all"`` (reconstruction of the clip) or ``"next"`` (prediction of the next
        frame).
    stride:
        Step between consecutive windows (frames).
    batch_size:
        Windows per forward pass.
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    input_size:
        ``(H, W)`` the frames are resized to (None: native size).
    reduction:
        Frame score from the error map: ``"mean"`` (MSE) or ``"max"``.
    name:
        Identifier in result tables.

    :meth:`fit` does nothing (the model is pre-trained) but check the training videos'
    frame size.
    """

    name: ClassVar[str] = "clip"

    def __init__(
        self,
        module: nn.Module,
        *,
        clip_length: int,
        target: Literal["all", "next"] = "all",
        stride: int = 1,
        batch_size: int = 8,
        device: str = "cpu",
        input_size: tuple[int, int] | None = None,
        reduction: Literal["mean", "max"] = "mean",
        name: str = "clip",
    ) -> None:
        if not isinstance(module, nn.Module):
            raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name:
            raise InputError(f"name must be a non-empty string, got {name!r}")
        self.name = name  # type: ignore[misc]
        self.clip_length = check_positive_int(clip_length, "clip_length")
        self.target = check_choice(target, "target", ("all", "next"))
        self.stride = check_positive_int(stride, "stride")
        if self.target == "all" and self.stride > self.clip_length:
            raise InputError(
                f"stride={self.stride} > clip_length={self.clip_length} with target='all' "
                "would leave frames between windows without a reconstruction; use "
                "stride <= clip_length"
            )
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.reduction = check_choice(reduction, "reduction", ("mean", "max"))
        self.input_size = _check_size(input_size, "input_size")
        if not isinstance(device, str):
            raise InputError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
        try:
            self._device = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device={device!r} requested but CUDA is not available")
        self.device = device
        self.module = module.to(self._device).eval()

    # ------------------------------------------------------------------ planning
    def _plan(self, n: int) -> tuple[list[int], np.ndarray]:
        """Window starts, and (``"next"``) the predicted frame each frame takes its map
        from (``"all"``: unused)."""
        length = self.clip_length
        if self.target == "all":
            if n < length:
                raise InputError(
                    f"clip detector {self.name!r}: the video has {n} frames, fewer than "
                    f"clip_length={length}"
                )
            starts = list(range(0, n - length + 1, self.stride))
            if starts[-1] != n - length:
                starts.append(n - length)
            return starts, np.arange(n)
        if n <= length:
            raise InputError(
                f"clip detector {self.name!r}: the video has {n} frames; predicting the next "
                f"frame needs more than clip_length={length}"
            )
        predicted = list(range(length, n, self.stride))
        if predicted[-1] != n - 1:
            predicted.append(n - 1)
        pred = np.asarray(predicted)
        source = pred[np.maximum(np.searchsorted(pred, np.arange(n), side="right") - 1, 0)]
        return [p - length for p in predicted], source

    def _run(self, clips: torch.Tensor) -> torch.Tensor:
        """Module output for clips ``(B, L, C, h, w)``, checked: ``(B, L, C, h, w)`` for
        ``"all"``, ``(B, C, h, w)`` for ``"next"``."""
        out = self.module(clips)
        b, length, c, h, w = clips.shape
        want = (b, length, c, h, w) if self.target == "all" else (b, c, h, w)
        if self.target == "next" and isinstance(out, torch.Tensor) and out.ndim == 5:
            if out.shape[1] == 1:
                out = out[:, 0]
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            what = "a reconstruction of the clip" if self.target == "all" else "the next frame"
            raise InputError(
                f"clip detector {self.name!r} (target={self.target!r}): the module returned "
                f"{_describe(out)} for clips of shape {tuple(clips.shape)}; expected {what} "
                f"of shape {want}"
            )
        if not bool(torch.isfinite(out.detach()).all()):
            raise InputError(
                f"clip detector {self.name!r}: the module returned non-finite values for "
                f"clips of shape {tuple(clips.shape)}"
            )
        return out

    def _reduce(self, maps: torch.Tensor) -> torch.Tensor:
        flat = maps.flatten(1)
        return flat.mean(1) if self.reduction == "mean" else flat.amax(1)

    def _tensor(self, frames: np.ndarray) -> torch.Tensor:
        return frames_to_tensor(check_video(frames), self.input_size).to(self._device)

    # ----------------------------------------------------------------------- API
    def fit(self, videos: Iterable[np.ndarray]) -> ClipAdapter:
        """Nothing to fit (a pre-trained model); checks the videos."""
        check_videos(videos)
        return self

    def predict(self, frames: np.ndarray) -> VideoPrediction:
        """Error maps ``(T, h, w)`` and frame scores (module docstring); no boxes."""
        x = self._tensor(frames)
        n = x.shape[0]
        starts, source = self._plan(n)
        length = self.clip_length
        h, w = x.shape[-2:]
        total = torch.zeros((n, h, w), dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        self.module.eval()
        with torch.no_grad():
            for i in range(0, len(starts), self.batch_size):
                group = starts[i : i + self.batch_size]
                clips = torch.stack([x[s : s + length] for s in group])
                out = self._run(clips)
                if self.target == "all":
                    err = ((out - clips) ** 2).mean(2).to("cpu", torch.float64)
                    for j, s in enumerate(group):
                        total[s : s + length] += err[j]
                        count[s : s + length] += 1
                else:
                    tgt = torch.stack([x[s + length] for s in group])
                    err = ((out - tgt) ** 2).mean(1).to("cpu", torch.float64)
                    for j, s in enumerate(group):
                        total[s + length] = err[j]
                        count[s + length] = 1
        if self.target == "all":
            maps = total / count[:, None, None]
        else:
            maps = total[torch.as_tensor(source)]
        maps32 = maps.to(torch.float32)
        scores = self._reduce(maps32.to(torch.float64))  # exactly the map's mean / max
        return VideoPrediction(scores=scores.numpy(), maps=maps32.numpy())

    # ---------------------------------------------------------- one frame (frame_view)
    def frame_outputs(
        self, context: torch.Tensor, t: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame ``t``'s score ``(B,)`` and map ``(B, h, w)`` when the frame is replaced
        by each candidate of ``x`` ``(B, C, h, w)`` in ``context`` ``(T, C, h, w)`` (the
        working-size frames, :func:`frames_to_tensor`); differentiable in ``x``. Equal
        to :meth:`predict`'s frame ``t`` at ``x = context[t]`` (up to float rounding):
        ``"all"`` averages the windows covering ``t``; ``"next"`` evaluates the
        prediction frame ``t`` takes its map from (itself, or by the convention of the
        module docstring an earlier or the first predicted frame, which depends on ``x``
        only when ``t`` lies in its input window)."""
        n = context.shape[0]
        starts, source = self._plan(n)
        length = self.clip_length
        b = x.shape[0]
        x = x.to(self._device, torch.float32)
        ctx = context.to(self._device, torch.float32)

        def with_x(s: int) -> torch.Tensor:
            """Clips ``(B, L, C, h, w)`` of window ``[s, s + L)`` with frame t = x."""
            base = ctx[s : s + length].unsqueeze(0).expand(b, *ctx[s : s + length].shape)
            if not s <= t < s + length:
                return base
            k = t - s
            return torch.cat([base[:, :k], x[:, None], base[:, k + 1 :]], dim=1)

        if self.target == "all":
            cover = [s for s in starts if s <= t < s + length]
            maps = []
            for s in cover:
                clips = with_x(s)
                out = self._run(clips)
                maps.append(((out[:, t - s] - clips[:, t - s]) ** 2).mean(1))
            m = torch.stack(maps).mean(0)
        else:
            p = int(source[t])
            clips = with_x(p - length)
            out = self._run(clips)
            tgt = x if p == t else ctx[p].unsqueeze(0).expand(b, *ctx[p].shape)
            m = ((out - tgt) ** 2).mean(1)
        return self._reduce(m), m

    def config(self) -> dict:
        return {
            "name": self.name,
            "kind": "clip",
            "module": type(self.module).__name__,
            "clip_length": self.clip_length,
            "target": self.target,
            "stride": self.stride,
            "input_size": self.input_size,
            "reduction": self.reduction,
        }


class _Batches:
    """Re-iterable ``(B, C, h, w)`` float32 batches of the frames of several videos."""

    def __init__(self, videos: list[np.ndarray], size: tuple[int, int], batch_size: int):
        self.videos, self.size, self.batch_size = videos, size, batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for v in self.videos:
            for i in range(0, len(v), self.batch_size):
                yield frames_to_tensor(v[i : i + self.batch_size], self.size).numpy()


@VIDEO_DETECTORS.register
class FrameByFrame(VideoDetector):
    """An image detector applied to every frame (module docstring).

    Parameters
    ----------
    detector:
        An xeval image :class:`~xeval.adapters.base.Detector` (anything with ``fit``,
        ``predict``, ``input_size``), or the name of a detector kind of
        :data:`xeval.registry.DETECTORS` (e.g. ``"patch_features"``) built with
        ``params``.
    params:
        Options of the detector kind (only with a kind name).
    name:
        Identifier in result tables (default: the image detector's name).
    batch_size:
        Frames per call of the image detector.

    Frame score = the image detector's score; map = its map (at its own resolution).
    """

    name: ClassVar[str] = "frame_by_frame"

    def __init__(
        self,
        detector: Any,
        *,
        params: dict[str, Any] | None = None,
        name: str | None = None,
        batch_size: int = 32,
    ) -> None:
        if isinstance(detector, str):
            from xeval.adapters.registry import build_detector

            if params is not None and not isinstance(params, Mapping):
                raise InputError(f"params must be a mapping of options, got {params!r}")
            recipe = {"kind": detector, "name": name or detector, "params": dict(params or {})}
            detector = build_detector(recipe)
        else:
            if params is not None:
                raise InputError(
                    "params are the options of a detector kind given by name; with a "
                    f"detector object ({type(detector).__name__}) pass no params"
                )
            missing = [a for a in ("fit", "predict", "input_size") if not hasattr(detector, a)]
            if missing:
                raise InputError(
                    "detector must be an xeval image Detector (fit, predict, input_size) or "
                    f"a detector kind name, got {type(detector).__name__} without {missing}"
                )
        if name is not None and (not isinstance(name, str) or not name):
            raise InputError(f"name must be None or a non-empty string, got {name!r}")
        self.detector: Detector = detector
        self.name = name or getattr(detector, "name", "frame_by_frame")  # type: ignore[misc]
        self.batch_size = check_positive_int(batch_size, "batch_size")

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.detector.input_size)  # type: ignore[return-value]

    def images(self, frames: np.ndarray) -> np.ndarray:
        """The frames as the image detector sees them: ``(T, C, h, w)`` float32."""
        return frames_to_tensor(check_video(frames), self.input_size).numpy()

    def fit(self, videos: Iterable[np.ndarray]) -> FrameByFrame:
        """Fit the image detector on every frame of the normal training videos."""
        vids = check_videos(videos)
        self.detector.fit(_Batches(vids, self.input_size, self.batch_size))
        return self

    def predict(self, frames: np.ndarray) -> VideoPrediction:
        """The image detector's scores and maps, frame by frame."""
        frames = check_video(frames)
        scores, maps = [], []
        for i in range(0, len(frames), self.batch_size):
            x = frames_to_tensor(frames[i : i + self.batch_size], self.input_size).numpy()
            s, m = self.detector.predict(x)
            scores.append(np.asarray(s, dtype=np.float64).reshape(-1))
            maps.append(np.asarray(m, dtype=np.float32))
        return VideoPrediction(scores=np.concatenate(scores), maps=np.concatenate(maps))

    def config(self) -> dict:
        inner: Callable[[], dict] | None = getattr(self.detector, "config", None)
        return {
            "name": self.name,
            "kind": "frame_by_frame",
            "detector": inner() if callable(inner) else type(self.detector).__name__,
        }
