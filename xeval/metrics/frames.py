"""Frame-level video metrics and the traditional pixel-level criterion (UCSD).

Inputs of the functions: ``labels`` and ``scores`` are sequences with **one 1-D array
per video** (frames in display order; labels 0 = normal, 1 = anomalous; scores higher =
more anomalous). A single video is passed as ``[labels]``, ``[scores]``.

Definitions
-----------
- **frame AUROC** (higher is better): area under the ROC curve of the frame scores,
  ties counted 1/2 (``sklearn.metrics.roc_auc_score``).
- **frame AUPR** (higher is better): average precision ``sum_k (R_k - R_{k-1}) P_k``
  over the distinct thresholds (``sklearn.metrics.average_precision_score``),
  anomalous = positive.
- **frame EER** (lower is better): the equal error rate, where the ROC curve crosses
  ``FPR = 1 - TPR`` (false-positive rate = miss rate). The ROC curve is the polyline
  through its points at every distinct score (from (0, 0) to (1, 1), ties forming
  diagonal segments); the crossing is **linearly interpolated** on the segment where
  ``FPR + TPR - 1`` changes sign, so the EER is the FPR of that intersection point
  (computed from integer counts, exact up to one final rounding).

Averaging (``average``)
-----------------------
- ``"micro"``: all frames of all videos pooled into one ranking.
- ``"macro"``: the mean of the per-video values over the videos that contain both
  classes; the others are skipped with **one**
  :class:`~xeval.errors.UndefinedMetricWarning` that counts them ("3 of 12 videos
  skipped: one class only"); NaN (with a warning) when no video has both.
- ``sentinel=True`` (macro AUROC/AUPR only): the common published convention of
  appending one normal and one anomalous **sentinel frame** to every video, so that every
  video counts. The normal sentinel gets the video's minimum score and the anomalous one
  its maximum -- exactly what appending labels 0 and 1 with scores 0 and 1 after
  per-video min-max normalisation does. A video without anomalies then scores the
  fraction of its frames ranked below its own maximum (near 1), so the convention
  **inflates** the values; it is for reproducing published numbers, not for comparing
  methods.

Preprocessing (:func:`preprocess_frame_scores`; every step off by default, applied per
video in this order, and recorded in the registered metrics' notes):

1. ``drop_leading``: the first frames of every video are removed (labels too), e.g.
   the frames a frame-prediction model cannot predict;
2. ``sigma``: Gaussian smoothing along time (``scipy.ndimage.gaussian_filter1d``,
   ``mode="nearest"``, truncated at 4 sigma);
3. ``normalise``: per-video min-max normalisation to [0, 1]. **Optimistic**: it uses the
   test video's own statistics (its minimum and maximum), which a deployed detector
   does not know; a constant video becomes all zeros (with a warning).

Pixel-level criterion (Mahadevan, Li, Bhalodia & Vasconcelos 2010, "Anomaly detection
in crowded scenes", CVPR; UCSD Ped1/Ped2): at threshold ``t`` a pixel is flagged when
``map >= t``. An anomalous frame is **detected** when the flagged pixels cover at least
``coverage`` (40%) of its anomalous pixels (``flagged / mask pixels >= coverage`` in
float64); a normal frame with **any** flagged pixel is a **false positive**. TPR =
detected anomalous frames / anomalous frames, FPR = false-positive normal frames /
normal frames; the curve runs over every threshold, from (0, 0) to (1, 1), and its AUC
is the trapezoidal area. Computed from one number per frame: a normal frame is a false
positive exactly when ``t <=`` its map maximum, an anomalous frame is detected exactly
when ``t <=`` the ``k``-th largest map value inside its mask with ``k`` the smallest
count reaching the coverage (``ceil(coverage * mask pixels)``); one ROC over those
numbers is the curve. Anomalous frames must have a pixel mask: a frame labelled
anomalous whose mask is empty is an error. A frame labelled anomalous **without** pixel
ground truth (e.g. UCSD Ped1 test videos without masks in the original release) cannot be
scored by this criterion: leave it (or its video) out -- it is not a normal frame, and
an empty mask would make it undetectable; its frame-level label counts in the frame
metrics only.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn import metrics as skm

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics._validation import (
    check_map,
    check_mask,
    exact_mean,
    pow2_scale,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS

__all__ = [
    "frame_aupr",
    "frame_auroc",
    "frame_eer",
    "pixel_criterion_auc",
    "pixel_criterion_curve",
    "pixel_criterion_values",
    "preprocess_frame_scores",
]

AVERAGES = ("micro", "macro")


# ----------------------------------------------------------------------- validation
def _name(v: int, names) -> str:
    return f"video {v}" if names is None else f"video {names[v]!r}"


def _check_labels(y, where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == bool:
        return y
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise InputError(f"{where} must hold 0/1 labels, got dtype {y.dtype}")
    bad = (y != 0) & (y != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{where} must hold 0 (normal) or 1 (anomalous), found {y[i].item()!r} at frame {i} "
            f"(values {np.unique(y[bad])[:5].tolist()})"
        )
    return y != 0


def _check_scores(s, where: str) -> np.ndarray:
    s = np.asarray(s)
    if np.issubdtype(s.dtype, np.floating) and s.size and not np.isfinite(s).all():
        i = int(np.flatnonzero(~np.isfinite(s))[0])
        raise InputError(
            f"{where} holds a non-finite score at frame {i} ({s[i].item()!r}); frame scores "
            "must be finite"
        )
    return check_map(s, where).astype(np.float64, copy=False)


def _as_list(x, name: str) -> list:
    if isinstance(x, (str, bytes)) or not (
        isinstance(x, (Sequence, np.ndarray)) or hasattr(x, "__iter__")
    ):
        raise InputError(
            f"{name} must be a sequence with one 1-D array per video, got {type(x).__name__}"
        )
    return list(x)


def _videos(labels, scores, *, names=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate per-video labels and scores: ``[(labels bool, scores float64), ...]``."""
    ls, ss = _as_list(labels, "labels"), _as_list(scores, "scores")
    if len(ls) != len(ss):
        raise InputError(
            f"labels and scores must hold one array per video each, got {len(ls)} label "
            f"arrays and {len(ss)} score arrays"
        )
    if not ls:
        raise InputError("labels and scores are empty (no video): nothing to evaluate")
    out = []
    for v, (y, s) in enumerate(zip(ls, ss, strict=True)):
        y, s = np.asarray(y), np.asarray(s)
        for what, a in (("labels", y), ("scores", s)):
            if a.ndim != 1:
                hint = (
                    " (one array per video: pass [labels], [scores] for a single video)"
                    if a.ndim == 0
                    else ""
                )
                raise InputError(
                    f"{what}[{v}] ({_name(v, names)}) must be a 1-D array of per-frame "
                    f"values, got shape {a.shape}{hint}"
                )
        if y.shape != s.shape:
            raise InputError(
                f"{_name(v, names)}: labels has {y.size} frames but scores has {s.size}; "
                "expected one score per frame"
            )
        if y.size == 0:
            raise InputError(f"{_name(v, names)} has no frames (labels and scores are empty)")
        out.append(
            (
                _check_labels(y, f"labels of {_name(v, names)}"),
                _check_scores(s, f"scores of {_name(v, names)}"),
            )
        )
    return out


