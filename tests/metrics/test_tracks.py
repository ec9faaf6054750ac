"""RBDC / TBDC (Ramachandra & Jones 2020): hand-built cases, a naive per-threshold
reference written here, regions_from_maps, bad inputs and the registered metrics."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics.base import Explanation
from xeval.metrics.tracks import (
    RBDC,
    TBDC,
    _min_count,
    rbdc,
    rbdc_curve,
    regions_from_maps,
    tbdc,
    tbdc_curve,
)
from xeval.record import Inputs, Record, Targets


# --------------------------------------------------------------------- naive reference
def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def naive_curves(gt, det, n_frames, *, alpha=0.1, beta=0.1, matching="any"):
    """Straightforward: for every distinct score, match the kept detections in Python."""
    gt = [tuple(map(float, r)) for r in np.asarray(gt, float).reshape(-1, 6)]
    det = [tuple(map(float, r)) for r in np.asarray(det, float).reshape(-1, 6)]
    tracks = sorted({r[1] for r in gt})
    fpr, rr, tr = [0.0], [0.0], [0.0]
    for t in sorted({d[5] for d in det}, reverse=True):
        kept = [j for j, d in enumerate(det) if d[5] >= t]
        detected: set[int] = set()
        if matching == "any":
            fp = 0
            for j in kept:
                hit = False
                for i, g in enumerate(gt):
                    if g[0] == det[j][0] and _iou(det[j][1:5], g[2:6]) >= beta:
                        detected.add(i)
                        hit = True
                fp += not hit
        else:
            pairs = []
            for j in kept:
                for i, g in enumerate(gt):
                    v = _iou(det[j][1:5], g[2:6])
                    if g[0] == det[j][0] and v >= beta:
                        pairs.append((-det[j][5], -v, j, i))
            used: set[int] = set()
            for _, _, j, i in sorted(pairs):
                if j not in used and i not in detected:
                    used.add(j)
                    detected.add(i)
            fp = len(kept) - len(used)
        fpr.append(fp / n_frames)
        rr.append(len(detected) / len(gt))
        n_tr = 0
        for k in tracks:
            rows = [i for i, g in enumerate(gt) if g[1] == k]
            c = sum(i in detected for i in rows)
            n_tr += c / len(rows) >= alpha
        tr.append(n_tr / len(tracks))
    return fpr, rr, tr


def naive_area(fpr, rate, fpr_max) -> float:
    pts = list(zip(fpr, rate, strict=True))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 >= fpr_max:
            break
        if x1 > fpr_max:
            y1 = y0 + (y1 - y0) * (fpr_max - x0) / (x1 - x0)
            x1 = fpr_max
        area += (x1 - x0) * (y0 + y1) / 2
    if pts[-1][0] < fpr_max:
        area += (fpr_max - pts[-1][0]) * pts[-1][1]
    return area / fpr_max


def box(x, y, w=10, h=10):
    return [x, y, x + w, y + h]


# ------------------------------------------------------------------------ hand cases
def test_single_region_hit_and_miss():
    gt = [[0, 7, *box(0, 0)]]
    hit = [[0, *box(1, 1), 0.5]]
    assert rbdc(gt, hit, n_frames=1) == 1.0
    assert tbdc(gt, hit, n_frames=1) == 1.0
    fpr, rate, thr = rbdc_curve(gt, hit, n_frames=1)
    assert fpr.tolist() == [0, 0] and rate.tolist() == [0, 1] and thr.tolist() == [np.inf, 0.5]
    # IoU of box(9, 9) with box(0, 0) is 1/199 < 0.1: a miss, and a false positive
    miss = [[0, *box(9, 9), 0.5]]
    assert rbdc(gt, miss, n_frames=1) == 0.0
    fpr, rate, _ = rbdc_curve(gt, miss, n_frames=1)
    assert fpr.tolist() == [0, 1] and rate.tolist() == [0, 0]
    # same frame id required: the same box one frame later is a false positive
    assert rbdc(gt, [[1, *box(0, 0), 0.5]], n_frames=2) == 0.0


def test_iou_threshold_beta_is_inclusive():
    gt = [[0, 0, 0, 0, 10, 10]]
    det = [[0, 0, 0, 10, 5, 1.0]]  # IoU = 50 / 100 = 0.5 exactly
    assert rbdc(gt, det, n_frames=1, beta=0.5) == 1.0
    assert rbdc(gt, det, n_frames=1, beta=0.51) == 0.0


def test_one_detection_two_regions_any_versus_greedy():
    gt = [[0, 1, *box(0, 0)], [0, 2, *box(10, 0)]]
    det = [[0, 0, 0, 20, 10, 0.9]]  # IoU 0.5 with each region
    assert rbdc(gt, det, n_frames=1) == 1.0
    assert rbdc(gt, det, n_frames=1, matching="greedy") == 0.5
    assert tbdc(gt, det, n_frames=1, matching="greedy") == 0.5
    _, rate, _ = rbdc_curve(gt, det, n_frames=1, matching="greedy")
    assert rate.tolist() == [0, 0.5]


def test_greedy_counts_a_duplicate_as_false_positive_any_does_not():
    gt = [[0, 1, *box(0, 0)]]
    det = [[0, *box(0, 0), 0.9], [0, *box(1, 0), 0.8]]  # both overlap the one region
    fa, ra, _ = rbdc_curve(gt, det, n_frames=2)
    fg, rg, _ = rbdc_curve(gt, det, n_frames=2, matching="greedy")
    assert fa.tolist() == [0, 0, 0] and ra.tolist() == [0, 1, 1]
    assert fg.tolist() == [0, 0, 0.5] and rg.tolist() == [0, 1, 1]


def test_greedy_takes_pairs_by_score_then_iou():
    # r1 contains r0; A (IoU 1 with r0, 0.5 with r1) and B (0.6 with r0, 0.3 < beta with r1)
    gt = [[0, 1, 0, 0, 10, 10], [0, 2, 0, 0, 10, 20]]
    a, b = [0, 0, 0, 10, 10], [0, 0, 0, 10, 6]
    for sa, sb in ((0.5, 0.5), (0.9, 0.5)):
        det = [[*a, sa], [*b, sb]]
        # greedy: A-r0 (IoU 1) first, B-r0 refused, A-r1 refused: r1 missed, B a FP
        fpr, rate, _ = rbdc_curve(gt, det, n_frames=1, beta=0.35, matching="greedy")
        assert rate[-1] == 0.5 and fpr[-1] == 1.0
        fpr, rate, _ = rbdc_curve(gt, det, n_frames=1, beta=0.35)
        assert rate[-1] == 1.0 and fpr[-1] == 0.0
    # B scored higher: B-r0 first, then A-r1: both detected, no false positive
    det = [[*a, 0.5], [*b, 0.9]]
    fpr, rate, _ = rbdc_curve(gt, det, n_frames=1, beta=0.35, matching="greedy")
    assert rate.tolist() == [0, 0.5, 1.0] and fpr.tolist() == [0, 0, 0]


def test_false_positives_per_frame():
    gt = [[0, 1, *box(0, 0)]]
    det = [
        [0, *box(50, 50), 0.9],  # FP in a frame with a region
        [3, *box(0, 0), 0.8],  # FP in a frame without regions
        [3, *box(5, 5), 0.8],  # another one, tied score
        [0, *box(0, 0), 0.1],  # the hit
    ]
    fpr, rate, thr = rbdc_curve(gt, det, n_frames=8)
    assert thr.tolist() == [np.inf, 0.9, 0.8, 0.1]
    assert fpr.tolist() == [0, 1 / 8, 3 / 8, 3 / 8]
    assert rate.tolist() == [0, 0, 0, 1]
    assert rbdc(gt, det, n_frames=8) == pytest.approx(5 / 8)


def test_flat_extension_when_the_curve_stops_short():
    gt = [[0, 1, *box(0, 0)]]
    det = [[1, *box(0, 0), 0.9], [0, *box(0, 0), 0.5]]  # FP first (fpr 1/4), then the hit
    fpr, rate, _ = rbdc_curve(gt, det, n_frames=4)
    assert fpr.tolist() == [0, 0.25, 0.25] and rate.tolist() == [0, 0, 1]
    assert rbdc(gt, det, n_frames=4) == pytest.approx(0.75)  # flat at 1 from 0.25 to 1
    assert rbdc(gt, det, n_frames=4, fpr_max=2.0) == pytest.approx(1.75 / 2)
    assert rbdc(gt, [], n_frames=4) == 0.0  # no detection: (0, 0) extended flat


def test_fpr_max_below_one_interpolates():
    gt = [[0, 1, *box(0, 0)], [0, 2, *box(40, 0)]]
    det = [
        [0, *box(0, 0), 0.9],  # hits r1: (0, 0.5)
        [1, *box(0, 0), 0.8],  # FP: (0.5, 0.5)
        [0, *box(40, 0), 0.7],  # hits r2 ...
        [1, *box(40, 0), 0.7],  # ... and a FP at the same score: (1.0, 1.0)
    ]
    fpr, rate, _ = rbdc_curve(gt, det, n_frames=2)
    assert fpr.tolist() == [0, 0, 0.5, 1.0] and rate.tolist() == [0, 0.5, 0.5, 1.0]
    # at 0.75 the value is interpolated on (0.5, 0.5)-(1, 1): 0.75
    expected = (0.5 * 0.5 + 0.25 * (0.5 + 0.75) / 2) / 0.75
    assert rbdc(gt, det, n_frames=2, fpr_max=0.75) == pytest.approx(expected, rel=1e-15)
    assert rbdc(gt, det, n_frames=2, fpr_max=0.5) == pytest.approx(0.5)
    assert rbdc(gt, det, n_frames=2, fpr_max=1.0) == pytest.approx((0.25 + 0.375) / 1)


def test_tbdc_alpha_rule():
    # one track of 30 regions in frames 0..29; detections hit the first k of them
    gt = [[f, 5, *box(0, 0)] for f in range(30)]

    def value(k, alpha):
        det = [[f, *box(0, 0), 1.0] for f in range(k)]
        return tbdc(gt, det, n_frames=30, alpha=alpha)

    assert value(3, 0.1) == 1.0
    assert value(2, 0.1) == 0.0
    assert value(15, 0.5) == 1.0 and value(14, 0.5) == 0.0
    assert value(30, 1.0) == 1.0 and value(29, 1.0) == 0.0
    assert value(1, 1e-9) == 1.0
    # 7 of 100 regions reach alpha = 0.07, although 0.07 * 100 is 7.000000000000001
    gt100 = [[f, 5, *box(0, 0)] for f in range(100)]
    det7 = [[f, *box(0, 0), 1.0] for f in range(7)]
    assert 0.07 * 100 > 7 and tbdc(gt100, det7, n_frames=100, alpha=0.07) == 1.0
    assert tbdc(gt100, det7[:6], n_frames=100, alpha=0.07) == 0.0
    # two tracks, the short one detected: TBDR 1/2 but RBDR 2/32
    gt2 = gt + [[0, 6, *box(40, 0)], [1, 6, *box(40, 0)]]
    det = [[0, *box(40, 0), 1.0]]
    assert tbdc(gt2, det, n_frames=30, alpha=0.5) == 0.5
    assert rbdc(gt2, det, n_frames=30) == pytest.approx(1 / 32)


def test_min_count_is_the_smallest_count_reaching_alpha():
    lengths = np.arange(1, 301)
    for alpha in (0.1, 0.2, 0.3, 1 / 3, 0.5, 0.7, 0.9, 0.95, 1.0, 0.05, 1e-6, 0.123456):
        k = _min_count(lengths, alpha)
        for n, kk in zip(lengths.tolist(), k.tolist(), strict=True):
            assert kk / n >= alpha and (kk == 1 or (kk - 1) / n < alpha), (alpha, n, kk)


def test_curves_are_monotone_and_start_at_origin():
    gt = [[0, 1, *box(0, 0)], [1, 1, *box(0, 0)]]
    det = [[0, *box(0, 0), 0.3], [1, *box(20, 20), 0.6], [1, *box(0, 0), 0.2]]
    for f in (rbdc_curve, tbdc_curve):
        fpr, rate, thr = f(gt, det, n_frames=2)
        assert fpr[0] == 0 and rate[0] == 0 and thr[0] == np.inf
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(rate) >= 0)
        assert np.all(np.diff(thr) < 0)


# ------------------------------------------------------------ naive, random cases
@st.composite
def cases(draw):
    n_frames = draw(st.integers(1, 4))
    coord = st.integers(0, 12)
    gt = []
    for track in range(draw(st.integers(1, 3))):
        for f in range(n_frames):
            if draw(st.booleans()):
                x, y = draw(coord), draw(coord)
                gt.append([f, 10 * track + 3, x, y, x + draw(st.integers(1, 8)), y + 5])
    if not gt:
        gt.append([0, 1, 0, 0, 4, 4])
    det = []
    for _ in range(draw(st.integers(0, 8))):
        x, y = draw(coord), draw(coord)
        w, h = draw(st.integers(0, 10)), draw(st.integers(0, 8))
        score = draw(st.sampled_from([0.1, 0.25, 0.5, 0.7, 0.9, 2.0, -1.0]))
        det.append([draw(st.integers(0, n_frames - 1)), x, y, x + w, y + h, score])
    alpha = draw(st.sampled_from([0.1, 0.3, 0.5, 2 / 3, 1.0]))
    beta = draw(st.sampled_from([0.1, 0.2, 0.5, 1.0, 0.05]))
    fpr_max = draw(st.sampled_from([1.0, 0.5, 0.3, 2.0, 3.5]))
    return np.array(gt, float), np.array(det, float).reshape(-1, 6), n_frames, alpha, beta, fpr_max


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(["any", "greedy"]))
def test_matches_the_naive_per_threshold_loop(case, matching):
    gt, det, n, alpha, beta, fpr_max = case
    nf, nr, nt = naive_curves(gt, det, n, alpha=alpha, beta=beta, matching=matching)
    fpr, rate, thr = rbdc_curve(gt, det, n_frames=n, beta=beta, matching=matching)
    assert fpr.tolist() == pytest.approx(nf, abs=0) and rate.tolist() == pytest.approx(nr)
    assert thr[1:].tolist() == sorted(set(det[:, 5].tolist()), reverse=True)
    _, trate, _ = tbdc_curve(gt, det, n_frames=n, alpha=alpha, beta=beta, matching=matching)
    assert trate.tolist() == pytest.approx(nt)
    kw = dict(n_frames=n, beta=beta, fpr_max=fpr_max, matching=matching)
    assert math.isclose(rbdc(gt, det, **kw), naive_area(nf, nr, fpr_max), rel_tol=1e-12)
    t = tbdc(gt, det, alpha=alpha, **kw)
    assert math.isclose(t, naive_area(nf, nt, fpr_max), rel_tol=1e-12, abs_tol=1e-15)
    # permuting the rows changes nothing under "any"
    if matching == "any":
        rng = np.random.default_rng(len(det))
        p, q = rng.permutation(len(gt)), rng.permutation(len(det))
        assert rbdc(gt[p], det[q], **kw) == pytest.approx(rbdc(gt, det, **kw), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_greedy_is_never_more_lenient_than_any(case):
    gt, det, n, alpha, beta, _ = case
    fa, ra, _ = rbdc_curve(gt, det, n_frames=n, beta=beta)
    fg, rg, _ = rbdc_curve(gt, det, n_frames=n, beta=beta, matching="greedy")
    assert np.all(fg >= fa) and np.all(rg <= ra)


def test_many_pairs_are_chunked(monkeypatch):
    """The pair expansion in chunks gives the same curve as in one piece."""
    import xeval.metrics.tracks as tracks

    rng = np.random.default_rng(0)
    gt = np.array([[f % 5, f, *box(*rng.integers(0, 30, 2))] for f in range(40)], float)
    xy = rng.integers(0, 30, (60, 2))
    det = np.array([[i % 5, *box(*xy[i]), rng.random()] for i in range(60)], float)
    whole = rbdc_curve(gt, det, n_frames=5)
    monkeypatch.setattr(tracks, "_MAX_PAIRS", 7)
    chunked = rbdc_curve(gt, det, n_frames=5)
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a, b)


# ------------------------------------------------------------------ regions_from_maps
def test_regions_from_maps_hand_maps():
    m0 = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 5, 3, 0, 0],
            [0, 0, 0, 0, 2],
            [0, 0, 0, 0, 4],
        ],
        np.float32,
    )
    m1 = np.zeros((2, 3))
    m1[1, 0] = 1.5  # a single pixel
    m1[0, 1] = 1.0  # diagonal neighbour: one component under 8-connectivity
    out = regions_from_maps([m0, m1], threshold=1.0, frames=[10, 11])
    assert out.tolist() == [
        [10, 1, 1, 3, 2, 5],  # x in [1, 3), y in [1, 2), max 5
        [10, 4, 2, 5, 4, 4],
        [11, 0, 0, 2, 2, 1.5],
    ]
    four = regions_from_maps([m1], threshold=1.0, connectivity=4)
    assert four.tolist() == [[0, 1, 0, 2, 1, 1.0], [0, 0, 1, 1, 2, 1.5]]
    at = [[0, 1, 1, 3, 2, 5], [0, 4, 3, 5, 4, 4]]  # {5, 3} (2 pixels) and {4} (1 pixel)
    assert regions_from_maps([m0], threshold=2.5).tolist() == at
    assert regions_from_maps([m0], threshold=2.5, min_area=2).tolist() == at[:1]
    assert regions_from_maps(m0, threshold=2.5, min_area=3).shape == (0, 6)
    assert regions_from_maps([m0], threshold=9).shape == (0, 6)


def test_regions_from_maps_compares_float32_exactly():
    m = np.array([[np.float32(1.0), 0]], np.float32)
    assert regions_from_maps([m], threshold=1.00000001).shape == (0, 6)
    assert regions_from_maps([m], threshold=1.0).shape == (1, 6)


def test_regions_from_maps_feed_rbdc():
    m = np.zeros((20, 20))
    m[2:12, 2:12] = 0.8
    gt = [[0, 1, 2, 2, 12, 12]]
    det = regions_from_maps([m], threshold=0.5)
    assert det.tolist() == [[0, 2, 2, 12, 12, 0.8]] and rbdc(gt, det, n_frames=1) == 1.0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": 0.5, "connectivity": 6}, "connectivity"),
        ({"threshold": 0.5, "min_area": 0}, "min_area"),
        ({"threshold": 0.5, "frames": [0, 1]}, "frames"),
        ({"threshold": 0.5, "frames": [0.5]}, r"frames\[0\]"),
    ],
)
def test_regions_from_maps_bad_options(kw, match):
    with pytest.raises(InputError, match=match):
        regions_from_maps([np.zeros((3, 3))], **kw)


def test_regions_from_maps_bad_maps():
    with pytest.raises(InputError, match=r"maps\[1\].*2-D"):
        regions_from_maps([np.zeros((3, 3)), np.zeros(3)], threshold=0.5)
    with pytest.raises(InputError, match=r"maps\[0\].*non-finite"):
        regions_from_maps([np.array([[np.nan, 1.0]])], threshold=0.5)


# ------------------------------------------------------------------------ bad inputs
GT = [[0, 1, 0, 0, 10, 10]]
DET = [[0, 0, 0, 10, 10, 0.5]]


def test_no_regions_is_nan_with_a_warning():
    for f in (rbdc, tbdc):
        with pytest.warns(UndefinedMetricWarning, match="no anomalous region"):
            assert math.isnan(f(np.zeros((0, 6)), DET, n_frames=1))
    with pytest.warns(UndefinedMetricWarning):
        assert rbdc_curve([], DET, n_frames=1)[0].size == 0


def test_n_frames_below_frames_present():
    with pytest.raises(InputError, match="n_frames = 2 but .* 3 distinct frames"):
        rbdc(GT, [[1, 0, 0, 1, 1, 0.5], [2, 0, 0, 1, 1, 0.5]], n_frames=2)


@pytest.mark.parametrize("n", [0, 1.5, True, None])
def test_n_frames_must_be_a_positive_integer(n):
    with pytest.raises(InputError, match="n_frames"):
        rbdc(GT, DET, n_frames=n)


def test_box_with_x2_below_x1_names_argument_and_row():
    with pytest.raises(InputError, match=r"gt_regions row 1 .*x1 <= x2"):
        rbdc(GT + [[0, 2, 5, 0, 4, 10]], DET, n_frames=1)
    with pytest.raises(InputError, match=r"detections row 0 .*y1 <= y2"):
        rbdc(GT, [[0, 0, 5, 10, 4, 0.5]], n_frames=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_argument_and_row(bad):
    with pytest.raises(InputError, match=r"detections row 1 holds non-finite"):
        tbdc(GT, DET + [[0, 0, 0, 1, 1, bad]], n_frames=1)
    with pytest.raises(InputError, match=r"gt_regions row 0 holds non-finite"):
        tbdc([[0, 1, 0, bad, 10, 10]], DET, n_frames=1)


def test_wrong_column_counts():
    with pytest.raises(InputError, match=r"gt_regions must be an \(n, 6\) array.*\(1, 5\)"):
        rbdc([[0, 0, 0, 10, 10]], DET, n_frames=1)
    with pytest.raises(InputError, match=r"detections must be an \(n, 6\).*\(1, 7\)"):
        rbdc(GT, [[0, 0, 0, 10, 10, 0.5, 1]], n_frames=1)
    with pytest.raises(InputError, match=r"detections must be an \(n, 6\)"):
        rbdc(GT, [0, 0, 0, 10, 10, 0.5], n_frames=1)  # a 1-D row
    with pytest.raises(InputError, match=r"gt_regions must be an \(n, 6\).*\(3, 0\)"):
        rbdc(np.zeros((3, 0)), DET, n_frames=1)
    assert rbdc(GT, np.zeros((0, 6)), n_frames=1) == rbdc(GT, [], n_frames=1) == 0.0
    with pytest.raises(InputError, match="gt_regions must be a numeric array"):
        rbdc([["a", 1, 0, 0, 1, 1]], DET, n_frames=1)


def test_non_integer_frames():
    with pytest.raises(InputError, match=r"detections row 0: frame 0.5 is not an integer"):
        rbdc(GT, [[0.5, 0, 0, 10, 10, 0.5]], n_frames=1)


def test_zero_area_region_and_duplicate_track_frame():
    with pytest.raises(InputError, match=r"gt_regions row 0 .*zero area"):
        rbdc([[0, 1, 3, 3, 3, 10]], DET, n_frames=1)
    with pytest.raises(InputError, match=r"rows 0 and 1 give track 1.0 two regions in frame 0"):
        rbdc(GT + GT, DET, n_frames=1)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": 1.5}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.01}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"fpr_max": 0.0}, "fpr_max"),
        ({"fpr_max": -1.0}, "fpr_max"),
        ({"fpr_max": float("inf")}, "fpr_max"),
        ({"matching": "hungarian"}, "matching"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(InputError, match=match):
        tbdc(GT, DET, n_frames=1, **kw)
    if "alpha" not in kw:
        with pytest.raises(InputError, match=match):
            rbdc(GT, DET, n_frames=1, **kw)


# ----------------------------------------------------------------- registered metrics
H = W = 24


def video_record(n=12, seed=0, *, boxes=True):
    """Frames of two videos with track regions (track ids local to each video, the same
    id 1 in both), box detections or maps."""
    rng = np.random.default_rng(seed)
    ids, vids, fidx, regions, dets, maps = [], [], [], [], [], []
    for i in range(n):
        v, f = ("vA", i // 2) if i % 2 == 0 else ("vB", i // 2)
        ids.append(f"{v}/{f}")
        vids.append(v)
        fidx.append(f)
        r = []
        if f % 3 != 0:
            x, y = rng.integers(0, 12, 2)
            r.append([f, 1, x, y, x + 8, y + 8])
            if f % 2:
                r.append([f, 2, 14, 14, 22, 22])
        regions.append(np.array(r, float).reshape(-1, 6) if r else None)
        d = []
        m = rng.random((H, W)) * 0.3
        for row in r:
            if rng.random() < 0.7:
                sc = rng.random()
                jit = rng.integers(-2, 3, 2)
                x1, y1 = int(row[2] + jit[0]), int(row[3] + jit[1])
                d.append([x1, y1, x1 + 8, y1 + 8, sc])
                m[max(y1, 0) : y1 + 8, max(x1, 0) : x1 + 8] += 0.5 + sc
        for _ in range(rng.integers(0, 3)):
            x, y = rng.integers(0, 20, 2)
            sc = rng.random()
            d.append([x, y, x + 4, y + 4, sc])
            m[y : y + 4, x : x + 4] += 0.4 + sc
        dets.append(np.array(d, float).reshape(-1, 5))
        maps.append(m.astype(np.float32))
    inputs = Inputs(ids=ids, category="video", video_ids=vids, frame_index=np.array(fidx))
    targets = Targets(labels=np.array([r is not None for r in regions], int), regions=regions)
    maps = np.stack(maps)
    expl = Explanation(
        explainer="toy",
        maps=maps,
        native=list(maps),
        scores=maps.reshape(n, -1).max(1),
        calibration={("normal_quantile", 0.99): 0.6},
        boxes=dets if boxes else None,
    )
    return Record(inputs, targets), expl


def assembled(record, expl, threshold=None):
    """The function-level inputs of a record (frames numbered in (video, frame) order)."""
    keys = sorted(zip(record.inputs.video_ids, record.inputs.frame_index.tolist(), strict=True))
    pos = {k: j for j, k in enumerate(keys)}
    gt, det = [], []
    for i, k in enumerate(
        zip(record.inputs.video_ids, record.inputs.frame_index.tolist(), strict=True)
    ):
        r = record.targets.regions[i]
        if r is not None:
            for row in r:
                gt.append([pos[k], (k[0] == "vB") * 100 + row[1], *row[2:]])
        if threshold is None:
            det += [[pos[k], *b] for b in expl.boxes[i]]
        else:
            det += [
                [pos[k], *b[1:]] for b in regions_from_maps([expl.native[i]], threshold=threshold)
            ]
    return np.array(gt, float), np.array(det, float).reshape(-1, 6)


@pytest.mark.parametrize("boxes", [True, False])
@pytest.mark.parametrize(
    "metric",
    [RBDC(), TBDC(), RBDC(matching="greedy", fpr_max=0.5), TBDC(alpha=0.5, beta=0.3)],
    ids=lambda m: m.label,
)
def test_registered_metric_equals_the_function(metric, boxes):
    record, expl = video_record(boxes=boxes)
    v = metric.compute(metric.update(metric.init(), record, expl))
    gt, det = assembled(record, expl, None if boxes else 0.6)
    kw = dict(n_frames=len(record), beta=metric.beta, fpr_max=metric.fpr_max)
    kw["matching"] = metric.matching
    if metric.name == "tbdc":
        kw["alpha"] = metric.alpha
    ref = (tbdc if metric.name == "tbdc" else rbdc)(gt, det, **kw)
    assert v.value == pytest.approx(ref, rel=1e-12) and 0 < v.value < 1
    assert v.n == len(record)
    assert metric.name in v.curves and v.curves[metric.name][0][0] == 0
    assert f"beta={metric.beta:g}" in v.note and metric.matching in v.note
    assert ("quantile of normal validation" in v.note) != boxes


@pytest.mark.parametrize("boxes", [True, False])
@pytest.mark.parametrize("cls", [RBDC, TBDC])
def test_registered_merge_of_splits_equals_the_whole(cls, boxes):
    m = cls(matching="greedy") if boxes else cls()
    record, expl = video_record(n=14, seed=3, boxes=boxes)
    whole = m.compute(m.update(m.init(), record, expl))
    rng = np.random.default_rng(1)
    for _ in range(3):
        perm = rng.permutation(len(record))
        a, b = perm[:5], perm[5:]
        sa = m.update(m.init(), record.subset(a), expl.subset(a))
        sb = m.update(m.init(), record.subset(b), expl.subset(b))
        for merged in (m.merge(sa, sb), m.merge(pickle.loads(pickle.dumps(sb)), sa)):
            v = m.compute(merged)
            assert v.value == whole.value and v.n == whole.n
            assert np.array_equal(v.curves[m.name][1], whole.curves[m.name][1])
    assert 0 < whole.value < 1


def test_registered_tracks_are_keyed_by_video():
    """Track 1 of vA and track 1 of vB are two tracks."""
    record, expl = video_record()
    v = TBDC(alpha=1.0).compute(TBDC(alpha=1.0).update(TBDC(alpha=1.0).init(), record, expl))
    gt, det = assembled(record, expl)
    assert len(np.unique(gt[:, 1])) == 4
    assert v.value == pytest.approx(tbdc(gt, det, n_frames=len(record), alpha=1.0), rel=1e-12)


def test_registered_bad_inputs():
    m = RBDC()
    record, expl = video_record(n=4)
    st_ = m.update(m.init(), record.subset([0, 1]), expl.subset([0, 1]))
    with pytest.raises(InputError, match="frame 0 of video 'vA'"):
        m.update(st_, record.subset([0]), expl.subset([0]))
    with pytest.raises(InputError, match="both hold frame"):
        m.merge(st_, m.update(m.init(), record.subset([0]), expl.subset([0])))
    bad = Record(
        Inputs(ids=record.ids, category="x"), record.targets
    )  # no video ids: not a video record
    with pytest.raises(InputError, match="video_ids"):
        m.update(m.init(), bad, expl)
    record.targets.regions[1] = np.array([[0, 1, 5, 0, 4, 4]], float)
    with pytest.raises(InputError, match=r"regions\[1\] \(sample 'vB/0'\) row 0"):
        m.update(m.init(), record, expl)
    record, expl = video_record(n=4)
    expl.boxes[2] = np.array([[0, 0, 1, 1]], float)
    with pytest.raises(InputError, match=r"explanation.boxes\[2\].*\(n, 5\)"):
        m.update(m.init(), record, expl)


def test_registered_undefined_cases_are_nan_with_a_warning():
    m = RBDC()
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(m.compute(m.init()).value)
    record, expl = video_record(n=4)
    record.targets.regions[:] = [None] * 4
    with pytest.warns(UndefinedMetricWarning, match="no ground-truth region"):
        assert math.isnan(m.compute(m.update(m.init(), record, expl)).value)
    record, expl = video_record(n=4, boxes=False)
    expl.calibration = {("normal_quantile", 0.99): float("nan")}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        s = m.update(m.init(), record, expl)
    with pytest.warns(UndefinedMetricWarning, match="constant"):
        assert math.isnan(m.compute(s).value)


@pytest.mark.parametrize("kw", [{"beta": 0}, {"fpr_max": 0}, {"matching": "x"}, {"quantile": 2}])
def test_registered_options_are_validated(kw):
    with pytest.raises(InputError):
        RBDC(**kw)
    assert RBDC().label == "rbdc" and TBDC(alpha=0.5).label == "tbdc(alpha=0.5)"
