"""Region- and track-based detection criteria RBDC and TBDC for video anomaly detection.

Reference: Ramachandra & Jones (2020), "Street Scene: A new dataset and evaluation
protocol for video anomaly detection", WACV. Written from the definition below (no
published script was copied or consulted).

Inputs
------
``gt_regions``: rows ``(frame, track_id, x1, y1, x2, y2)`` -- the ground-truth boxes of
anomalous tracks; ``detections``: rows ``(frame, x1, y1, x2, y2, score)``. Boxes are
continuous pixel coordinates (``x1 <= x2``, ``y1 <= y2``, area ``(x2-x1) * (y2-y1)``);
frames are integers identifying frames of the whole test set (the caller makes them
unique across videos) and track ids identify tracks (unique across the set).
``n_frames`` is the number of frames of the test set (frames without any region or
detection count too).

Definition (``matching="any"``, the paper's)
--------------------------------------------
For each distinct detection score ``t`` (detections with ``score >= t`` are kept):

- a GT region is **detected** when some kept detection of its frame has IoU >= ``beta``
  with it (one detection may detect several regions);
- a kept detection whose IoU with every GT region of its frame is < ``beta`` is a
  **false positive** (so is every detection in a frame without regions);
- ``FPR(t)`` = false positives / ``n_frames`` (false positives per frame; it can exceed 1);
- ``RBDR(t)`` = detected regions / all regions;
- a **track** is detected when at least ``alpha`` of its regions are: ``count >= alpha *
  length`` with ``length`` its number of regions. Evaluated as ``count / length >=
  alpha`` in float64: that is the same inequality, and it keeps the decimal meaning of
  ``alpha`` (``alpha = 0.07`` and 7 regions of 100 is a detection, while ``0.07 * 100``
  rounds to ``7.000000000000001`` in float64 and the product form would refuse it);
- ``TBDR(t)`` = detected tracks / all tracks.

The curve starts at (0, 0) and takes the points ``(FPR(t), rate(t))`` in order of
decreasing ``t``; it is extended flat to ``fpr_max`` when it stops short, integrated with
the trapezoid rule up to ``fpr_max`` (the value there linearly interpolated between the
two points around it) and divided by ``fpr_max``. RBDC and TBDC lie in [0, 1]; **higher
is better**.

IoU is ``inter / union`` (``union = area_a + area_b - inter``), 0 when the union is 0. A
GT region of zero area could never be detected and is refused.

``matching="greedy"`` (one-to-one)
----------------------------------
Some published code matches detections to regions one to one, as object-detection
benchmarks do. Here: at a threshold, the candidate pairs (a kept detection and a region
of its frame with IoU >= ``beta``) are taken in order of decreasing detection score, then
decreasing IoU, then detection row, then region row; a pair is accepted when neither its
detection nor its region is already matched. A region is detected when it is matched.
**A kept detection that is not matched is a false positive** -- also when it overlaps a
region by >= ``beta`` that another (higher-scored) detection took: under a one-to-one
convention a duplicate detection of an already detected region is a false alarm (the
PASCAL VOC rule), otherwise a method could add duplicates at no cost and the convention
would change only the detection rate. Differences to ``"any"``: a detection detects at
most one region (two regions overlapped by one box count once), and duplicates count as
false positives; so at every threshold greedy FPR >= "any" FPR and greedy rates <=
"any" rates (tested), and greedy values are usually lower. Greedy is also not an optimal
assignment (a high-scored box can take a region that a lower-scored box was the only
match for).

Computation (all thresholds from one sort)
------------------------------------------
The candidate pairs (same frame, IoU >= ``beta``) are found once, vectorised, by sorting
the regions by frame and expanding each detection against its frame's group. With "any"
matching, region ``r`` is detected for every ``t <= s_r`` = the largest score of its
candidate detections, and a detection is a false positive for every ``t <= score`` iff it
has no candidate; a track is detected for every ``t <=`` the ``k``-th largest ``s_r`` of
its regions (``k`` = the smallest count with ``k / length >= alpha``). Counts at all
thresholds then come from one ``searchsorted`` and a cumulative sum: ``O((D + P + R)
log(D + P + R))`` for ``D`` detections, ``R`` regions and ``P`` (detection, region)
pairs sharing a frame. Greedy matching processed in score order is *prefix-consistent*:
the matching at threshold ``t`` is the restriction of the full greedy matching to the
detections kept at ``t``, because a detection's assignment depends only on higher-ranked
pairs. So one sort of the candidate pairs and one sequential pass give every threshold:
``O(P log P)`` plus an ``O(P)`` Python-level pass over the candidate pairs.

Detections from maps
--------------------
:func:`regions_from_maps` turns anomaly maps into detections: the connected components
of ``map >= threshold``, each a box over its pixel extent ``[x_min, x_max + 1) x [y_min,
y_max + 1)`` scored by the component's largest map value. The registered metrics use it
(threshold = a quantile of normal validation pixels) when an explainer gives maps but no
boxes.

Undefined: no GT region at all -> NaN with an :class:`~xeval.errors.UndefinedMetricWarning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from xeval.errors import InputError
from xeval.metrics._validation import at_least, check_map, undefined
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS

__all__ = [
    "rbdc",
    "rbdc_curve",
    "regions_from_maps",
    "tbdc",
    "tbdc_curve",
    "RBDC",
    "TBDC",
    "TrackState",
]

MATCHINGS = ("any", "greedy")
_GT_COLS = "(frame, track_id, x1, y1, x2, y2)"
_DET_COLS = "(frame, x1, y1, x2, y2, score)"
_MAX_PAIRS = 1 << 22  # candidate pairs evaluated per chunk (memory bound)


# ---------------------------------------------------------------------- validation
def _rows(a, name: str, ncols: int, cols: str) -> np.ndarray:
    """``a`` as a float64 ``(n, ncols)`` array; raise on a wrong shape or non-finite rows."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} must be a numeric array of rows {cols}: {e}") from None
    if arr.size == 0 and (arr.ndim == 1 or (arr.ndim == 2 and arr.shape == (0, ncols))):
        return np.zeros((0, ncols), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != ncols:
        raise InputError(
            f"{name} must be an (n, {ncols}) array of rows {cols}, got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name} row {i} holds non-finite values {arr[i].tolist()}; rows {cols} must be finite"
        )
    return arr


def _check_boxes(arr: np.ndarray, name: str, c: int, cols: str) -> None:
    """Raise on a row with ``x2 < x1`` or ``y2 < y1`` (box columns start at ``c``)."""
    bad = (arr[:, c + 2] < arr[:, c]) | (arr[:, c + 3] < arr[:, c + 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name} row {i} {arr[i].tolist()} is not a box {cols}: expected x1 <= x2 and "
            "y1 <= y2 (continuous pixel coordinates)"
        )


def _check_frames(col: np.ndarray, name: str) -> np.ndarray:
    bad = (col != np.floor(col)) | (np.abs(col) > 2.0**53)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name} row {i}: frame {float(col[i])!r} is not an integer (frames are integer ids of "
            "the frames of the test set)"
        )
    return col.astype(np.int64)


