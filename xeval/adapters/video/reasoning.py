"""An interpretable reasoning video detector (X-MAN / AI-VAD style).

After Reiss & Hoshen, "Attribute-based representations for accurate and interpretable
video anomaly detection" (AI-VAD, 2022) and Szymanowicz et al., "X-MAN: explaining
multiple sources of anomalies in video" (2021): objects are described by a few
human-readable attributes, each attribute gets a density fitted on normal training
video, and an object's deviation in each attribute is a score for one **reason**.

Pipeline (every step deterministic):

1. **Objects** by background subtraction: background ``B`` = per-pixel, per-channel
   median of (at most ``max_background_frames`` evenly spaced) normal training frames;
   foreground = ``max_c |frame - B| > threshold`` (``threshold`` in ``[0, 1]`` units of
   255 grey levels; ``None``: ``median + 6 * 1.4826 * MAD`` of the training pixels'
   deviations, at least 0.03); a ``3 x 3`` binary opening then closing per frame (on an
   edge-replicated copy, so that objects at the frame border keep their border pixels);
   objects = 8-connected components of at least ``min_area`` pixels, with their bounding
   boxes (continuous pixel coordinates, ``x2 = last column + 1``). Alternatively the
   user gives the objects as boxes (``fit(..., boxes=)`` and ``predict(..., boxes=)``,
   rows ``(frame, x1, y1, x2, y2)``): an object is then the pixels its box overlaps.
2. **Tracking**: each object is matched one-to-one to an object of the previous frame by
   centroid distance (Hungarian assignment); pairs farther than ``max_match_distance``
   pixels are not matched. The **step** of a matched object (its displacement from the
   previous frame) is the centroid's for a rigid object (both boxes inside the frame,
   width and height changed by at most one pixel), otherwise, per axis, the
   displacement of the box edge that moved least, edges touching the frame border left
   out: a partly visible object's centroid moves at a fraction of its speed, and a blob
   that merges with, splits from or crosses another one jumps one edge or moves its
   edges against each other. **Velocity** = mean step and **speed** = median step
   length over the object's track window (``smooth`` frames back and forth along its
   track; ``smooth=0``: its own step, and a track's first object takes the step to its
   next-frame match). An object whose window holds no step (a track of one frame) has
   an unknown velocity: its speed, direction and stillness scores are 0 (no evidence).
   The windows look ahead: the detector sees the whole video (offline).
3. **Attributes** per object (groups, each with its reason):

   - **speed**: ``log(1 + |v|)`` (pixels / frame), one-sided -> ("action", "too fast");
   - **direction**: ``(a cx / W, a cy / H, v_x / |v|, v_y / |v|)`` of moving objects,
     ``a = direction_location_weight`` (the direction where the object is: with ``a =
     2`` half the frame away weighs as much as a right-angle turn) -> ("action",
     "wrong direction");
   - **stillness**: length (frames) of the still run (``|v| < still_speed``) the object
     is in, one-sided -> ("action", "loitering");
   - **appearance**: standardised mean colour, grey std, fill ratio (area / box area),
     ``log(box w / box h)``, each the median over the track window -> ("object",
     "unusual object");
   - **size**: standardised ``log(area)``, median over the track window -> ("object",
     "unusual size");
   - **location**: centroid ``(cx / W, cy / H)`` -> ("location", "forbidden location").

   The stillness run is offline (the detector sees the whole video): every frame of a
   stop carries the stop's full length.
4. **Densities** fitted on the normal training videos: for the multi-dimensional groups
   the deviation is the mean Euclidean distance to the ``k`` nearest training objects (a
   bank of at most ``max_bank`` training objects, seeded subsample); for speed and
   stillness the value itself (one-sided: only *more* is anomalous).
5. **Calibration** (so that attributes are comparable): each deviation ``d`` becomes
   ``max(0, (d - q50) / (q99 - q50))`` with ``q50``, ``q99`` the median and 99th percentile
   of the same deviation over the training objects (their kNN distances computed
   **without the objects of their own track**; the denominator floored per attribute):
   0 = as typical as the median normal object, 1 = as unusual as the 1 % most unusual.
6. **Frame outputs**: reason score = max over the frame's objects of that attribute's
   calibrated score (0 without objects); object anomaly = ``combine`` (``"max"`` or
   ``"sum"``) of its attribute scores; frame score = max over its objects (0 without
   objects); map = each object's pixels painted with its anomaly score (max where
   objects overlap), **exactly 0 elsewhere** (no smoothing, no epsilon), block-maxed to
   ``ceil(H / stride) x ceil(W / stride)``; boxes = object boxes with their anomaly
   scores.

Known limitations (seen on the built-in ``synthetic_video`` benchmark): objects whose
blobs merge (crossing pedestrians) are one object while they overlap, so a runner inside
a merged blob takes the blob's speed; merged blobs in the training video widen the size
density, so an agent of twice the normal size scores only moderately on size and is
often explained by another attribute; a vehicle is larger than a pedestrian, so
"unusual object" and "unusual size" are confused with each other.

Reasons: the detector's own reasons are the list above; :meth:`set_vocabulary` maps
them onto a dataset's vocabulary by exact ``(coarse, fine)`` match. Vocabulary reasons it
has no attribute for get score 0 (listed in :attr:`ReasoningDetector.unscored_reasons_`
and warned about); ``reason_names`` is the vocabulary's order. Higher = more anomalous.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.adapters.video.frame_difference import (
    check_choice,
    check_number,
    check_video,
    check_videos,
)
from xeval.checks import check_positive_int
from xeval.errors import InputError
from xeval.registry import VIDEO_DETECTORS

__all__ = ["ATTRIBUTES", "INTERNAL_REASONS", "ReasoningDetector"]

ATTRIBUTES = ("speed", "direction", "stillness", "appearance", "size", "location")
"""Attribute groups, in the order of :data:`INTERNAL_REASONS`."""

INTERNAL_REASONS: tuple[tuple[str, str], ...] = (
    ("action", "too fast"),
    ("action", "wrong direction"),
    ("action", "loitering"),
    ("object", "unusual object"),
    ("object", "unusual size"),
    ("location", "forbidden location"),
)
"""The reasons the detector scores, one per attribute group (:data:`ATTRIBUTES`)."""

#: Floors of the calibration denominators (q99 - q50), per attribute group.
_SCALE_FLOOR = {
    "speed": 0.1,
    "direction": 0.1,
    "stillness": 1.0,
    "appearance": 0.1,
    "size": 0.1,
    "location": 0.02,
}
_KNN = ("direction", "appearance", "size", "location")
_CHUNK = 64
_S2 = np.zeros((3, 3, 3), dtype=bool)
_S2[1] = True  # 3 x 3 in each frame, nothing across frames


def _box_step(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Displacement ``(dx, dy)`` from boxes ``a`` to boxes ``b``, robust to segmentation
    events: per axis the displacement of the box edge that moved **least** (the lower
    edge on ties), leaving out an edge that touches the frame border in either box (a
    partly visible object's centroid moves at a fraction of its speed); NaN when both
    edges touch it. A rigid object moves both edges alike; a blob that merges with,
    splits from or crosses another object moves one edge by a jump or the two edges
    against each other, which this rule does not mistake for speed or for standing
    still."""
    h, w = shape
    out = np.empty((len(a), 2))
    for axis, size in ((0, w), (1, h)):
        lo_ok = (a[:, axis] > 0) & (b[:, axis] > 0)
        hi_ok = (a[:, axis + 2] < size) & (b[:, axis + 2] < size)
        d_lo = b[:, axis] - a[:, axis]
        d_hi = b[:, axis + 2] - a[:, axis + 2]
        take_hi = hi_ok & (~lo_ok | (np.abs(d_hi) < np.abs(d_lo)))
        out[:, axis] = np.where(take_hi, d_hi, np.where(lo_ok, d_lo, np.nan))
    return out