def _check_average(average, sentinel, *, allow_sentinel: bool = True) -> None:
    if average not in AVERAGES:
        raise InputError(f"average must be 'micro' or 'macro', got {average!r}")
    if not isinstance(sentinel, (bool, np.bool_)):
        raise InputError(f"sentinel must be True or False, got {sentinel!r}")
    if sentinel and not allow_sentinel:
        raise InputError("sentinel frames are defined for frame AUROC and AUPR only")
    if sentinel and average != "macro":
        raise InputError(
            "sentinel=True is a per-video convention: use it with average='macro' "
            "(pooled frames do not need sentinels)"
        )


def _check_options(sigma, normalise, drop_leading) -> tuple[float, bool, int]:
    if (
        isinstance(sigma, (bool, np.bool_))
        or not isinstance(sigma, numbers.Real)
        or not math.isfinite(float(sigma))
        or float(sigma) < 0
    ):
        raise InputError(f"sigma must be a finite number >= 0 (0 = no smoothing), got {sigma!r}")
    if not isinstance(normalise, (bool, np.bool_)):
        raise InputError(f"normalise must be True or False, got {normalise!r}")
    if (
        isinstance(drop_leading, (bool, np.bool_))
        or not isinstance(drop_leading, numbers.Integral)
        or drop_leading < 0
    ):
        raise InputError(f"drop_leading must be an integer >= 0, got {drop_leading!r}")
    return float(sigma), bool(normalise), int(drop_leading)


# -------------------------------------------------------------------- preprocessing
def _minmax(s: np.ndarray) -> np.ndarray:
    lo, hi = float(s.min()), float(s.max())
    with np.errstate(over="ignore"):
        width = hi - lo
    if math.isfinite(width):
        return (s - lo) / width
    return (s * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)  # range beyond float64


