"""A frame-difference / background-deviation baseline video detector.

Per frame ``t`` (grey level ``g_t`` in ``[0, 1]``, the channel mean of the uint8 frame
divided by 255):

- ``mode="background"`` (default, a "reconstruction" baseline): ``|g_t - B|``, where the
  background ``B`` is the per-pixel **median** of (at most ``max_background_frames``
  evenly spaced) normal training frames -- the frame's error against a static
  reconstruction of the scene;
- ``mode="previous"``: ``|g_t - g_{t-1}|`` (temporal difference). **First frame**: it has
  no previous frame and is compared with the next one, ``|g_0 - g_1|`` (a one-frame
  video gets a zero map);
- ``mode="both"``: the pixel-wise maximum of the two.

The difference is block-averaged over ``stride x stride`` pixels (the working size is
``ceil(H / stride) x ceil(W / stride)``; the last block of a side that ``stride`` does not
divide averages the pixels it has) and smoothed by a Gaussian of ``sigma`` working
pixels (``sigma=0``: none). The map is then **normalised by statistics of normal
training frames**: ``map = (raw - mu) / sd`` with ``mu`` and ``sd`` the mean and
standard deviation of the raw frame scores of the training frames (``sd`` floored at
``1e-6``), so that scores are comparable across videos and datasets (1 = one standard
deviation above a typical normal frame). Frame score: the ``quantile`` of the returned
map (``quantile=1``: its maximum); since the normalisation is an increasing affine map,
the score is exactly that quantile of the map the detector returns.

No boxes (they come from the maps through :func:`xeval.metrics.regions_from_maps`) and
no reasons. Higher = more anomalous.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage

from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.registry import VIDEO_DETECTORS

__all__ = ["FrameDifference", "check_number", "check_video", "grey_frames"]

MODES = ("background", "previous", "both")


# ------------------------------------------------------------------------ shared checks
def check_video(frames: object, *, name: str = "frames") -> np.ndarray:
    """``frames`` as a ``(T, H, W, C)`` uint8 array with ``T >= 1`` and ``C`` in 1, 3
    (an :class:`~xeval.errors.InputError` naming ``name``, the shape or dtype
    otherwise)."""
    if not isinstance(frames, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array (T, H, W, C) uint8, got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] not in (1, 3):
        raise InputError(
            f"{name} must have shape (T, H, W, C) with T >= 1 and C = 1 or 3, got shape "
            f"{frames.shape}"
        )
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InputError(f"{name} must have frames of positive size, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 (0..255), got dtype {frames.dtype}")
    return frames


def check_videos(videos: object, *, name: str = "videos") -> list[np.ndarray]:
    """Training videos as a non-empty list of ``(T, H, W, C)`` uint8 arrays of one frame
    size and channel count."""
    if isinstance(videos, np.ndarray):
        raise InputError(
            f"{name} must be an iterable of videos (T, H, W, C), got one array of shape "
            f"{videos.shape}; wrap a single video in a list"
        )
    try:
        out = list(videos)  # type: ignore[call-overload]
    except TypeError:
        raise InputError(
            f"{name} must be an iterable of (T, H, W, C) uint8 videos, got {type(videos).__name__}"
        ) from None
    if not out:
        raise InputError(f"{name} is empty: fit needs at least one normal training video")
    for i, v in enumerate(out):
        check_video(v, name=f"{name}[{i}]")
        if v.shape[1:] != out[0].shape[1:]:
            raise InputError(
                f"{name}[{i}] has frames of shape {v.shape[1:]}, but {name}[0] has "
                f"{out[0].shape[1:]}: all training videos must have one frame size"
            )
    return out


def check_number(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float ``>= minimum`` (``> minimum`` with ``strict``); a bool
    is an error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        rel = ">" if strict else ">="
        raise InputError(f"{name} must be a finite number {rel} {minimum:g}, got {value!r}")
    return v


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def grey_frames(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, C)`` uint8 -> ``(T, H, W)`` float32 grey level in ``[0, 1]`` (the
    channel mean / 255)."""
    if frames.shape[3] == 1:
        return frames[..., 0].astype(np.float32) / np.float32(255.0)
    return frames.mean(axis=3, dtype=np.float32) / np.float32(255.0)