def _step(obj: _Objects, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Displacement from objects ``i`` to objects ``j`` (the next frame): the centroid's
    for a rigid object (both boxes inside the frame, width and height changed by at most
    one pixel: sub-pixel accurate), else :func:`_box_step`."""
    a, b = obj.box[i], obj.box[j]
    h, w = obj.shape
    inside = (
        (a[:, 0] > 0)
        & (b[:, 0] > 0)
        & (a[:, 1] > 0)
        & (b[:, 1] > 0)
        & (a[:, 2] < w)
        & (b[:, 2] < w)
        & (a[:, 3] < h)
        & (b[:, 3] < h)
    )
    rigid = (
        inside
        & (np.abs((b[:, 2] - b[:, 0]) - (a[:, 2] - a[:, 0])) <= 1)
        & (np.abs((b[:, 3] - b[:, 1]) - (a[:, 3] - a[:, 1])) <= 1)
    )
    return np.where(rigid[:, None], obj.centroid[j] - obj.centroid[i], _box_step(a, b, obj.shape))


def _track_window(prev: np.ndarray, nxt: np.ndarray, r: int) -> np.ndarray:
    """``(n, 2 r + 1)`` indices of each object's track neighbours ``r`` frames back and
    forth (itself first; -1 where the track does not reach)."""
    cols = [np.arange(len(prev))]
    back = fwd = cols[0]
    for _ in range(r):
        back = np.where(back >= 0, prev[np.maximum(back, 0)], -1)
        fwd = np.where(fwd >= 0, nxt[np.maximum(fwd, 0)], -1)
        cols += [back, fwd]
    return np.stack(cols, axis=1)


def _window_median(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Per-column median of ``x`` rows over each object's track window."""
    w = x[np.maximum(win, 0)].astype(np.float64)  # (n, k, d)
    w[win < 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(w, axis=1)


def _check_boxes(boxes: object, shape: tuple[int, ...], *, name: str = "boxes") -> np.ndarray:
    """User boxes as a float64 ``(n, 5)`` array ``(frame, x1, y1, x2, y2)`` sorted by
    frame; errors name the row and what is wrong."""
    t_all, h, w = shape[:3]
    try:
        b = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an (n, 5) array of (frame, x1, y1, x2, y2)") from None
    if b.size == 0:
        return np.zeros((0, 5))
    if b.ndim != 2 or b.shape[1] != 5:
        raise InputError(
            f"{name} must be an (n, 5) array of rows (frame, x1, y1, x2, y2), got shape {b.shape}"
        )
    bad = ~np.all(np.isfinite(b), axis=1)
    checks = [
        (bad, "non-finite values"),
        ((b[:, 0] != np.round(b[:, 0])) | (b[:, 0] < 0) | (b[:, 0] >= t_all),
         f"a frame outside 0..{t_all - 1} (or not an integer)"),
        ((b[:, 1] < 0) | (b[:, 2] < 0) | (b[:, 3] > w) | (b[:, 4] > h),
         f"a box outside the {w} x {h} frame"),
        ((b[:, 3] <= b[:, 1]) | (b[:, 4] <= b[:, 2]), "x2 <= x1 or y2 <= y1"),
    ]  # fmt: skip
    for mask, what in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise InputError(f"{name}: row {i} {tuple(b[i].tolist())} has {what}")
    return b[np.argsort(b[:, 0], kind="stable")]


def _box_pixels(boxes: np.ndarray, start: int, shape: tuple[int, int]):
    """Pixels covered by user boxes ``(frame, x1, y1, x2, y2)`` (pixel ``(y, x)`` is
    covered when the box overlaps ``[x, x + 1) x [y, y + 1)``), as
    :meth:`ReasoningDetector._components` gives them; None without boxes."""
    if len(boxes) == 0:
        return None
    h, w = shape
    tt, yy, xx, ids = [], [], [], []
    for k, (t, x1, y1, x2, y2) in enumerate(boxes):
        ys = np.arange(int(np.floor(y1)), min(int(np.ceil(y2)), h))
        xs = np.arange(int(np.floor(x1)), min(int(np.ceil(x2)), w))
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        tt.append(np.full(gy.size, int(t) - start))
        yy.append(gy.ravel())
        xx.append(gx.ravel())
        ids.append(np.full(gy.size, k))
    return (
        np.concatenate(tt),
        np.concatenate(yy),
        np.concatenate(xx),
        np.concatenate(ids),
        boxes[:, 1:5].astype(np.float64),
        boxes[:, 0].astype(np.int64) - start,
    )


def _pixel_stats(chunk, tt, yy, xx, ids, b, f, start: int, offset: int) -> dict:
    """Per-object area, centroid, appearance and pixel lists from the objects' pixels
    ``(tt, yy, xx)`` with 0-based ids ``ids`` (boxes ``b``, chunk frames ``f``)."""
    n, c = len(b), chunk.shape[3]
    a = np.bincount(ids, minlength=n).astype(np.float64)
    cx = np.bincount(ids, weights=xx + 0.5, minlength=n) / a
    cy = np.bincount(ids, weights=yy + 0.5, minlength=n) / a
    vals = chunk[tt, yy, xx].astype(np.float64) / 255.0  # (npix, C)
    means = np.stack([np.bincount(ids, weights=vals[:, j], minlength=n) / a for j in range(c)], 1)
    grey = vals.mean(axis=1)
    g1 = np.bincount(ids, weights=grey, minlength=n) / a
    g2 = np.bincount(ids, weights=grey**2, minlength=n) / a
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    app = np.column_stack(
        [means, np.sqrt(np.maximum(g2 - g1**2, 0)), a / (bw * bh), np.log(bw / bh)]
    )
    return {
        "frame": f + start,
        "box": b,
        "area": a,
        "centroid": np.column_stack([cx, cy]),
        "appearance": app,
        "pix_t": tt + start,
        "pix_yx": np.column_stack([yy, xx]),
        "pix_obj": ids + offset,
    }


class _Objects:
    """Objects of one video: per object arrays, plus its foreground pixels."""

    def __init__(self, n_frames: int, shape: tuple[int, int]) -> None:
        self.n_frames = n_frames
        self.shape = shape
        self.frame = np.zeros(0, np.int64)
        self.box = np.zeros((0, 4))
        self.area = np.zeros(0)
        self.centroid = np.zeros((0, 2))  # (cx, cy)
        self.appearance = np.zeros((0, 0))
        self.pix_t = np.zeros(0, np.int64)
        self.pix_yx = np.zeros((0, 2), np.int64)
        self.pix_obj = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.frame)


def _knn_mean(
    queries: np.ndarray,
    bank: np.ndarray,
    k: int,
    *,
    q_group: np.ndarray | None = None,
    b_group: np.ndarray | None = None,
) -> np.ndarray:
    """Mean Euclidean distance of each query to its ``k`` nearest bank rows (bank rows of
    the query's own group excluded when groups are given)."""
    out = np.zeros(len(queries))
    if len(queries) == 0:
        return out
    bsq = (bank**2).sum(1)
    for i in range(0, len(queries), 1024):
        q = queries[i : i + 1024]
        d2 = (q**2).sum(1)[:, None] - 2.0 * q @ bank.T + bsq[None, :]
        d2 = np.maximum(d2, 0.0)
        if q_group is not None:
            d2[q_group[i : i + 1024, None] == b_group[None, :]] = np.inf
        kk = min(k, d2.shape[1])
        part = np.partition(d2, kk - 1, axis=1)[:, :kk]
        d = np.sqrt(part)
        finite = np.isfinite(d)
        cnt = finite.sum(1)
        out[i : i + 1024] = np.where(cnt > 0, np.where(finite, d, 0).sum(1) / np.maximum(cnt, 1), 0)
    return out


@VIDEO_DETECTORS.register
class ReasoningDetector(VideoDetector):
    """Interpretable attribute-based detector with reason scores (module docstring).

    Parameters
    ----------
    name:
        Identifier in result tables.
    threshold:
        Foreground threshold on ``max_c |frame - background|`` in ``[0, 1]``; None = from
        the training pixels (module docstring).
    min_area:
        Smallest object (pixels); smaller components are noise.
    max_match_distance:
        Tracking gate (pixels / frame); None = a quarter of the longer frame side.
    still_speed:
        Speed (pixels / frame) below which an object counts as still.
    direction_location_weight:
        Weight ``a`` of the location in the direction attribute (0: direction alone,
        the same everywhere in the frame).
    k:
        Neighbours of the kNN densities.
    max_bank:
        At most this many training objects in each kNN bank (and in the calibration).
    combine:
        ``"max"`` or ``"sum"`` of an object's calibrated attribute scores.
    stride:
        Block size of the returned maps (1 = native resolution).
    max_background_frames:
        Training frames (evenly spaced) that form the median background.
    smooth:
        Track window half-width (frames) of the velocity, speed, appearance and size
        medians (0 = per frame).
    seed:
        Seed of the bank subsampling.
    """

    name: ClassVar[str] = "reasoning"
    gives_reasons: ClassVar[bool] = True

    def __init__(
        self,
        *,
        name: str = "reasoning",
        threshold: float | None = None,
        min_area: int = 6,
        max_match_distance: float | None = None,
        still_speed: float = 0.5,
        direction_location_weight: float = 2.0,
        k: int = 5,
        max_bank: int = 4096,
        combine: Literal["max", "sum"] = "max",
        stride: int = 1,
        max_background_frames: int = 200,
        smooth: int = 2,
        seed: int = 0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InputError(f"name must be a non-empty string, got {name!r}")
        self.name = name  # type: ignore[misc]
        if threshold is not None:
            threshold = check_number(threshold, "threshold", strict=True)
            if threshold >= 1:
                raise InputError(f"threshold must lie in (0, 1), got {threshold!r}")
        self.threshold = threshold
        self.min_area = check_positive_int(min_area, "min_area")
        if max_match_distance is not None:
            max_match_distance = check_number(max_match_distance, "max_match_distance", strict=True)
        self.max_match_distance = max_match_distance
        self.still_speed = check_number(still_speed, "still_speed", strict=True)
        self.direction_location_weight = check_number(
            direction_location_weight, "direction_location_weight"
        )
        self.k = check_positive_int(k, "k")
        self.max_bank = check_positive_int(max_bank, "max_bank")
        self.combine = check_choice(combine, "combine", ("max", "sum"))
        self.stride = check_positive_int(stride, "stride")
        self.max_background_frames = check_positive_int(
            max_background_frames, "max_background_frames"
        )
        self.smooth = check_positive_int(smooth, "smooth", minimum=0)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.background_: np.ndarray | None = None
        self.reason_names_: tuple[tuple[str, str], ...] = INTERNAL_REASONS
        self._columns = np.arange(len(INTERNAL_REASONS))
        self.unscored_reasons_: tuple[tuple[str, str], ...] = ()
        self.objects_: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------- objects
    def _foreground(self, frames: np.ndarray) -> np.ndarray:
        dev = np.abs(frames.astype(np.float32) / np.float32(255.0) - self.background_)
        out = np.ascontiguousarray(dev[..., 0])
        for c in range(1, dev.shape[3]):  # faster than max(axis=3) over a short last axis
            np.maximum(out, dev[..., c], out=out)
        return out

    def _extract(self, frames: np.ndarray, boxes: np.ndarray | None = None) -> _Objects:
        """The objects of one video: foreground components, or the given ``boxes``."""
        t_all, h, w, c = frames.shape
        parts = []
        n_before = 0
        for s in range(0, t_all, _CHUNK):
            chunk = frames[s : s + _CHUNK]
            if boxes is None:
                part = self._components(chunk)
            else:
                sel = (boxes[:, 0] >= s) & (boxes[:, 0] < s + len(chunk))
                part = _box_pixels(boxes[sel], s, (h, w))
            if part is None:
                continue
            tt, yy, xx, ids, b, f = part
            parts.append(_pixel_stats(chunk, tt, yy, xx, ids, b, f, s, n_before))
            n_before += len(b)
        obj = _Objects(t_all, (h, w))
        if parts:
            for key in (
                "frame", "box", "area", "centroid", "appearance", "pix_t", "pix_yx", "pix_obj"
            ):  # fmt: skip
                setattr(obj, key, np.concatenate([q[key] for q in parts]))
        else:
            obj.appearance = np.zeros((0, c + 3))
        return obj

    def _components(self, chunk: np.ndarray):
        """Foreground components of a chunk of frames: pixels ``(t, y, x)`` with their
        object ids (0-based, in frame order), boxes and frames (chunk-relative), or
        None without objects."""
        fg = self._foreground(chunk) > self.threshold_
        # morphology on an edge-replicated copy: objects at the frame border keep their
        # border pixels (zero padding would erode them away)
        fg = np.pad(fg, ((0, 0), (1, 1), (1, 1)), mode="edge")
        fg = ndimage.binary_opening(fg, structure=_S2)
        fg = ndimage.binary_closing(fg, structure=_S2)[:, 1:-1, 1:-1]
        lab, n = ndimage.label(fg, structure=_S2)
        if n == 0:
            return None
        tt, yy, xx = np.nonzero(lab)
        ids = lab[tt, yy, xx]
        keep = np.bincount(ids, minlength=n + 1)[1:] >= self.min_area
        if not keep.any():
            return None
        new_id = np.full(n + 1, -1, np.int64)
        new_id[1:][keep] = np.arange(int(keep.sum()))
        slices = ndimage.find_objects(lab)
        sl = [slices[i] for i in np.flatnonzero(keep)]
        b = np.array([[q[2].start, q[1].start, q[2].stop, q[1].stop] for q in sl], float)
        f = np.array([q[0].start for q in sl], np.int64)
        ok = new_id[ids] >= 0
        return tt[ok], yy[ok], xx[ok], new_id[ids][ok], b, f

    def _track(self, obj: _Objects) -> dict[str, np.ndarray]:
        """Previous/next matches, track ids, velocity and still-run length per object."""
        n = len(obj)
        prev = np.full(n, -1, np.int64)
        nxt = np.full(n, -1, np.int64)
        starts = np.searchsorted(obj.frame, np.arange(obj.n_frames + 1))
        gate = self.gate_
        for t in range(1, obj.n_frames):
            a0, a1, b1 = starts[t - 1], starts[t], starts[t + 1]
            if a1 == a0 or b1 == a1:
                continue
            d = np.linalg.norm(obj.centroid[a1:b1, None, :] - obj.centroid[None, a0:a1, :], axis=2)
            cost = np.where(d <= gate, d, 1e12)
            r, q = linear_sum_assignment(cost)
            ok = d[r, q] <= gate
            prev[a1 + r[ok]] = a0 + q[ok]
            nxt[a0 + q[ok]] = a1 + r[ok]
        track = np.empty(n, np.int64)
        for i in range(n):
            track[i] = track[prev[i]] if prev[i] >= 0 else i
        step = np.full((n, 2), np.nan)
        has_p = prev >= 0
        step[has_p] = _step(obj, prev[has_p], np.flatnonzero(has_p))
        if self.smooth == 0:  # a track's first object: the step to the next one
            has_n = (~has_p) & (nxt >= 0)
            step[has_n] = _step(obj, np.flatnonzero(has_n), nxt[has_n])
        win = _track_window(prev, nxt, self.smooth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
            ws = step[np.maximum(win, 0)]
            ws[win < 0] = np.nan
            vel = np.nanmean(ws, axis=1)
            speed = np.nanmedian(np.linalg.norm(ws, axis=2), axis=1)
        still = speed < self.still_speed  # NaN compares False: unknown is not still
        dwell = np.zeros(n)
        for i in range(n):  # objects are in frame order
            if still[i]:
                dwell[i] = (dwell[prev[i]] if prev[i] >= 0 else 0.0) + 1.0
        run = dwell.copy()
        for i in range(n - 1, -1, -1):
            j = nxt[i]
            if still[i] and j >= 0 and still[j]:
                run[i] = run[j]
        return {"track": track, "velocity": vel, "speed": speed, "run": run, "window": win}

    def _features(self, obj: _Objects, tr: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw attribute features per group (rows NaN where undefined)."""
        h, w = obj.shape
        loc = obj.centroid / np.array([w, h], float)
        speed = tr["speed"]
        norm = np.linalg.norm(tr["velocity"], axis=1)
        moving = np.isfinite(speed) & (speed >= self.still_speed) & (norm > 0)
        unit = np.full((len(obj), 2), np.nan)
        unit[moving] = tr["velocity"][moving] / norm[moving, None]
        run = np.where(np.isfinite(speed), tr["run"], np.nan)
        win = tr["window"]
        return {
            "speed": np.log1p(speed)[:, None],
            "direction": np.column_stack([self.direction_location_weight * loc, unit]),
            "stillness": run[:, None],
            "appearance": _window_median(obj.appearance, win),
            "size": _window_median(np.log(obj.area)[:, None], win),
            "location": loc,
        }

    # ------------------------------------------------------------------- scoring
    def _deviation(
        self, group: str, x: np.ndarray, *, q_group: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw deviation per row (NaN where the feature is undefined)."""
        out = np.full(len(x), np.nan)
        ok = np.all(np.isfinite(x), axis=1)
        if group not in _KNN:
            out[ok] = x[ok, 0]
            return out
        bank = self.banks_[group]
        if bank["x"].shape[0] == 0:
            out[ok] = 0.0
            return out
        z = (x[ok] - bank["mean"]) / bank["std"]
        if q_group is None:
            out[ok] = _knn_mean(z, bank["z"], self.k)
        else:
            out[ok] = _knn_mean(z, bank["z"], self.k, q_group=q_group[ok], b_group=bank["group"])
        return out

    def _calibrated(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        """``(n_objects, n_attributes)`` calibrated scores (0 where undefined)."""
        n = len(next(iter(feats.values())))
        out = np.zeros((n, len(ATTRIBUTES)))
        for j, g in enumerate(ATTRIBUTES):
            d = self._deviation(g, feats[g])
            q50, scale = self.calibration_[g]
            s = np.maximum(0.0, (d - q50) / scale)
            out[:, j] = np.where(np.isfinite(s), s, 0.0)
        return out

    # ----------------------------------------------------------------------- API
    def fit(
        self, videos: Iterable[np.ndarray], *, boxes: Sequence[np.ndarray] | None = None
    ) -> ReasoningDetector:
        """Background, foreground threshold, attribute banks and calibration from normal
        training videos ``(T, H, W, C)`` uint8. ``boxes``: the objects of each training
        video as user boxes (one array of rows ``(frame, x1, y1, x2, y2)`` per video)
        instead of the foreground components; then :meth:`predict` needs boxes too."""
        vids = check_videos(videos)
        if boxes is not None:
            if isinstance(boxes, np.ndarray) or not isinstance(boxes, Sequence):
                raise InputError(
                    "boxes must be a list with one (n, 5) array of rows (frame, x1, y1, "
                    f"x2, y2) per training video, got {type(boxes).__name__}"
                )
            if len(boxes) != len(vids):
                raise InputError(f"boxes holds {len(boxes)} arrays for {len(vids)} training videos")
            boxes = [
                _check_boxes(b, v.shape, name=f"boxes[{i}]")
                for i, (b, v) in enumerate(zip(boxes, vids, strict=True))
            ]
        self.object_source_ = "foreground" if boxes is None else "boxes"
        counts = np.array([len(v) for v in vids])
        total = int(counts.sum())
        pick = np.unique(
            np.linspace(0, total - 1, min(total, self.max_background_frames)).round()
        ).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        sample = np.concatenate(
            [
                v[pick[(pick >= offsets[i]) & (pick < offsets[i + 1])] - offsets[i]]
                for i, v in enumerate(vids)
            ]
        )
        self.background_ = (np.median(sample, axis=0) / 255.0).astype(np.float32)
        h, w = sample.shape[1:3]
        self.frame_shape_ = vids[0].shape[1:]
        if self.threshold is None:
            dev = self._foreground(sample).ravel()
            med = float(np.median(dev))
            mad = float(np.median(np.abs(dev - med)))
            self.threshold_ = max(0.03, med + 6.0 * 1.4826 * mad)
        else:
            self.threshold_ = float(self.threshold)
        self.gate_ = (
            float(self.max_match_distance)
            if self.max_match_distance is not None
            else 0.25 * max(h, w)
        )
        feats: dict[str, list[np.ndarray]] = {g: [] for g in ATTRIBUTES}
        groups = []
        for i, v in enumerate(vids):
            obj = self._extract(v, None if boxes is None else boxes[i])
            tr = self._track(obj)
            for g, f in self._features(obj, tr).items():
                feats[g].append(f)
            groups.append(tr["track"] + i * (1 << 32))
        allf = {g: np.concatenate(f) for g, f in feats.items()}
        group = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        self.n_train_objects_ = len(group)
        if not len(group):
            warnings.warn(
                f"reasoning detector {self.name!r} found no objects in the training videos "
                f"(foreground threshold {self.threshold_:.3g}, min_area {self.min_area}): "
                "its densities are empty and every test object will look anomalous",
                stacklevel=2,
            )
        rng = np.random.default_rng(self.seed)
        self.banks_ = {}
        self.calibration_ = {}
        for g in ATTRIBUTES:
            x = allf[g]
            ok = np.flatnonzero(np.all(np.isfinite(x), axis=1))
            if g in _KNN:
                sel = (
                    ok
                    if len(ok) <= self.max_bank
                    else np.sort(rng.choice(ok, self.max_bank, replace=False))
                )
                xb = x[sel]
                mean = xb.mean(0) if len(xb) else np.zeros(x.shape[1])
                std = xb.std(0) if len(xb) else np.ones(x.shape[1])
                std = np.where(std > 1e-6, std, 1.0)
                if g in ("direction", "location"):  # already in meaningful frame units
                    mean, std = np.zeros_like(mean), np.ones_like(std)
                self.banks_[g] = {
                    "x": xb,
                    "z": (xb - mean) / std,
                    "mean": mean,
                    "std": std,
                    "group": group[sel],
                }
            cal = (
                ok
                if len(ok) <= self.max_bank
                else np.sort(rng.choice(ok, self.max_bank, replace=False))
            )
            d = self._deviation(g, x[cal], q_group=group[cal] if g in _KNN else None)
            d = d[np.isfinite(d)]
            if d.size:
                q50, q99 = np.quantile(d, [0.5, 0.99])
            else:
                q50 = q99 = 0.0
            self.calibration_[g] = (float(q50), float(max(q99 - q50, _SCALE_FLOOR[g])))
        return self

    def set_vocabulary(self, vocabulary) -> None:
        """Map the detector's reasons onto ``vocabulary`` (a
        :class:`~xeval.data.video.base.ReasonVocabulary`, a sequence of ``(coarse,
        fine)`` pairs, or None for the detector's own list) by exact name match; reasons
        of the vocabulary without an attribute get score 0 and are warned about."""
        if vocabulary is None:
            names = INTERNAL_REASONS
        else:
            fine = getattr(vocabulary, "fine", vocabulary)
            if isinstance(fine, (str, bytes)) or not isinstance(fine, Sequence):
                raise InputError(
                    "vocabulary must be a ReasonVocabulary or a sequence of (coarse, fine) "
                    f"pairs, got {type(vocabulary).__name__}"
                )
            names = []
            for r in fine:
                if (
                    not isinstance(r, (tuple, list))
                    or len(r) != 2
                    or not all(isinstance(p, str) for p in r)
                ):
                    raise InputError(
                        f"vocabulary entries must be (coarse, fine) string pairs, got {r!r}"
                    )
                names.append((r[0], r[1]))
            names = tuple(names)
        cols = np.array(
            [INTERNAL_REASONS.index(r) if r in INTERNAL_REASONS else -1 for r in names],
            np.int64,
        )
        self.reason_names_ = names
        self._columns = cols
        self.unscored_reasons_ = tuple(r for r, c in zip(names, cols, strict=True) if c < 0)
        if self.unscored_reasons_:
            warnings.warn(
                f"reasoning detector {self.name!r} has no attribute for the reasons "
                f"{list(self.unscored_reasons_)}: their scores are 0 (it scores "
                f"{list(INTERNAL_REASONS)})",
                stacklevel=2,
            )

    def predict(self, frames: np.ndarray, *, boxes: np.ndarray | None = None) -> VideoPrediction:
        """Frame scores, object maps and boxes, reason scores (module docstring); the
        objects of the last call (frame, box, track, attribute scores) are kept in
        :attr:`objects_`. ``boxes``: the video's objects as user boxes, rows ``(frame,
        x1, y1, x2, y2)`` (required when the detector was fitted with boxes, refused
        otherwise: the attribute densities depend on where objects come from)."""
        if self.background_ is None:
            raise InputError(f"reasoning detector {self.name!r}: call fit() before predict()")
        frames = check_video(frames)
        if frames.shape[1:] != self.frame_shape_:
            raise InputError(
                f"frames have shape (H, W, C) = {frames.shape[1:]} but reasoning detector "
                f"{self.name!r} was fitted on {self.frame_shape_}"
            )
        if (boxes is None) != (self.object_source_ == "foreground"):
            raise InputError(
                f"reasoning detector {self.name!r} was fitted on objects from "
                f"{'user boxes' if self.object_source_ == 'boxes' else 'its own foreground'}"
                f"; predict needs {'boxes' if self.object_source_ == 'boxes' else 'no boxes'} "
                "(attribute densities depend on where the objects come from)"
            )
        if boxes is not None:
            boxes = _check_boxes(boxes, frames.shape)
        t_all, h, w = frames.shape[:3]
        obj = self._extract(frames, boxes)
        tr = self._track(obj)
        att = self._calibrated(self._features(obj, tr))
        anomaly = att.max(axis=1) if self.combine == "max" else att.sum(axis=1)
        if len(obj) == 0:
            anomaly = np.zeros(0)
        scores = np.zeros(t_all)
        np.maximum.at(scores, obj.frame, anomaly)
        own = np.zeros((t_all, len(ATTRIBUTES)))
        np.maximum.at(own, obj.frame, att)
        reasons = np.zeros((t_all, len(self.reason_names_)))
        scored = self._columns >= 0
        reasons[:, scored] = own[:, self._columns[scored]]
        s = self.stride
        hh, ww = -(-h // s), -(-w // s)
        maps = np.zeros(t_all * hh * ww, np.float32)
        if len(obj):
            cell = (obj.pix_t * hh + obj.pix_yx[:, 0] // s) * ww + obj.pix_yx[:, 1] // s
            np.maximum.at(maps, cell, anomaly[obj.pix_obj].astype(np.float32))
        boxes = np.column_stack([obj.frame.astype(float), obj.box, anomaly]).reshape(-1, 6)
        self.objects_ = {
            "frame": obj.frame,
            "box": obj.box,
            "track": tr["track"],
            "speed": tr["speed"],
            "attribute_scores": att,
            "anomaly": anomaly,
        }
        return VideoPrediction(
            scores=scores,
            maps=maps.reshape(t_all, hh, ww),
            boxes=boxes,
            reasons=reasons,
            reason_names=tuple(self.reason_names_),
        )

    def config(self) -> dict:
        return {
            "name": self.name,
            "kind": "reasoning",
            "threshold": self.threshold,
            "min_area": self.min_area,
            "max_match_distance": self.max_match_distance,
            "still_speed": self.still_speed,
            "direction_location_weight": self.direction_location_weight,
            "k": self.k,
            "max_bank": self.max_bank,
            "combine": self.combine,
            "stride": self.stride,
            "max_background_frames": self.max_background_frames,
            "smooth": self.smooth,
            "seed": self.seed,
        }