def _preprocess(videos, sigma: float, normalise: bool, drop_leading: int, *, names=None):
    """Preprocess validated ``(labels, scores)`` pairs; returns the new pairs."""
    out, constant = [], []
    for v, (y, s) in enumerate(videos):
        if drop_leading:
            if drop_leading >= y.size:
                raise InputError(
                    f"drop_leading={drop_leading} removes every frame of {_name(v, names)} "
                    f"({y.size} frames)"
                )
            y, s = y[drop_leading:], s[drop_leading:]
        if sigma > 0:
            c = float(pow2_scale(np.abs(s).max()))  # exact scaling: no overflow near 1e308
            s = gaussian_filter1d(s * c, sigma, mode="nearest") / c
        if normalise:
            if s.min() == s.max():
                constant.append(v if names is None else names[v])
                s = np.zeros_like(s)
            else:
                s = _minmax(s)
        out.append((y, s))
    if constant:
        shown = constant[:10] + (["..."] if len(constant) > 10 else [])
        warnings.warn(
            f"per-video min-max normalisation is undefined for {len(constant)} of "
            f"{len(out)} videos with constant scores ({shown}); their scores become 0",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    return out


def preprocess_frame_scores(
    labels, scores, *, sigma: float = 0.0, normalise: bool = False, drop_leading: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Preprocess per-video frame scores; returns ``(labels, scores)`` per video.

    In this order, per video: drop the first ``drop_leading`` frames (labels and scores),
    Gaussian smoothing along time with standard deviation ``sigma`` frames
    (``scipy.ndimage.gaussian_filter1d``, ``mode="nearest"``; 0 = off), per-video min-max
    normalisation to [0, 1] (``normalise``; **optimistic**: it uses the test video's own
    minimum and maximum; a constant video becomes all zeros with an
    :class:`~xeval.errors.UndefinedMetricWarning`). Everything is off by default (the
    scores are then returned as float64, the labels unchanged).

    Raises :class:`~xeval.errors.InputError` for invalid inputs or options, and when
    ``drop_leading`` removes every frame of a video.
    """
    sigma, normalise, drop_leading = _check_options(sigma, normalise, drop_leading)
    raw = [np.asarray(y) for y in _as_list(labels, "labels")]
    videos = _videos(raw, scores)
    done = _preprocess(videos, sigma, normalise, drop_leading)
    return [y[drop_leading:] for y in raw], [s for _, s in done]


# ------------------------------------------------------------------------ the metrics
def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (false positives, true positives) at each distinct score, in
    decreasing order of score, starting with (0, 0) (int64)."""
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order]
    ends = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
    tps = np.cumsum(ys, dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    return np.r_[0, fps], np.r_[0, tps]


def _eer(y: np.ndarray, s: np.ndarray) -> float:
    """Equal error rate (see the module docstring), from integer counts."""
    fps, tps = _counts(y, s)
    n_neg, n_pos = int(fps[-1]), int(tps[-1])
    # sign of FPR + TPR - 1, scaled by n_neg * n_pos: exact in integers, nondecreasing
    h = fps * n_pos + tps * n_neg - n_neg * n_pos
    i = int(np.searchsorted(h, 0, side="left"))  # h[0] = -n_neg*n_pos < 0 <= h[-1]
    f0, f1, h0, h1 = int(fps[i - 1]), int(fps[i]), int(h[i - 1]), int(h[i])
    # FPR at the crossing: (f0 + (-h0 / (h1 - h0)) * (f1 - f0)) / n_neg, one rounding
    return (f0 * (h1 - h0) - h0 * (f1 - f0)) / ((h1 - h0) * n_neg)


_KINDS = {
    "auroc": lambda y, s: float(skm.roc_auc_score(y, s)),
    "aupr": lambda y, s: float(skm.average_precision_score(y, s)),
    "eer": _eer,
}


@dataclass
class _Outcome:
    value: float
    n_videos: int
    n_used: int
    n_frames: int


def _with_sentinels(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[y, False, True], np.r_[s, s.min(), s.max()]


def _evaluate(kind: str, videos, average: str, sentinel: bool, name: str) -> _Outcome:
    fn = _KINDS[kind]
    n_frames = sum(y.size for y, _ in videos)
    if average == "micro":
        y = np.concatenate([y for y, _ in videos])
        s = np.concatenate([s for _, s in videos])
        if y.all() or not y.any():
            cls = "anomalous" if y.all() else "normal"
            value = undefined(name, f"all {y.size} frames are {cls} (one class only)")
            return _Outcome(value, len(videos), 0, n_frames)
        return _Outcome(fn(y, s), len(videos), len(videos), n_frames)
    values = []
    for y, s in videos:
        if sentinel:
            y, s = _with_sentinels(y, s)
        if y.any() and not y.all():
            values.append(fn(y, s))
    skipped = len(videos) - len(values)
    if not values:
        value = undefined(name, f"none of the {len(videos)} videos holds both classes")
        return _Outcome(value, len(videos), 0, n_frames)
    if skipped:
        warnings.warn(
            f"{name}: {skipped} of {len(videos)} videos skipped: one class only (the "
            f"macro average is over the {len(values)} videos with both classes)",
            UndefinedMetricWarning,
            stacklevel=4,
        )
    return _Outcome(exact_mean(values), len(videos), len(values), n_frames)


def _label(kind: str, average: str, sentinel: bool) -> str:
    if average == "micro":
        return f"frame_{kind}"
    return f"frame_{kind}[macro,sentinel]" if sentinel else f"frame_{kind}[macro]"


def frame_auroc(labels, scores, *, average: str = "micro", sentinel: bool = False) -> float:
    """Frame-level AUROC of per-video ``labels`` and ``scores`` (one 1-D array per
    video). **Higher is better.** ``average="micro"`` pools all frames (equal to
    ``sklearn.metrics.roc_auc_score`` on the concatenation); ``"macro"`` is the mean of
    the per-video AUROCs over the videos with both classes (the others are skipped with
    one warning that counts them); ``sentinel=True`` (macro only) appends a normal frame
    at each video's minimum score and an anomalous frame at its maximum (a published
    convention that inflates values; see the module docstring). NaN with an
    :class:`~xeval.errors.UndefinedMetricWarning` when no video (micro: the pooled
    frames) holds both classes."""
    _check_average(average, sentinel)
    return _evaluate(
        "auroc", _videos(labels, scores), average, sentinel, _label("auroc", average, sentinel)
    ).value


def frame_aupr(labels, scores, *, average: str = "micro", sentinel: bool = False) -> float:
    """Frame-level average precision (``sklearn.metrics.average_precision_score``,
    anomalous = positive) of per-video ``labels`` and ``scores``. **Higher is better.**
    ``average`` and ``sentinel`` as in :func:`frame_auroc`."""
    _check_average(average, sentinel)
    return _evaluate(
        "aupr", _videos(labels, scores), average, sentinel, _label("aupr", average, sentinel)
    ).value


def frame_eer(labels, scores, *, average: str = "micro") -> float:
    """Frame-level equal error rate of per-video ``labels`` and ``scores``: the FPR
    where the ROC polyline crosses ``FPR = 1 - TPR``, linearly interpolated between the
    two ROC points around the crossing. **Lower is better.** ``average`` as in
    :func:`frame_auroc` (macro: mean of per-video EERs over videos with both classes)."""
    _check_average(average, False)
    return _evaluate(
        "eer", _videos(labels, scores), average, False, _label("eer", average, False)
    ).value


# ----------------------------------------------------------- pixel-level criterion
def _check_coverage(coverage) -> float:
    if (
        isinstance(coverage, (bool, np.bool_))
        or not isinstance(coverage, numbers.Real)
        or not 0 < float(coverage) <= 1
    ):
        raise InputError(
            f"coverage must be a fraction in (0, 1] of a frame's anomalous pixels, got {coverage!r}"
        )
    return float(coverage)


def _needed(n: int, coverage: float) -> int:
    """The smallest ``k`` with ``k / n >= coverage`` (in float64), ``1 <= k <= n``."""
    k = max(1, math.ceil(coverage * n))
    if k > 1 and (k - 1) / n >= coverage:
        k -= 1
    if k / n < coverage:
        k += 1
    return min(k, n)


def _frame_value(label: bool, mask: np.ndarray, amap: np.ndarray, coverage: float, where: str):
    """The frame's number (see the module docstring)."""
    n = int(np.count_nonzero(mask))
    if label:
        if n == 0:
            raise InputError(
                f"{where} is labelled anomalous but its mask is empty: the pixel criterion "
                "needs the anomalous pixels of every anomalous frame (leave frames without "
                "pixel ground truth out)"
            )
        inside = amap[mask]
        k = _needed(n, coverage)
        return float(np.partition(inside, n - k)[n - k])
    if n:
        raise InputError(
            f"{where} is labelled normal but its mask has {n} anomalous pixels; labels and "
            "masks disagree"
        )
    return float(amap.max())


def pixel_criterion_values(labels, masks, maps, *, coverage: float = 0.4) -> np.ndarray:
    """One number per frame: a normal frame's map maximum, an anomalous frame's
    ``k``-th largest map value inside its mask (``k = ceil(coverage * mask pixels)``).
    At threshold ``t`` the frame is a false positive (normal) or detected (anomalous)
    exactly when its number is ``>= t``. ``labels`` (N,), ``masks`` and ``maps`` N
    2-D arrays of equal shapes (maps at the mask's size) or ``(N, H, W)`` arrays."""
    coverage = _check_coverage(coverage)
    y = _check_labels(np.asarray(labels), "labels")
    if y.ndim != 1:
        raise InputError(f"labels must be 1-D (one label per frame), got shape {y.shape}")
    if y.size == 0:
        raise InputError("labels, masks and maps are empty: nothing to evaluate")
    masks = list(masks) if not isinstance(masks, np.ndarray) or masks.ndim == 3 else [masks]
    maps = list(maps) if not isinstance(maps, np.ndarray) or maps.ndim == 3 else [maps]
    if not len(masks) == len(maps) == y.size:
        raise InputError(
            f"labels, masks and maps must hold one entry per frame, got {y.size} labels, "
            f"{len(masks)} masks and {len(maps)} maps"
        )
    out = np.empty(y.size)
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        m, a = np.asarray(m), np.asarray(a)
        if m.ndim != 2 or a.shape != m.shape:
            raise InputError(
                f"frame {i}: maps[{i}] has shape {a.shape} but masks[{i}] has shape "
                f"{m.shape}; expected 2-D arrays of equal shape (upsample maps to the "
                "mask's native size first: xeval.metrics.resize_to(map, mask.shape))"
            )
        if a.size == 0:
            raise InputError(f"frame {i}: masks[{i}] and maps[{i}] are empty (shape {a.shape})")
        out[i] = _frame_value(
            bool(y[i]),
            check_mask(m, f"masks[{i}]"),
            check_map(a, f"maps[{i}]"),
            coverage,
            f"frame {i}",
        )
    return out


def _criterion_curve(y: np.ndarray, v: np.ndarray, name: str):
    fps, tps = _counts(y, v)
    order = np.sort(np.unique(v))[::-1]
    thresholds = np.r_[np.inf, order]
    n_neg, n_pos = int(fps[-1]), int(tps[-1])
    if n_neg == 0 or n_pos == 0:
        undefined(name, "no normal frames" if n_neg == 0 else "no anomalous frames")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            fps / n_neg if n_neg else fps * np.nan,
            tps / n_pos if n_pos else tps * np.nan,
            thresholds,
        )


def pixel_criterion_curve(
    labels, masks, maps, *, coverage: float = 0.4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixel-level criterion's curve ``(fpr, tpr, thresholds)`` over every
    threshold (Mahadevan et al. 2010; see the module docstring): ``thresholds`` in
    decreasing order, the first ``+inf`` (the point (0, 0)), then every distinct frame
    number of :func:`pixel_criterion_values`; ``fpr[i]`` / ``tpr[i]`` are the rates at
    ``map >= thresholds[i]``. NaN rates (with a warning) when a class is absent."""
    y = np.asarray(labels)
    v = pixel_criterion_values(labels, masks, maps, coverage=coverage)
    return _criterion_curve(y != 0, v, "pixel_criterion_curve")


def pixel_criterion_auc(labels, masks, maps, *, coverage: float = 0.4) -> float:
    """Area under the pixel-level criterion's curve (trapezoid rule over
    :func:`pixel_criterion_curve`; equal to the ROC AUC of the frame numbers of
    :func:`pixel_criterion_values`). **Higher is better.** NaN with an
    :class:`~xeval.errors.UndefinedMetricWarning` when there are no normal or no
    anomalous frames."""
    y = np.asarray(labels)
    v = pixel_criterion_values(labels, masks, maps, coverage=coverage)
    return _criterion_auc(y != 0, v, "pixel_criterion_auc")[0]


def _criterion_auc(y: np.ndarray, v: np.ndarray, name: str):
    if y.all() or not y.any():
        why = "no normal frames" if y.all() else "no anomalous frames"
        return undefined(name, why), None
    fpr, tpr, _ = _criterion_curve(y, v, name)
    return float(np.trapezoid(tpr, fpr)), (fpr, tpr)


# ------------------------------------------------------------------ metric states
@dataclass
class FrameState:
    """Per video id, ``{frame index: (label, value)}``: the frame's score (frame
    metrics) or its pixel-criterion number (:func:`pixel_criterion_values`), and how the
    scores were obtained. Merging is a union; a frame present in both states is an
    error."""

    videos: dict = field(default_factory=dict)
    note: str = ""

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.videos.values())

    def merge(self, other: FrameState) -> FrameState:
        for vid, frames in other.videos.items():
            mine = self.videos.get(vid)
            if mine:
                common = mine.keys() & frames.keys()
                if common:
                    raise InputError(
                        f"merging frame states: both hold frame {min(common)} of video "
                        f"{vid!r} ({len(common)} shared frame(s)); merge the states of "
                        "disjoint sets of frames"
                    )
        videos = {vid: dict(frames) for vid, frames in self.videos.items()}
        for vid, frames in other.videos.items():
            videos.setdefault(vid, {}).update(frames)
        return FrameState(videos, self.note or other.note)

    def sorted_videos(self) -> list[tuple]:
        """``[(video id, frame indices, labels bool, values float64), ...]``, videos in
        the order of their ids, frames in frame-index order."""
        out = []
        for vid in sorted(self.videos, key=lambda k: (type(k).__name__, str(k))):
            frames = self.videos[vid]
            idx = np.fromiter(sorted(frames), dtype=np.int64, count=len(frames))
            rows = [frames[int(i)] for i in idx]
            y = np.fromiter((r[0] for r in rows), dtype=bool, count=len(rows))
            v = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            out.append((vid, idx, y, v))
        return out


def _video_frames(record, label: str) -> tuple[list, np.ndarray]:
    vids, fidx = record.inputs.video_ids, record.inputs.frame_index
    if vids is None or fidx is None:
        gone = [f"record.inputs.{n}" for n, v in (("video_ids", vids), ("frame_index", fidx))]
        gone = [g for g, v in zip(gone, (vids, fidx), strict=True) if v is None]
        verb = "are" if len(gone) > 1 else "is"
        raise InputError(
            f"metric {label!r} needs video records: {' and '.join(gone)} {verb} missing "
            f"(ids {list(record.ids[:3])}{' ...' if len(record) > 3 else ''}); frame metrics "
            "need each frame's video id and frame index"
        )
    f = np.asarray(fidx)
    if f.ndim != 1 or f.size != len(record):
        raise InputError(
            f"metric {label!r}: record.inputs.frame_index must hold one index per frame "
            f"({len(record)}), got shape {f.shape}"
        )
    if f.size and not (np.issubdtype(f.dtype, np.integer) or np.issubdtype(f.dtype, np.floating)):
        raise InputError(
            f"metric {label!r}: record.inputs.frame_index must hold integers, got dtype {f.dtype}"
        )
    bad = ~np.isfinite(f.astype(np.float64)) | (f < 0) | (f != np.round(f))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"metric {label!r}: record.inputs.frame_index[{i}] (sample {record.ids[i]!r}) is "
            f"{f[i].item()!r}; expected an integer frame index >= 0"
        )
    return list(vids), f.astype(np.int64)


def _add(state: FrameState, vids: list, frames: np.ndarray, y, values, label: str) -> None:
    """Insert the rows after checking that no frame is given twice (the state is left
    unchanged on error)."""
    seen = set()
    for vid, f in zip(vids, frames.tolist(), strict=True):
        if (vid, f) in seen or f in state.videos.get(vid, ()):
            raise InputError(
                f"metric {label!r}: frame {f} of video {vid!r} is given twice (each frame "
                "must be added to a metric state once)"
            )
        seen.add((vid, f))
    for vid, f, yi, vi in zip(vids, frames.tolist(), y.tolist(), values.tolist(), strict=True):
        state.videos.setdefault(vid, {})[f] = (bool(yi), float(vi))


def _fmt(x: float) -> str:
    return f"{x:g}"


class _FrameMetric(Metric):
    """Base of the frame-level metrics: they share one state of per-video frame scores
    (the preprocessing is applied at :meth:`compute`, so every option reads the same
    state)."""

    family = "video"
    needs = frozenset({"labels", "scores", "video"})
    kind = "auroc"

    def __init__(
        self,
        *,
        average: Literal["micro", "macro"] = "micro",
        sentinel: bool = False,
        sigma: float = 0.0,
        normalise: bool = False,
        drop_leading: int = 0,
    ) -> None:
        _check_average(average, sentinel)
        self.average = average
        self.sentinel = bool(sentinel)
        self.sigma, self.normalise, self.drop_leading = _check_options(
            sigma, normalise, drop_leading
        )

    @property
    def label(self) -> str:
        parts = []
        if self.average != "micro":
            parts.append(self.average)
        if getattr(self, "sentinel", False):
            parts.append("sentinel")
        if self.sigma:
            parts.append(f"sigma={_fmt(self.sigma)}")
        if self.normalise:
            parts.append("minmax")
        if self.drop_leading:
            parts.append(f"drop={self.drop_leading}")
        return self.name + (f"[{','.join(parts)}]" if parts else "")

    def shares(self):
        return ("video_frame_scores",)

    def init(self) -> FrameState:
        return FrameState()

    def update(self, state: FrameState, record, explanation) -> FrameState:
        check_aligned(record, explanation, self.label)
        vids, frames = _video_frames(record, self.label)
        y = _check_labels(np.asarray(record.targets.labels), f"metric {self.label!r}: labels")
        s = np.asarray(explanation.scores)
        if np.issubdtype(s.dtype, np.floating) and not np.isfinite(s).all():
            i = int(np.flatnonzero(~np.isfinite(s))[0])
            raise InputError(
                f"metric {self.label!r}: the score of frame {frames[i]} of video {vids[i]!r} "
                f"(sample {record.ids[i]!r}) is {s[i].item()!r}; frame scores must be finite"
            )
        s = check_map(s, f"metric {self.label!r}: scores").astype(np.float64)
        _add(state, vids, frames, y, s, self.label)
        state.note = state.note or explanation.score_note
        return state

    def merge(self, a: FrameState, b: FrameState) -> FrameState:
        return a.merge(b)

    def _videos_of(self, state: FrameState):
        rows = state.sorted_videos()
        if self.sigma > 0 or self.drop_leading > 0:
            for vid, idx, _, _ in rows:
                gap = np.flatnonzero(np.diff(idx) != 1)
                if gap.size:
                    raise InputError(
                        f"metric {self.label!r}: smoothing and dropping leading frames need "
                        f"consecutive frames, but video {vid!r} misses frame "
                        f"{int(idx[gap[0]]) + 1} (between frames {int(idx[gap[0]])} and "
                        f"{int(idx[gap[0] + 1])})"
                    )
        names = [r[0] for r in rows]
        videos = _preprocess(
            [(y, v) for _, _, y, v in rows],
            self.sigma,
            self.normalise,
            self.drop_leading,
            names=names,
        )
        return videos

    def _note(self, out: _Outcome, state: FrameState) -> str:
        if self.average == "micro":
            parts = [f"micro: {out.n_frames} frames of {out.n_videos} videos pooled"]
        elif self.sentinel:
            parts = [
                f"macro over {out.n_videos} videos with sentinel frames (a normal frame at "
                "each video's minimum score, an anomalous one at its maximum: a published "
                "convention that inflates values)"
            ]
        else:
            skipped = out.n_videos - out.n_used
            parts = [f"macro over {out.n_used} of {out.n_videos} videos"]
            if skipped:
                parts[0] += f" ({skipped} with one class skipped)"
        if self.drop_leading:
            parts.append(f"first {self.drop_leading} frames of every video dropped")
        if self.sigma:
            parts.append(f"smoothing sigma={_fmt(self.sigma)}")
        if self.normalise:
            parts.append("per-video min-max (optimistic: uses test statistics)")
        if state.note:
            parts.append(state.note)
        return "; ".join(parts)

    def compute(self, state: FrameState) -> MetricValue:
        if not state.n_frames:
            return MetricValue(value=undefined(self.label, "no frames"), n=0)
        videos = self._videos_of(state)
        out = _evaluate(self.kind, videos, self.average, self.sentinel, self.label)
        note = self._note(out, state)
        if not self.sentinel:  # micro and macro always side by side: the other in the note
            other = "macro" if self.average == "micro" else "micro"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                o = _evaluate(self.kind, videos, other, False, self.label)
            note = f"{note}; {other} = {_fmt(o.value)}"
        value = MetricValue(value=out.value, n=out.n_frames, note=note)
        if self.kind == "auroc" and self.average == "micro" and math.isfinite(out.value):
            y = np.concatenate([y for y, _ in videos])
            s = np.concatenate([s for _, s in videos])
            fpr, tpr, _ = skm.roc_curve(y, s)
            value.curves["frame_roc"] = (fpr, tpr)
        return value


@METRICS.register
class FrameAUROC(_FrameMetric):
    """Frame-level AUROC of a video detector's per-frame scores: area under the ROC
    curve (anomalous frames = positive, ties count 1/2, as
    ``sklearn.metrics.roc_auc_score``). ``average="micro"`` pools every frame of every
    video; ``"macro"`` is the mean of per-video AUROCs over the videos that contain both
    classes (the others are skipped and counted in the note); ``sentinel=True`` (macro)
    appends one normal frame at each video's minimum score and one anomalous frame at its
    maximum, the published convention that lets every video count (it inflates values).
    Preprocessing, off by default and recorded in the note: ``drop_leading`` frames per
    video, Gaussian smoothing ``sigma`` (frames), per-video min-max ``normalise``
    (optimistic: test statistics). **Higher is better.** Reference: Mahadevan et al.
    (2010), "Anomaly detection in crowded scenes", CVPR (frame-level criterion)."""

    name = "frame_auroc"
    higher_is_better = True
    headline = 1
    kind = "auroc"


@METRICS.register
class FrameAUPR(_FrameMetric):
    """Frame-level average precision of per-frame scores, ``sum_k (R_k - R_{k-1}) P_k``
    over the distinct thresholds (anomalous frames = positive, as
    ``sklearn.metrics.average_precision_score``), micro (pooled frames) or macro (mean
    over videos with both classes; ``sentinel=True`` as for ``frame_auroc``), with the
    same preprocessing options. **Higher is better.** Reference: Zhu (2004), "Recall,
    precision and average precision"; Sultani et al. (2018), CVPR (frame-level AP)."""

    name = "frame_aupr"
    higher_is_better = True
    kind = "aupr"


@METRICS.register
class FrameEER(_FrameMetric):
    """Frame-level equal error rate: the false-positive rate where the ROC polyline of
    the per-frame scores crosses ``FPR = 1 - TPR`` (miss rate = false-positive rate),
    linearly interpolated on the ROC segment where ``FPR + TPR - 1`` changes sign; micro
    (pooled frames) or macro (mean of per-video EERs over videos with both classes), with
    the same preprocessing options (no sentinel). **Lower is better.** Reference:
    Mahadevan et al. (2010), "Anomaly detection in crowded scenes", CVPR."""

    name = "frame_eer"
    higher_is_better = False
    kind = "eer"

    def __init__(
        self,
        *,
        average: Literal["micro", "macro"] = "micro",
        sigma: float = 0.0,
        normalise: bool = False,
        drop_leading: int = 0,
    ) -> None:
        _check_average(average, False)
        self.average = average
        self.sentinel = False
        self.sigma, self.normalise, self.drop_leading = _check_options(
            sigma, normalise, drop_leading
        )


@METRICS.register
class PixelCriterionAUC(Metric):
    """Area under the curve of the traditional pixel-level criterion on video frames:
    at threshold ``t`` (pixel flagged when ``map >= t``) an anomalous frame is detected
    when the flagged pixels cover at least ``coverage`` (40%) of its mask, and a normal
    frame with any flagged pixel is a false positive; TPR = detected anomalous frames /
    anomalous frames, FPR = false-positive normal frames / normal frames, over every
    threshold, trapezoidal area. Maps at the masks' native size; every anomalous frame
    needs a non-empty mask. **Higher is better.** Reference: Mahadevan, Li, Bhalodia &
    Vasconcelos (2010), "Anomaly detection in crowded scenes", CVPR (UCSD)."""

    name = "pixel_criterion_auc"
    higher_is_better = True
    family = "video"
    needs = frozenset({"labels", "masks", "video"})

    def __init__(self, *, coverage: float = 0.4) -> None:
        self.coverage = _check_coverage(coverage)

    @property
    def label(self) -> str:
        if self.coverage == 0.4:
            return self.name
        return f"{self.name}[coverage={_fmt(self.coverage)}]"

    def shares(self):
        return ("video_pixel_criterion", self.coverage)

    def init(self) -> FrameState:
        return FrameState()

    def update(self, state: FrameState, record, explanation) -> FrameState:
        check_aligned(record, explanation, self.label)
        vids, frames = _video_frames(record, self.label)
        masks = record.targets.masks
        if masks is None:
            raise InputError(
                f"metric {self.label!r} needs pixel masks: record.targets.masks is missing"
            )
        y = _check_labels(np.asarray(record.targets.labels), f"metric {self.label!r}: labels")
        values = np.empty(len(record))
        for i, (m, a) in enumerate(zip(masks, explanation.native, strict=True)):
            where = f"metric {self.label!r}: frame {frames[i]} of video {vids[i]!r}"
            a = np.asarray(a)
            if m is None:
                if y[i]:
                    raise InputError(
                        f"{where} is labelled anomalous but has no pixel mask; the pixel "
                        "criterion needs the mask of every anomalous frame (leave videos "
                        "without pixel ground truth out)"
                    )
                m = np.zeros(a.shape, bool)
            m = np.asarray(m)
            if m.ndim != 2 or a.shape != m.shape or a.size == 0:
                raise InputError(
                    f"{where}: the map has shape {a.shape} but the mask {m.shape}; expected "
                    "non-empty 2-D maps at the mask's native size"
                )
            values[i] = _frame_value(
                bool(y[i]),
                check_mask(m, f"{where}: mask"),
                check_map(a, f"{where}: map"),
                self.coverage,
                where,
            )
        _add(state, vids, frames, y, values, self.label)
        return state

    def merge(self, a: FrameState, b: FrameState) -> FrameState:
        return a.merge(b)

    def compute(self, state: FrameState) -> MetricValue:
        if not state.n_frames:
            return MetricValue(value=undefined(self.label, "no frames"), n=0)
        rows = state.sorted_videos()
        y = np.concatenate([r[2] for r in rows])
        v = np.concatenate([r[3] for r in rows])
        value, curve = _criterion_auc(y, v, self.label)
        note = (
            f"a frame is detected when >= {_fmt(self.coverage * 100)}% of its anomalous "
            "pixels are flagged, a normal frame with any flagged pixel is a false positive; "
            f"{int(y.sum())} anomalous and {int((~y).sum())} normal frames of {len(rows)} "
            "videos pooled"
        )
        out = MetricValue(value=value, n=int(y.size), note=note)
        if curve is not None:
            out.curves["pixel_criterion_roc"] = curve
        return out