def _fraction(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number in (0, 1], got {x!r}")
    x = float(x)
    if not 0.0 < x <= 1.0:
        raise InputError(f"{name} must lie in (0, 1], got {x!r}")
    return x


def _fpr_max(x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise InputError(f"fpr_max must be a positive number, got {x!r}")
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise InputError(
            f"fpr_max must be a positive finite number (false positives per frame), got {x!r}"
        )
    return x


def _matching(m) -> str:
    if m not in MATCHINGS:
        raise InputError(f"matching must be one of {MATCHINGS}, got {m!r}")
    return m


@dataclass
class _Prepared:
    """Validated inputs: region frames, tracks (0..T-1), boxes; detection frames, boxes,
    scores."""

    g_frame: np.ndarray
    g_track: np.ndarray
    g_box: np.ndarray
    n_tracks: int
    d_frame: np.ndarray
    d_box: np.ndarray
    d_score: np.ndarray
    n_frames: int


def _prepare(gt_regions, detections, n_frames) -> _Prepared:
    gt = _rows(gt_regions, "gt_regions", 6, _GT_COLS)
    det = _rows(detections, "detections", 6, _DET_COLS)
    g_frame = _check_frames(gt[:, 0], "gt_regions")
    d_frame = _check_frames(det[:, 0], "detections")
    _check_boxes(gt, "gt_regions", 2, _GT_COLS)
    _check_boxes(det, "detections", 1, _DET_COLS)
    g_box = gt[:, 2:6]
    empty = (g_box[:, 2] == g_box[:, 0]) | (g_box[:, 3] == g_box[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(
            f"gt_regions row {i} {gt[i].tolist()} has zero area: its IoU with any box is 0, "
            "so it could never be detected"
        )
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)):
        raise InputError(f"n_frames must be an integer (frames of the test set), got {n_frames!r}")
    n_frames = int(n_frames)
    present = np.unique(np.concatenate([g_frame, d_frame])).size
    if n_frames < max(present, 1):
        raise InputError(
            f"n_frames = {n_frames} but gt_regions and detections name {present} distinct "
            "frames: n_frames must count every frame of the test set (at least 1)"
        )
    tracks, g_track = np.unique(gt[:, 1], return_inverse=True)
    g_track = g_track.astype(np.int64)
    if g_track.size > 1:  # a track with two regions in one frame would count that frame twice
        o = np.lexsort((g_frame, g_track))
        same = (g_track[o][1:] == g_track[o][:-1]) & (g_frame[o][1:] == g_frame[o][:-1])
        if same.any():
            j = int(np.flatnonzero(same)[0])
            a, b = sorted((int(o[j]), int(o[j + 1])))
            raise InputError(
                f"gt_regions rows {a} and {b} give track {float(gt[a, 1])!r} two regions in frame "
                f"{int(g_frame[a])}: a track has at most one region per frame"
            )
    return _Prepared(
        g_frame,
        g_track,
        g_box,
        int(tracks.size),
        d_frame,
        det[:, 1:5],
        det[:, 5],
        n_frames,
    )


# ------------------------------------------------------------------------- matching
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise IoU of boxes ``a`` and ``b`` ``(n, 4)`` (0 where the union is 0)."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _pairs(p: _Prepared, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs ``(detection row, region row, IoU)`` in the same frame with IoU >=
    ``beta`` (regions grouped by frame; each detection expanded against its group)."""
    order = np.argsort(p.g_frame, kind="stable")
    gf = p.g_frame[order]
    lo = np.searchsorted(gf, p.d_frame, side="left")
    cnt = np.searchsorted(gf, p.d_frame, side="right") - lo
    ends = np.cumsum(cnt)
    out_d, out_g, out_iou = [], [], []
    start = 0
    nd = p.d_frame.size
    while start < nd:  # chunks of detections whose pairs fit in _MAX_PAIRS
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + _MAX_PAIRS, side="right"))
        stop = min(max(stop, start + 1), nd)
        c = cnt[start:stop]
        total = int(c.sum())
        if total:
            d = np.repeat(np.arange(start, stop), c)
            first = np.repeat(np.cumsum(c) - c, c)
            g = order[np.repeat(lo[start:stop], c) + (np.arange(total) - first)]
            iou = _iou(p.d_box[d], p.g_box[g])
            keep = iou >= beta
            out_d.append(d[keep])
            out_g.append(g[keep])
            out_iou.append(iou[keep])
        start = stop
    if not out_d:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_d), np.concatenate(out_g), np.concatenate(out_iou)


def _greedy(d: np.ndarray, g: np.ndarray, iou: np.ndarray, score: np.ndarray):
    """Accepted pairs of the greedy one-to-one matching (order: score desc, IoU desc,
    detection row, region row)."""
    o = np.lexsort((g, d, -iou, -score[d]))
    dl, gl = d[o].tolist(), g[o].tolist()
    used_d: set[int] = set()
    used_g: set[int] = set()
    acc_d, acc_g = [], []
    for di, gi in zip(dl, gl, strict=True):
        if di in used_d or gi in used_g:
            continue
        used_d.add(di)
        used_g.add(gi)
        acc_d.append(di)
        acc_g.append(gi)
    return np.asarray(acc_d, dtype=np.int64), np.asarray(acc_g, dtype=np.int64)


def _detection_scores(p: _Prepared, beta: float, matching: str):
    """``s_r`` per region (the largest threshold at which it is detected; -inf: never)
    and the boolean mask of detections that are false positives wherever kept."""
    d, g, iou = _pairs(p, beta)
    s_r = np.full(p.g_frame.size, -np.inf)
    fp = np.ones(p.d_frame.size, dtype=bool)
    if matching == "greedy":
        d, g = _greedy(d, g, iou, p.d_score)
        s_r[g] = p.d_score[d]  # one detection per region
    else:
        np.maximum.at(s_r, g, p.d_score[d])
    fp[d] = False
    return s_r, fp


def _min_count(length: np.ndarray, alpha: float) -> np.ndarray:
    """Per track the smallest count ``k`` with ``k / length >= alpha`` (see the module
    docstring), in ``[1, length]``."""
    k = np.clip(np.ceil(alpha * length), 1, length).astype(np.int64)
    lower = (k > 1) & ((k - 1) / length >= alpha)
    k = np.where(lower, k - 1, k)
    raise_ = (k < length) & ~(k / length >= alpha)
    return np.where(raise_, k + 1, k)


def _track_scores(s_r: np.ndarray, track: np.ndarray, n_tracks: int, alpha: float):
    """Per track the largest threshold at which it is detected: the ``k``-th largest
    ``s_r`` of its regions."""
    o = np.lexsort((-s_r, track))
    length = np.bincount(track, minlength=n_tracks)
    start = np.cumsum(length) - length
    k = _min_count(length, alpha)
    return s_r[o][start + k - 1]


def _counts_at(values: np.ndarray, thr_desc: np.ndarray) -> np.ndarray:
    """For each threshold of ``thr_desc`` (strictly decreasing) the number of ``values``
    ``>= threshold``."""
    asc = thr_desc[::-1]
    pos = np.searchsorted(asc, values, side="right")  # values <= asc[pos-1] ... count
    # value v counts for every asc[j] <= v, i.e. j < pos
    hist = np.bincount(pos, minlength=asc.size + 1)[1:]
    at_least_asc = np.cumsum(hist[::-1])[::-1]
    return at_least_asc[::-1]


def _curve(p: _Prepared, rates_from: np.ndarray, total: int, fp: np.ndarray):
    thr = np.unique(p.d_score)[::-1]
    n_fp = _counts_at(p.d_score[fp], thr)
    n_hit = _counts_at(rates_from[np.isfinite(rates_from)], thr)
    fpr = np.concatenate(([0.0], n_fp / p.n_frames))
    rate = np.concatenate(([0.0], n_hit / total))
    return fpr, rate, np.concatenate(([np.inf], thr))


def _area(fpr: np.ndarray, rate: np.ndarray, fpr_max: float) -> float:
    """Trapezoidal area under ``rate(fpr)`` on ``[0, fpr_max]`` (flat extension, value at
    ``fpr_max`` interpolated) divided by ``fpr_max``."""
    j = int(np.searchsorted(fpr, fpr_max, side="right"))  # points with fpr <= fpr_max
    x, y = fpr[:j], rate[:j]
    if j < fpr.size:
        x0, y0, x1, y1 = fpr[j - 1], rate[j - 1], fpr[j], rate[j]
        y_end = y0 + (y1 - y0) * (fpr_max - x0) / (x1 - x0)
    else:
        y_end = y[-1]
    x = np.append(x, fpr_max)
    y = np.append(y, y_end)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0) / fpr_max)


# ------------------------------------------------------------------------- functions
def _run(kind, gt_regions, detections, n_frames, alpha, beta, fpr_max, matching):
    beta = _fraction(beta, "beta")
    alpha = _fraction(alpha, "alpha")
    fpr_max = _fpr_max(fpr_max)
    matching = _matching(matching)
    p = _prepare(gt_regions, detections, n_frames)
    if p.g_frame.size == 0:
        return None, fpr_max
    s_r, fp = _detection_scores(p, beta, matching)
    if kind == "rbdc":
        return _curve(p, s_r, s_r.size, fp), fpr_max
    s_t = _track_scores(s_r, p.g_track, p.n_tracks, alpha)
    return _curve(p, s_t, p.n_tracks, fp), fpr_max


def _no_regions(kind: str) -> float:
    return undefined(kind, "gt_regions is empty: there is no anomalous region to detect")


def _empty_curve():
    return np.zeros(0), np.zeros(0), np.zeros(0)


def rbdc_curve(
    gt_regions, detections, *, n_frames: int, beta: float = 0.1, matching: str = "any"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The RBDC curve ``(fpr, rbdr, thresholds)``: the point (0, 0) at threshold ``inf``,
    then one point per distinct detection score in decreasing order (FPR = false
    positives per frame, RBDR = detected regions / all regions; see the module
    docstring). Not extended nor clipped at any ``fpr_max``. Empty arrays (and an
    :class:`~xeval.errors.UndefinedMetricWarning`) when there is no GT region."""
    curve, _ = _run("rbdc", gt_regions, detections, n_frames, 1.0, beta, 1.0, matching)
    if curve is None:
        _no_regions("rbdc_curve")
        return _empty_curve()
    return curve


def tbdc_curve(
    gt_regions,
    detections,
    *,
    n_frames: int,
    alpha: float = 0.1,
    beta: float = 0.1,
    matching: str = "any",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The TBDC curve ``(fpr, tbdr, thresholds)`` (TBDR = detected tracks / all tracks,
    a track being detected when ``count / length >= alpha`` of its regions are); same
    layout as :func:`rbdc_curve`."""
    curve, _ = _run("tbdc", gt_regions, detections, n_frames, alpha, beta, 1.0, matching)
    if curve is None:
        _no_regions("tbdc_curve")
        return _empty_curve()
    return curve


def rbdc(
    gt_regions,
    detections,
    *,
    n_frames: int,
    beta: float = 0.1,
    fpr_max: float = 1.0,
    matching: str = "any",
) -> float:
    """Region-based detection criterion: normalised area under RBDR(FPR) on ``[0,
    fpr_max]`` (see the module docstring). **Higher is better**, in [0, 1]. NaN with a
    warning when there is no GT region. Reference: Ramachandra & Jones (2020), WACV."""
    curve, fpr_max = _run("rbdc", gt_regions, detections, n_frames, 1.0, beta, fpr_max, matching)
    if curve is None:
        return _no_regions("rbdc")
    return _area(curve[0], curve[1], fpr_max)


def tbdc(
    gt_regions,
    detections,
    *,
    n_frames: int,
    alpha: float = 0.1,
    beta: float = 0.1,
    fpr_max: float = 1.0,
    matching: str = "any",
) -> float:
    """Track-based detection criterion: normalised area under TBDR(FPR) on ``[0,
    fpr_max]`` (see the module docstring). **Higher is better**, in [0, 1]. NaN with a
    warning when there is no GT region. Reference: Ramachandra & Jones (2020), WACV."""
    curve, fpr_max = _run("tbdc", gt_regions, detections, n_frames, alpha, beta, fpr_max, matching)
    if curve is None:
        return _no_regions("tbdc")
    return _area(curve[0], curve[1], fpr_max)


def regions_from_maps(
    maps, *, threshold: float, frames=None, min_area: int = 1, connectivity: int = 8
) -> np.ndarray:
    """Detections ``(n, 6)`` rows ``(frame, x1, y1, x2, y2, score)`` from anomaly maps.

    Each connected component (``connectivity`` 8 or 4) of ``map >= threshold`` (compared
    exactly, whatever the map's dtype) with at least ``min_area`` pixels becomes one box
    over its pixel extent as continuous coordinates ``[x_min, x_max + 1) x [y_min, y_max
    + 1)``, scored by the largest map value inside the component. ``maps``: a sequence of
    2-D arrays at native size (or an ``(N, H, W)`` array); ``frames``: the frame id of
    each map (default ``0 .. N-1``). Rows are ordered by map, then by component label
    (raster order of each component's first pixel)."""
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        maps = [maps]
    maps = list(maps)
    t = float(threshold) if not isinstance(threshold, bool) else math.nan
    if not math.isfinite(t):
        raise InputError(f"threshold must be a finite number, got {threshold!r}")
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise InputError(f"min_area must be an integer >= 1 (pixels), got {min_area!r}")
    if frames is None:
        fr = np.arange(len(maps), dtype=np.float64)
    else:
        fr = np.asarray(frames, dtype=np.float64).reshape(-1)
        if fr.size != len(maps):
            raise InputError(
                f"frames holds {fr.size} entries for {len(maps)} maps (one frame id per map)"
            )
        if not np.isfinite(fr).all() or (fr != np.floor(fr)).any():
            i = int(np.flatnonzero(~np.isfinite(fr) | (fr != np.floor(fr)))[0])
            raise InputError(f"frames[{i}] = {float(fr[i])!r} is not an integer frame id")
    struct = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    out = []
    for i, m in enumerate(maps):
        m = np.asarray(m)
        if m.ndim != 2:
            raise InputError(f"maps[{i}] must be a 2-D (H, W) map, got shape {m.shape}")
        m = check_map(m, f"maps[{i}]")
        lab, n = ndimage.label(at_least(m, t), structure=struct)
        if n == 0:
            continue
        idx = np.arange(1, n + 1)
        size = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        top = np.asarray(ndimage.maximum(m, lab, idx), dtype=np.float64).reshape(-1)
        sl = ndimage.find_objects(lab)
        box = np.array(
            [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in sl], dtype=np.float64
        )
        keep = size >= min_area
        rows = np.column_stack([np.full(int(keep.sum()), fr[i]), box[keep], top[keep]])
        out.append(rows)
    if not out:
        return np.zeros((0, 6), dtype=np.float64)
    return np.concatenate(out)


# ------------------------------------------------------------------ registered metrics
@dataclass
class TrackState:
    """Per frame (sample) of the test set: its key ``(video id, frame index)``, its GT
    regions ``(n, 5)`` rows ``(track_id, x1, y1, x2, y2)`` (track ids are local to the
    video) and its detections ``(n, 5)`` rows ``(x1, y1, x2, y2, score)``; the map
    threshold used (None while no map was converted) and how many frames' detections
    came from the explainer's boxes and from its maps."""

    keys: list = field(default_factory=list)
    regions: list = field(default_factory=list)
    detections: list = field(default_factory=list)
    threshold: float | None = None
    from_boxes: int = 0
    from_maps: int = 0

    def merge(self, o: TrackState) -> TrackState:
        common = set(self.keys) & set(o.keys)
        if common:
            k = sorted(common, key=repr)[0]
            raise InputError(
                f"merging track states: both hold frame {k[1]} of video {k[0]!r} "
                f"({len(common)} shared frame(s)): merge the states of disjoint sets of frames"
            )
        t = _merged_threshold(self.threshold, o.threshold)
        return TrackState(
            self.keys + o.keys,
            self.regions + o.regions,
            self.detections + o.detections,
            t,
            self.from_boxes + o.from_boxes,
            self.from_maps + o.from_maps,
        )


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _merged_threshold(a, b):
    if a is not None and b is not None and not _same(a, b):
        raise InputError(
            f"cannot merge track states at different map thresholds ({a} and {b}): shards "
            "of one unit share one calibration"
        )
    return a if a is not None else b


class _TrackMetric(Metric):
    """Shared state and update of :class:`RBDC` and :class:`TBDC`."""

    family = "video"
    needs = frozenset({"regions", "threshold"})
    higher_is_better = True
    headline = 1
    kind = ""

    def _setup(self, *, alpha, beta, fpr_max, matching, quantile) -> None:
        self.alpha = _fraction(alpha, "alpha")
        self.beta = _fraction(beta, "beta")
        self.fpr_max = _fpr_max(fpr_max)
        self.matching = _matching(matching)
        self.quantile = _fraction(quantile, "quantile")

    @property
    def label(self) -> str:
        parts = []
        if self.kind == "tbdc" and self.alpha != 0.1:
            parts.append(f"alpha={self.alpha:g}")
        if self.beta != 0.1:
            parts.append(f"beta={self.beta:g}")
        if self.fpr_max != 1.0:
            parts.append(f"fpr_max={self.fpr_max:g}")
        if self.matching != "any":
            parts.append(self.matching)
        if self.quantile != 0.99:
            parts.append(f"q={self.quantile:g}")
        return self.name + (f"({', '.join(parts)})" if parts else "")

    def calibrations(self) -> list[tuple]:
        return [("normal_quantile", self.quantile)]

    def shares(self):
        return ("tracks", self.quantile)

    def init(self) -> TrackState:
        return TrackState()

    def update(self, state: TrackState, record, explanation) -> TrackState:
        check_aligned(record, explanation, self.label)
        n = len(record)
        where = f"metric {self.label!r}"
        vids, fidx = record.inputs.video_ids, record.inputs.frame_index
        if vids is None or fidx is None:
            raise InputError(
                f"{where} needs record.inputs.video_ids and frame_index (a video dataset); "
                f"the record of {record.ids[:3]}... has none"
            )
        keys = []
        for i in range(n):
            f = fidx[i]
            if isinstance(f, (bool, np.bool_)) or float(f) != math.floor(float(f)):
                raise InputError(
                    f"{where}: sample {record.ids[i]!r} has frame_index {f!r}, not an integer"
                )
            keys.append((str(vids[i]), int(f)))
        seen = set(state.keys)
        for i, k in enumerate(keys):
            if k in seen:
                raise InputError(
                    f"{where}: frame {k[1]} of video {k[0]!r} (sample {record.ids[i]!r}) is "
                    "given twice (each frame must be added to a metric state once)"
                )
            seen.add(k)
        regions = []
        tr = record.targets.regions
        for i in range(n):
            r = None if tr is None else tr[i]
            name = f"record.targets.regions[{i}] (sample {record.ids[i]!r})"
            if r is None or (hasattr(r, "__len__") and len(r) == 0):
                regions.append(np.zeros((0, 5)))
                continue
            rows = _rows(r, name, 6, _GT_COLS)
            _check_boxes(rows, name, 2, _GT_COLS)
            tids, counts = np.unique(rows[:, 1], return_counts=True)
            if (counts > 1).any():
                raise InputError(
                    f"{name}: track {tids[counts > 1][0]!r} has {counts.max()} regions in "
                    "this frame; a track has at most one region per frame"
                )
            regions.append(rows[:, 1:6].copy())
        dets = []
        if explanation.boxes is not None:
            if len(explanation.boxes) != n:
                raise InputError(
                    f"{where}: explanation.boxes holds {len(explanation.boxes)} entries for "
                    f"the {n} samples of the record (one (n, 5) array per sample)"
                )
            for i, b in enumerate(explanation.boxes):
                name = f"explanation.boxes[{i}] (sample {record.ids[i]!r})"
                rows = _rows(b, name, 5, "(x1, y1, x2, y2, score)")
                _check_boxes(rows, name, 0, "(x1, y1, x2, y2, score)")
                dets.append(rows)
            from_boxes, from_maps = n, 0
        else:
            t = float(explanation.calibration[("normal_quantile", self.quantile)])
            state.threshold = _merged_threshold(state.threshold, t)
            for m in explanation.native:
                if math.isnan(t):
                    dets.append(np.zeros((0, 5)))
                    continue
                d = regions_from_maps([m], threshold=t, min_area=1)
                dets.append(d[:, 1:6])
            from_boxes, from_maps = 0, n
        state.keys.extend(keys)
        state.regions.extend(regions)
        state.detections.extend(dets)
        state.from_boxes += from_boxes
        state.from_maps += from_maps
        return state

    def merge(self, a: TrackState, b: TrackState) -> TrackState:
        return a.merge(b)

    def _note(self, state: TrackState) -> str:
        parts = [f"beta={self.beta:g}"]
        if self.kind == "tbdc":
            parts.append(f"alpha={self.alpha:g} (count / length >= alpha)")
        parts += [f"fpr_max={self.fpr_max:g} (false positives per frame)", self.matching]
        if state.from_maps:
            t = "nan" if state.threshold is None else f"{state.threshold:.6g}"
            parts.append(
                f"detections of {state.from_maps} frame(s) = connected components (8-conn.) "
                f"of map >= {t}, the {self.quantile:g} quantile of normal validation pixels"
            )
        if state.from_boxes:
            parts.append(f"detections of {state.from_boxes} frame(s) = the explainer's boxes")
        return "; ".join(parts)

    def _arrays(self, state: TrackState):
        """GT and detection rows of the whole state in a canonical order (sorted frame
        keys), frames numbered 0..n-1, tracks keyed by (video id, track id)."""
        order = sorted(range(len(state.keys)), key=lambda i: state.keys[i])
        gts, dts = [], []
        track_ids: dict = {}
        for f, i in enumerate(order):
            vid = state.keys[i][0]
            r = state.regions[i]
            if r.shape[0]:
                tid = [track_ids.setdefault((vid, float(x)), len(track_ids)) for x in r[:, 0]]
                gts.append(np.column_stack([np.full(r.shape[0], f), tid, r[:, 1:5]]))
            d = state.detections[i]
            if d.shape[0]:
                dts.append(np.column_stack([np.full(d.shape[0], f), d]))
        gt = np.concatenate(gts) if gts else np.zeros((0, 6))
        det = np.concatenate(dts) if dts else np.zeros((0, 6))
        return gt, det

    def compute(self, state: TrackState) -> MetricValue:
        n = len(state.keys)
        note = self._note(state)
        if n == 0:
            return MetricValue(value=undefined(self.label, "no frames"), note=note)
        if state.threshold is not None and math.isnan(state.threshold):
            why = (
                f"its map threshold (the {self.quantile:g} quantile of normal validation "
                "pixels) is undefined: the normal validation maps are constant"
            )
            return MetricValue(value=undefined(self.label, why), n=n, note=note)
        gt, det = self._arrays(state)
        thr = math.nan if state.threshold is None else state.threshold
        if gt.shape[0] == 0:
            why = "no ground-truth region in any frame: there is nothing to detect"
            return MetricValue(value=undefined(self.label, why), n=n, threshold=thr, note=note)
        curve, fpr_max = _run(
            self.kind, gt, det, n, self.alpha, self.beta, self.fpr_max, self.matching
        )
        fpr, rate, _ = curve
        return MetricValue(
            value=_area(fpr, rate, fpr_max),
            n=n,
            threshold=thr,
            note=note,
            curves={self.kind: (fpr, rate)},
        )


@METRICS.register
class RBDC(_TrackMetric):
    """Region-based detection criterion (RBDC): for each distinct detection score t, a
    ground-truth region is detected when a detection of its frame with score >= t has
    IoU >= beta with it, and a kept detection with IoU < beta to every region of its
    frame is a false positive; RBDC is the area under detected-region rate against
    false positives per frame on [0, fpr_max] (curve from (0, 0), flat extension,
    trapezoid, divided by fpr_max). Detections are the explainer's boxes, or connected
    components of map >= the ``quantile`` of normal validation pixels scored by their
    maximum. ``matching="greedy"`` gives the one-to-one convention (duplicates are false
    positives). **Higher is better.** Reference: Ramachandra & Jones (2020), "Street
    Scene: A new dataset and evaluation protocol for video anomaly detection", WACV."""

    name = "rbdc"
    kind = "rbdc"

    def __init__(
        self,
        *,
        beta: float = 0.1,
        fpr_max: float = 1.0,
        matching: str = "any",
        quantile: float = 0.99,
    ) -> None:
        self._setup(alpha=0.1, beta=beta, fpr_max=fpr_max, matching=matching, quantile=quantile)


@METRICS.register
class TBDC(_TrackMetric):
    """Track-based detection criterion (TBDC): as RBDC, but the rate is the share of
    ground-truth tracks detected, a track (keyed by video and track id) being detected
    at threshold t when at least ``alpha`` of its regions are (count / length >= alpha);
    area under detected-track rate against false positives per frame on [0, fpr_max],
    divided by fpr_max. **Higher is better.** Reference: Ramachandra & Jones (2020),
    "Street Scene: A new dataset and evaluation protocol for video anomaly detection",
    WACV."""

    name = "tbdc"
    kind = "tbdc"

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 0.1,
        fpr_max: float = 1.0,
        matching: str = "any",
        quantile: float = 0.99,
    ) -> None:
        self._setup(alpha=alpha, beta=beta, fpr_max=fpr_max, matching=matching, quantile=quantile)