def block_mean(x: np.ndarray, stride: int) -> np.ndarray:
    """``(T, H, W)`` -> ``(T, ceil(H/s), ceil(W/s))`` means of ``s x s`` blocks (a partial
    last block averages the pixels it has)."""
    if stride == 1:
        return x
    t, h, w = x.shape
    hh, ww = -(-h // stride), -(-w // stride)
    ys = np.arange(0, h, stride)
    xs = np.arange(0, w, stride)
    s = np.add.reduceat(np.add.reduceat(x, ys, axis=1, dtype=np.float64), xs, axis=2)
    ny = np.diff(np.append(ys, h)).astype(np.float64)
    nx = np.diff(np.append(xs, w)).astype(np.float64)
    out = s / (ny[:, None] * nx[None, :])
    assert out.shape == (t, hh, ww)
    return out.astype(np.float32)


# ------------------------------------------------------------------------- detector
@VIDEO_DETECTORS.register
class FrameDifference(VideoDetector):
    """Frame-difference / background-deviation baseline (see the module docstring).

    Parameters
    ----------
    name:
        Identifier in result tables.
    mode:
        ``"background"`` (deviation from the per-pixel median of training frames),
        ``"previous"`` (difference to the previous frame) or ``"both"`` (their max).
    stride:
        Block size of the working map (1 = native resolution).
    sigma:
        Gaussian smoothing of the map in working pixels (0 = none).
    quantile:
        Frame score = this quantile of the map (1.0 = the maximum).
    max_background_frames:
        At most this many evenly spaced training frames form the median background (and
        the normalisation statistics).
    """

    name: ClassVar[str] = "frame_difference"

    def __init__(
        self,
        *,
        name: str = "frame_difference",
        mode: Literal["background", "previous", "both"] = "background",
        stride: int = 4,
        sigma: float = 1.0,
        quantile: float = 0.99,
        max_background_frames: int = 200,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InputError(f"name must be a non-empty string, got {name!r}")
        self.name = name  # type: ignore[misc]
        self.mode = check_choice(mode, "mode", MODES)
        self.stride = check_positive_int(stride, "stride")
        self.sigma = check_number(sigma, "sigma")
        q = check_number(quantile, "quantile")
        if q > 1:
            raise InputError(f"quantile must lie in [0, 1], got {quantile!r}")
        self.quantile = q
        self.max_background_frames = check_positive_int(
            max_background_frames, "max_background_frames"
        )
        self.background_: np.ndarray | None = None
        self.mu_: float = 0.0
        self.sd_: float = 1.0

    # -------------------------------------------------------------------- internals
    def _raw_maps(self, grey: np.ndarray) -> np.ndarray:
        """Un-normalised working maps ``(T, h, w)`` of one video's grey frames."""
        parts = []
        if self.mode in ("background", "both"):
            parts.append(np.abs(grey - self.background_))
        if self.mode in ("previous", "both"):
            d = np.zeros_like(grey)
            if len(grey) > 1:
                d[1:] = np.abs(np.diff(grey, axis=0))
                d[0] = d[1]  # first frame: compared with the next one, |g_0 - g_1|
            parts.append(d)
        diff = parts[0] if len(parts) == 1 else np.maximum(parts[0], parts[1])
        m = block_mean(diff, self.stride)
        if self.sigma > 0:
            m = ndimage.gaussian_filter(m, sigma=(0.0, self.sigma, self.sigma), mode="nearest")
        return m.astype(np.float32)

    def _frame_scores(self, maps: np.ndarray) -> np.ndarray:
        flat = maps.reshape(len(maps), -1).astype(np.float64)
        if self.quantile >= 1.0:
            return flat.max(axis=1)
        return np.quantile(flat, self.quantile, axis=1)

    # ------------------------------------------------------------------------ API
    def fit(self, videos: Iterable[np.ndarray]) -> FrameDifference:
        """Background = per-pixel median of at most ``max_background_frames`` evenly
        spaced training frames; ``mu``/``sd`` = mean / std of the raw frame scores of
        those frames."""
        vids = check_videos(videos)
        counts = np.array([len(v) for v in vids])
        total = int(counts.sum())
        pick = np.unique(np.linspace(0, total - 1, min(total, self.max_background_frames)))
        pick = pick.round().astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        frames = []
        scores = []
        for i, v in enumerate(vids):
            local = pick[(pick >= offsets[i]) & (pick < offsets[i + 1])] - offsets[i]
            if local.size:
                frames.append(grey_frames(v[local]))
        self.background_ = np.median(np.concatenate(frames), axis=0).astype(np.float32)
        for i, v in enumerate(vids):
            local = pick[(pick >= offsets[i]) & (pick < offsets[i + 1])] - offsets[i]
            if not local.size:
                continue
            if self.mode == "background":
                raw = self._raw_maps(grey_frames(v[local]))
            else:  # temporal differences need the neighbours of the chosen frames
                raw = self._raw_maps(grey_frames(v))[local]
            scores.append(self._frame_scores(raw))
        s = np.concatenate(scores)
        self.mu_ = float(s.mean())
        self.sd_ = float(max(s.std(), 1e-6))
        self.frame_shape_ = vids[0].shape[1:]
        return self

    def predict(self, frames: np.ndarray) -> VideoPrediction:
        """Normalised maps ``(T, ceil(H/stride), ceil(W/stride))`` and frame scores (the
        ``quantile`` of each map)."""
        if self.background_ is None:
            raise InputError(f"frame_difference {self.name!r}: call fit() before predict()")
        frames = check_video(frames)
        if frames.shape[1:3] != self.background_.shape:
            raise InputError(
                f"frames have size {frames.shape[1:3]} but detector {self.name!r} was fitted "
                f"on frames of size {self.background_.shape}"
            )
        maps = (self._raw_maps(grey_frames(frames)) - np.float32(self.mu_)) / np.float32(self.sd_)
        return VideoPrediction(scores=self._frame_scores(maps), maps=maps.astype(np.float32))

    def config(self) -> dict:
        return {
            "name": self.name,
            "kind": "frame_difference",
            "mode": self.mode,
            "stride": self.stride,
            "sigma": self.sigma,
            "quantile": self.quantile,
            "max_background_frames": self.max_background_frames,
        }
