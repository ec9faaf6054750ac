"""Frame-level video metrics and the pixel-level 40% criterion against independent
references: scikit-learn per video, hand-computed cases, exact rational arithmetic and a
brute-force loop over every threshold."""

from __future__ import annotations

import math
import pickle
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics.base import Explanation
from xeval.metrics.frames import (
    FrameState,
    frame_aupr,
    frame_auroc,
    frame_eer,
    pixel_criterion_auc,
    pixel_criterion_curve,
    pixel_criterion_values,
    preprocess_frame_scores,
)
from xeval.record import Inputs, Record, Targets
from xeval.registry import METRICS

SETTINGS = settings(max_examples=25, deadline=None)


def random_videos(rng, n_videos=4, both=True, ties=True):
    labels, scores = [], []
    for v in range(n_videos):
        n = int(rng.integers(3, 12))
        y = (rng.random(n) < 0.4).astype(int)
        if both:
            y[0], y[-1] = 0, 1
        s = rng.integers(0, 6, n).astype(float) if ties and v % 2 else rng.random(n)
        labels.append(y)
        scores.append(s)
    return labels, scores


@st.composite
def videos(draw, min_videos=1, max_videos=5):
    n_videos = draw(st.integers(min_videos, max_videos))
    labels, scores = [], []
    for _ in range(n_videos):
        n = draw(st.integers(1, 10))
        labels.append(np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))))
        # few distinct values: many ties within and across videos
        scores.append(
            np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), float) / 2
        )
    return labels, scores


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*a, **k)


def two_classes(y) -> bool:
    y = np.asarray(y)
    return bool(y.any() and not y.all())


# ------------------------------------------------------------------ micro and macro
@SETTINGS
@given(videos())
def test_micro_equals_sklearn_on_the_concatenation(data):
    labels, scores = data
    y, s = np.concatenate(labels), np.concatenate(scores)
    if not two_classes(y):
        with pytest.warns(UndefinedMetricWarning, match="one class only"):
            assert math.isnan(frame_auroc(labels, scores))
        return
    assert frame_auroc(labels, scores) == roc_auc_score(y, s)
    assert frame_aupr(labels, scores) == average_precision_score(y, s)


@SETTINGS
@given(videos())
def test_macro_equals_the_mean_of_sklearn_per_video(data):
    labels, scores = data
    both = [i for i, y in enumerate(labels) if two_classes(y)]
    for fn, ref in ((frame_auroc, roc_auc_score), (frame_aupr, average_precision_score)):
        if not both:
            with pytest.warns(UndefinedMetricWarning, match="none of the"):
                assert math.isnan(fn(labels, scores, average="macro"))
            continue
        expected = np.mean([ref(labels[i], scores[i]) for i in both])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = fn(labels, scores, average="macro")
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
        skipped = len(labels) - len(both)
        msgs = [str(w.message) for w in caught if w.category is UndefinedMetricWarning]
        if skipped:
            assert len(msgs) == 1, msgs  # ONE warning that counts them
            assert f"{skipped} of {len(labels)} videos skipped: one class only" in msgs[0]
        else:
            assert not msgs


def test_macro_skips_and_counts_videos_with_one_class():
    rng = np.random.default_rng(0)
    labels, scores = random_videos(rng, 12)
    for i in (1, 4, 7):
        labels[i] = np.zeros_like(labels[i])
    with pytest.warns(UndefinedMetricWarning, match=r"3 of 12 videos skipped: one class only"):
        got = frame_auroc(labels, scores, average="macro")
    keep = [i for i in range(12) if i not in (1, 4, 7)]
    assert got == pytest.approx(np.mean([roc_auc_score(labels[i], scores[i]) for i in keep]))
    # micro and macro differ on such data (the point of reporting both)
    assert got != frame_auroc(labels, scores)


def test_sentinel_by_hand():
    # video 0: all normal, scores 1, 2, 3 -> + normal@1, anomalous@3:
    #   positive 3 beats 1, 2, 1 and ties 3: (3 + 0.5) / 4 = 0.875
    # video 1: all anomalous, scores 2, 5 -> + normal@2, anomalous@5:
    #   positives 2 (tie: 0.5), 5, 5 against the normal 2: 2.5 / 3
    # video 2: normal 0.1, anomalous 0.9 -> sentinels change nothing: 1
    labels = [np.array([0, 0, 0]), np.array([1, 1]), np.array([0, 1])]
    scores = [np.array([1.0, 2.0, 3.0]), np.array([2.0, 5.0]), np.array([0.1, 0.9])]
    got = frame_auroc(labels, scores, average="macro", sentinel=True)
    assert got == pytest.approx((0.875 + 2.5 / 3 + 1.0) / 3, rel=1e-15)
    # without sentinels only video 2 counts
    with pytest.warns(UndefinedMetricWarning, match="2 of 3 videos skipped"):
        assert frame_auroc(labels, scores, average="macro") == 1.0
    # AP of video 0 with sentinels: ranking 3(+), 3(-) tied, then 2, 1, 1: P = 1/2 -> 0.5
    ap = frame_aupr(labels[:1], scores[:1], average="macro", sentinel=True)
    assert ap == pytest.approx(0.5)


@SETTINGS
@given(videos())
def test_sentinel_is_the_minmax_then_append_0_and_1_convention(data):
    """The published code: per-video min-max normalisation, then append label 0 with
    score 0 and label 1 with score 1 to every video."""
    labels, scores = data
    ref_auc, ref_ap = [], []
    for y, s in zip(labels, scores, strict=True):
        if s.min() == s.max():
            continue  # min-max undefined for a constant video
        n = (s - s.min()) / (s.max() - s.min())
        yy, ss = np.r_[y, 0, 1], np.r_[n, 0.0, 1.0]
        ref_auc.append(roc_auc_score(yy, ss))
        ref_ap.append(average_precision_score(yy, ss))
    keep = [i for i, s in enumerate(scores) if s.min() != s.max()]
    if not keep:
        return
    lab, sco = [labels[i] for i in keep], [scores[i] for i in keep]
    assert frame_auroc(lab, sco, average="macro", sentinel=True) == pytest.approx(
        np.mean(ref_auc), rel=1e-12
    )
    assert frame_aupr(lab, sco, average="macro", sentinel=True) == pytest.approx(
        np.mean(ref_ap), rel=1e-12
    )


def test_sentinel_inflates_a_random_detector():
    rng = np.random.default_rng(3)
    labels = [np.r_[np.zeros(30, int), np.ones(5 * (i % 2), int)] for i in range(20)]
    scores = [rng.random(len(y)) for y in labels]
    plain = quiet(frame_auroc, labels, scores, average="macro")
    with_sentinel = frame_auroc(labels, scores, average="macro", sentinel=True)
    assert with_sentinel > plain + 0.2  # normal-only videos count as ~0.97 each


def test_sentinel_needs_macro_and_is_not_an_eer_option():
    y, s = [np.array([0, 1])], [np.array([0.0, 1.0])]
    with pytest.raises(InputError, match="average='macro'"):
        frame_auroc(y, s, sentinel=True)
    with pytest.raises(InputError, match="average='macro'"):
        frame_aupr(y, s, average="micro", sentinel=True)
    with pytest.raises(TypeError):
        frame_eer(y, s, sentinel=True)
    with pytest.raises(InputError, match="average must be 'micro' or 'macro'"):
        frame_auroc(y, s, average="weighted")
    with pytest.raises(InputError, match="sentinel must be True or False"):
        frame_auroc(y, s, average="macro", sentinel="yes")


# ------------------------------------------------------------------------------ EER
def test_eer_hand_cases():
    # ROC points (0,0) (0,.5) (.5,1) (1,1): the tie at 0.5 gives the diagonal segment
    # (0,.5)-(.5,1); it meets FPR = 1 - TPR at (.25, .75)
    assert frame_eer([np.array([0, 0, 1, 1])], [np.array([0.1, 0.5, 0.5, 0.9])]) == 0.25
    # (0,0) (0,.5) (1/3,.5) (1/3,1) ...: crossing on the vertical segment FPR = 1/3
    y, s = np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.7, 0.6, 0.9])
    assert frame_eer([y], [s]) == pytest.approx(1 / 3, rel=1e-15)
    # crossing exactly at a ROC point (.5, .5)
    assert frame_eer([np.array([0, 0, 1, 1])], [np.array([0.1, 0.4, 0.35, 0.8])]) == 0.5
    # perfect and inverted detectors
    assert frame_eer([np.array([0, 1])], [np.array([0.0, 1.0])]) == 0.0
    assert frame_eer([np.array([0, 1])], [np.array([1.0, 0.0])]) == 1.0
    # all tied: the diagonal, crossed at 0.5
    assert frame_eer([np.array([0, 1, 0])], [np.ones(3)]) == 0.5


def naive_eer(y, s) -> Fraction:
    """Loop over the thresholds and the ROC polyline's segments in exact rationals."""
    y, s = np.asarray(y).astype(bool), np.asarray(s)
    pos, neg = int(y.sum()), int((~y).sum())
    pts = [(Fraction(0), Fraction(0))]
    for t in sorted(set(s.tolist()), reverse=True):
        flagged = s >= t
        pts.append(
            (Fraction(int((flagged & ~y).sum()), neg), Fraction(int((flagged & y).sum()), pos))
        )
    for (f0, t0), (f1, t1) in zip(pts[:-1], pts[1:], strict=True):
        g0, g1 = f0 + t0 - 1, f1 + t1 - 1
        if g0 < 0 <= g1:
            lam = -g0 / (g1 - g0)
            f, t = f0 + lam * (f1 - f0), t0 + lam * (t1 - t0)
            assert f == 1 - t  # on the line FPR = 1 - TPR (= miss rate)
            return f
    raise AssertionError("no crossing")


@SETTINGS
@given(videos())
def test_eer_equals_the_exact_polyline_crossing_and_is_symmetric(data):
    labels, scores = data
    y, s = np.concatenate(labels), np.concatenate(scores)
    if not two_classes(y):
        return
    got = frame_eer(labels, scores)
    assert got == float(naive_eer(y, s))
    # swapping the classes and negating the scores reflects the ROC curve about the
    # line FPR = 1 - TPR: the EER is unchanged
    assert frame_eer([1 - y], [-s]) == pytest.approx(got, abs=1e-15)
    both = [i for i, yy in enumerate(labels) if two_classes(yy)]
    if both:
        macro = quiet(frame_eer, labels, scores, average="macro")
        assert macro == pytest.approx(
            np.mean([float(naive_eer(labels[i], scores[i])) for i in both]), rel=1e-12
        )


# -------------------------------------------------------------------- preprocessing
def test_preprocessing_is_off_by_default():
    labels, scores = random_videos(np.random.default_rng(1), 3)
    y2, s2 = preprocess_frame_scores(labels, scores)
    for a, b in zip(labels + scores, y2 + s2, strict=True):
        assert np.array_equal(a, b)


def test_smoothing_is_per_video_gaussian_nearest():
    labels = [np.array([0, 0, 1, 1, 0]), np.array([0, 1, 0])]
    scores = [np.array([0.0, 0.0, 10.0, 0.0, 0.0]), np.array([100.0, 0.0, 0.0])]
    _, s = preprocess_frame_scores(labels, scores, sigma=1.5)
    for got, raw in zip(s, scores, strict=True):  # video 1's 100 does not leak into video 0
        np.testing.assert_allclose(got, gaussian_filter1d(raw, 1.5, mode="nearest"), rtol=1e-14)
    assert s[0][2] < 10 and s[0][1] > 0


def test_minmax_per_video_and_constant_video_warns():
    labels = [np.array([0, 1, 1]), np.array([0, 1]), np.array([1, 0])]
    scores = [np.array([2.0, 4.0, 3.0]), np.array([7.0, 7.0]), np.array([-1.0, 1.0])]
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 videos with constant scores"):
        _, s = preprocess_frame_scores(labels, scores, normalise=True)
    np.testing.assert_array_equal(s[0], [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(s[1], [0.0, 0.0])
    np.testing.assert_array_equal(s[2], [0.0, 1.0])
    # extreme ranges do not overflow
    _, s = preprocess_frame_scores([np.array([0, 1])], [np.array([-1e308, 1e308])], normalise=True)
    np.testing.assert_array_equal(s[0], [0.0, 1.0])


def test_drop_leading_drops_labels_and_scores_before_smoothing():
    labels = [np.array([1, 0, 0, 1, 0]), np.array([0, 1, 1])]
    scores = [np.array([1e6, 1.0, 2.0, 3.0, 4.0]), np.array([5.0, 6.0, 7.0])]
    y, s = preprocess_frame_scores(labels, scores, drop_leading=1)
    np.testing.assert_array_equal(y[0], [0, 0, 1, 0])
    np.testing.assert_array_equal(y[1], [1, 1])
    np.testing.assert_array_equal(s[0], [1.0, 2.0, 3.0, 4.0])
    # order: drop, then smooth (the dropped 1e6 never reaches the kept frames), then min-max
    _, s = preprocess_frame_scores(labels, scores, drop_leading=1, sigma=1.0, normalise=True)
    sm = gaussian_filter1d(np.array([1.0, 2.0, 3.0, 4.0]), 1.0, mode="nearest")
    np.testing.assert_allclose(s[0], (sm - sm.min()) / (sm.max() - sm.min()), rtol=1e-14)
    with pytest.raises(InputError, match=r"drop_leading=3 removes every frame of video 1 \(3"):
        preprocess_frame_scores(labels, scores, drop_leading=3)


def test_preprocessing_changes_the_metric_as_expected():
    # a noisy spike in a normal stretch: smoothing lowers it below the anomalous plateau
    y = np.array([0] * 10 + [1] * 5 + [0] * 10)
    s = np.r_[np.zeros(10), np.full(5, 0.6), np.zeros(10)]
    s[3] = 1.0
    assert frame_auroc([y], [s]) < 1.0
    _, ss = preprocess_frame_scores([y], [s], sigma=1.0)
    assert frame_auroc([y], ss) == 1.0


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"sigma": float("nan")}, "sigma must be a finite number >= 0"),
        ({"sigma": True}, "sigma must be a finite number >= 0"),
        ({"normalise": 1}, "normalise must be True or False"),
        ({"drop_leading": -1}, "drop_leading must be an integer >= 0"),
        ({"drop_leading": 1.5}, "drop_leading must be an integer >= 0"),
        ({"drop_leading": True}, "drop_leading must be an integer >= 0"),
    ],
)
def test_preprocessing_option_errors(opts, match):
    with pytest.raises(InputError, match=match):
        preprocess_frame_scores([np.array([0, 1])], [np.array([0.0, 1.0])], **opts)


# ------------------------------------------------------------------------ bad inputs
def test_mismatched_lengths_name_the_video_and_both_lengths():
    labels = [np.array([0, 1]), np.array([0, 1, 1])]
    scores = [np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0, 3.0])]
    for fn in (frame_auroc, frame_aupr, frame_eer, preprocess_frame_scores):
        with pytest.raises(InputError, match="video 1: labels has 3 frames but scores has 4"):
            fn(labels, scores)


def test_mismatched_number_of_videos():
    with pytest.raises(InputError, match="2 label arrays and 1 score arrays"):
        frame_auroc([np.array([0, 1])] * 2, [np.array([0.0, 1.0])])


def test_empty_inputs():
    with pytest.raises(InputError, match="no video"):
        frame_auroc([], [])
    with pytest.raises(InputError, match="video 1 has no frames"):
        frame_auroc([np.array([0, 1]), np.array([])], [np.array([0.0, 1.0]), np.array([])])


def test_nan_scores_name_the_video_and_frame():
    labels = [np.array([0, 1]), np.array([0, 1, 0])]
    scores = [np.array([0.0, 1.0]), np.array([0.0, np.nan, 1.0])]
    with pytest.raises(InputError, match="scores of video 1 holds a non-finite score at frame 1"):
        frame_auroc(labels, scores)
    scores[1][1] = np.inf
    with pytest.raises(InputError, match="non-finite score at frame 1"):
        frame_eer(labels, scores, average="macro")


def test_non_binary_labels():
    with pytest.raises(InputError, match="labels of video 0 must hold 0 .* found 2 at frame 1"):
        frame_auroc([np.array([0, 2])], [np.array([0.0, 1.0])])


def test_a_flat_array_is_not_a_list_of_videos():
    with pytest.raises(InputError, match=r"must be a 1-D array .* pass \[labels\], \[scores\]"):
        frame_auroc(np.array([0, 1]), np.array([0.0, 1.0]))


def test_one_class_is_nan_with_a_warning():
    y, s = [np.zeros(4, int), np.zeros(3, int)], [np.arange(4.0), np.arange(3.0)]
    for fn in (frame_auroc, frame_aupr, frame_eer):
        with pytest.warns(UndefinedMetricWarning, match="all 7 frames are normal"):
            assert math.isnan(fn(y, s))
        with pytest.warns(UndefinedMetricWarning, match="none of the 2 videos holds both"):
            assert math.isnan(fn(y, s, average="macro"))


# ------------------------------------------------------------ pixel-level criterion
def random_frames(rng, n=14, shape=(6, 7), dtype=np.float64, levels=None):
    labels = (np.arange(n) % 3 == 0).astype(int)
    labels[1] = 1
    masks, maps = [], []
    for i in range(n):
        m = np.zeros(shape, bool)
        if labels[i]:
            y0, x0 = rng.integers(0, 3, 2)
            m[y0 : y0 + int(rng.integers(1, 4)), x0 : x0 + int(rng.integers(1, 5))] = True
        a = rng.random(shape) if levels is None else rng.integers(0, levels, shape) / levels
        a = a + 0.5 * m * rng.random()
        masks.append(m)
        maps.append(a.astype(dtype))
    return labels, masks, maps


def brute_force_criterion(labels, masks, maps, coverage):
    """Loop over every distinct map value as a threshold (and +inf)."""
    values = np.unique(np.concatenate([np.ravel(a) for a in maps]))
    pts = {}
    n_pos = int(np.sum(labels))
    n_neg = len(labels) - n_pos
    for t in [np.inf, *values[::-1].tolist()]:
        tp = fp = 0
        for y, m, a in zip(labels, masks, maps, strict=True):
            flagged = a >= t
            if y:
                tp += flagged[m].sum() / m.sum() >= coverage
            else:
                fp += bool(flagged.any())
        pts[t] = (fp / n_neg, tp / n_pos)
    curve = [pts[t] for t in sorted(pts, reverse=True)]
    fpr, tpr = np.array(curve).T
    return pts, float(np.trapezoid(tpr, fpr))


@pytest.mark.parametrize("coverage", [0.4, 0.1, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("levels", [None, 4])  # continuous maps, heavily tied maps
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pixel_criterion_equals_brute_force_over_all_thresholds(coverage, levels, dtype):
    rng = np.random.default_rng(int(coverage * 10) + (levels or 0))
    labels, masks, maps = random_frames(rng, dtype=dtype, levels=levels)
    pts, area = brute_force_criterion(labels, masks, maps, coverage)
    fpr, tpr, thr = pixel_criterion_curve(labels, masks, maps, coverage=coverage)
    assert thr[0] == np.inf and (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1, 1)
    assert np.all(np.diff(thr) < 0)
    for f, t, th in zip(fpr, tpr, thr, strict=True):  # every curve point is right
        assert pts[float(th)] == (f, t)
    assert set(pts.values()) == set(
        zip(fpr.tolist(), tpr.tolist(), strict=True)
    )  # and none is missing
    auc = pixel_criterion_auc(labels, masks, maps, coverage=coverage)
    assert auc == pytest.approx(area, abs=1e-12)
    v = pixel_criterion_values(labels, masks, maps, coverage=coverage)
    assert auc == pytest.approx(roc_auc_score(labels, v), abs=1e-12)


def test_pixel_criterion_hand_case():
    # anomalous frame: 5 mask pixels valued 5..9 -> 40% = 2 pixels -> detected at t <= 8;
    # normal frame: max 6 -> a false positive at t <= 6.
    m = np.zeros((2, 5), bool)
    m[0] = True
    a = np.array([[5.0, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    n = np.array([[0.0, 1, 2, 3, 6], [0, 0, 0, 0, 0]])
    labels, masks, maps = [1, 0], [m, np.zeros_like(m)], [a, n]
    np.testing.assert_array_equal(pixel_criterion_values(labels, masks, maps), [8.0, 6.0])
    fpr, tpr, thr = pixel_criterion_curve(labels, masks, maps)
    np.testing.assert_array_equal(thr, [np.inf, 8.0, 6.0])
    np.testing.assert_array_equal(fpr, [0, 0, 1])
    np.testing.assert_array_equal(tpr, [0, 1, 1])
    assert pixel_criterion_auc(labels, masks, maps) == 1.0
    # coverage 0.7 of 5 pixels (3.5) -> 4 pixels -> detected at t <= 6: tied with the normal
    assert pixel_criterion_values(labels, masks, maps, coverage=0.7)[0] == 6.0
    assert pixel_criterion_auc(labels, masks, maps, coverage=0.7) == 0.5


def test_coverage_is_the_ratio_in_float64():
    # 0.7 * 10 = 7.000000000000001 in float64, but 7 / 10 >= 0.7: 7 pixels suffice
    m = np.ones((1, 10), bool)
    a = np.arange(10.0)[None]
    assert pixel_criterion_values([1], [m], [a], coverage=0.7)[0] == 3.0  # 7th largest
    # just above 1/3: ceil(c * 3) = 1 in float64, but 1/3 < c: 2 of 3 pixels are needed
    c = float(np.nextafter(1 / 3, 1))
    m3, a3 = np.ones((1, 3), bool), np.array([[1.0, 2.0, 3.0]])
    assert pixel_criterion_values([1], [m3], [a3], coverage=c)[0] == 2.0
    assert pixel_criterion_values([1], [m3], [a3], coverage=1 / 3)[0] == 3.0


def test_pixel_criterion_errors():
    m = np.zeros((3, 3), bool)
    a = np.zeros((3, 3))
    with pytest.raises(InputError, match="frame 1 is labelled anomalous but its mask is empty"):
        pixel_criterion_auc([0, 1], [m, m], [a, a])
    mm = m.copy()
    mm[1, 1] = True
    with pytest.raises(InputError, match="frame 0 is labelled normal but its mask has 1"):
        pixel_criterion_auc([0, 1], [mm, mm], [a, a])
    with pytest.raises(InputError, match=r"maps\[1\] has shape \(2, 3\) but masks\[1\]"):
        pixel_criterion_auc([0, 1], [m, mm], [a, a[:2]])
    with pytest.raises(InputError, match="2 labels, 2 masks and 1 maps"):
        pixel_criterion_auc([0, 1], [m, mm], [a])
    with pytest.raises(InputError, match="non-finite"):
        pixel_criterion_auc([0, 1], [m, mm], [a, np.full((3, 3), np.nan)])
    for bad in (0, 0.0, 1.5, -0.1, True):
        with pytest.raises(InputError, match=r"coverage must be a fraction in \(0, 1\]"):
            pixel_criterion_auc([0, 1], [m, mm], [a, a], coverage=bad)
    with pytest.warns(UndefinedMetricWarning, match="no anomalous frames"):
        assert math.isnan(pixel_criterion_auc([0, 0], [m, m], [a, a]))


# -------------------------------------------------------------- registered metrics
def video_record(labels, scores, *, maps=None, masks=None, order=None):
    """A record of all frames of ``labels``/``scores`` (one array per video), in
    ``order`` (indices into the flat frame list), and its explanation."""
    vids, fidx, y, s = [], [], [], []
    for v, (lab, sc) in enumerate(zip(labels, scores, strict=True)):
        vids += [f"v{v:02d}"] * len(lab)
        fidx += list(range(len(lab)))
        y += list(lab)
        s += list(sc)
    n = len(y)
    order = np.arange(n) if order is None else np.asarray(order, dtype=int)
    if maps is None:
        maps = [np.full((4, 4), sc, np.float32) for sc in s]
    if masks is None:
        masks = [np.zeros((4, 4), bool) for _ in range(n)]
    ids = [f"{vids[i]}/{fidx[i]:03d}" for i in order]
    inputs = Inputs(
        ids=ids,
        category="toy-video",
        native_sizes=[maps[i].shape for i in order],
        video_ids=[vids[i] for i in order],
        frame_index=np.array([fidx[i] for i in order], dtype=np.int64),
    )
    targets = Targets(labels=np.array([y[i] for i in order]), masks=[masks[i] for i in order])
    expl = Explanation(
        explainer="toy",
        maps=np.stack([maps[i] for i in order]) if order.size else np.zeros((0, 4, 4)),
        native=[maps[i] for i in order],
        scores=np.array([s[i] for i in order], dtype=np.float64),
        score_note="frame score = detector score",
    )
    return Record(inputs, targets), expl


def run(metric, record, expl):
    return metric.compute(metric.update(metric.init(), record, expl))


def test_registered_frame_metrics_equal_the_functions():
    rng = np.random.default_rng(5)
    labels, scores = random_videos(rng, 5)
    labels[2] = np.zeros_like(labels[2])
    perm = rng.permutation(sum(map(len, labels)))
    record, expl = video_record(labels, scores, order=perm)  # shuffled frames
    cases = [
        ("frame_auroc", {}, frame_auroc, {}),
        ("frame_auroc", {"average": "macro"}, frame_auroc, {"average": "macro"}),
        (
            "frame_auroc",
            {"average": "macro", "sentinel": True},
            frame_auroc,
            {"average": "macro", "sentinel": True},
        ),
        ("frame_aupr", {"average": "macro"}, frame_aupr, {"average": "macro"}),
        ("frame_aupr", {}, frame_aupr, {}),
        ("frame_eer", {}, frame_eer, {}),
        ("frame_eer", {"average": "macro"}, frame_eer, {"average": "macro"}),
    ]
    for name, opts, fn, fopts in cases:
        m = METRICS.get(name)(**opts)
        got = quiet(run, m, record, expl)
        assert got.value == quiet(fn, labels, scores, **fopts), (name, opts)
        assert got.n == sum(map(len, labels)) and got.per_image is None
    m = METRICS.get("frame_auroc")(average="macro", sigma=2.0, normalise=True, drop_leading=2)
    with pytest.warns(UndefinedMetricWarning, match="1 of 5 videos skipped"):
        got = run(m, record, expl)
    y2, s2 = preprocess_frame_scores(labels, scores, sigma=2.0, normalise=True, drop_leading=2)
    assert got.value == quiet(frame_auroc, y2, s2, average="macro")
    assert got.n == sum(map(len, y2))
    assert m.label == "frame_auroc[macro,sigma=2,minmax,drop=2]"
    assert "macro over 4 of 5 videos (1 with one class skipped)" in got.note
    assert "smoothing sigma=2" in got.note
    assert "per-video min-max (optimistic: uses test statistics)" in got.note
    assert "first 2 frames of every video dropped" in got.note


def test_registered_labels_notes_and_curves():
    labels, scores = random_videos(np.random.default_rng(2), 3)
    record, expl = video_record(labels, scores)
    m = METRICS.get("frame_auroc")()
    assert m.label == "frame_auroc" and m.family == "video" and m.higher_is_better
    out = run(m, record, expl)
    fpr, tpr = out.curves["frame_roc"]
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    assert out.note.startswith(f"micro: {out.n} frames of 3 videos pooled")
    assert "frame score = detector score" in out.note
    assert METRICS.get("frame_auroc")(average="macro").label == "frame_auroc[macro]"
    s = METRICS.get("frame_aupr")(average="macro", sentinel=True)
    assert s.label == "frame_aupr[macro,sentinel]"
    assert "sentinel frames" in run(s, record, expl).note
    e = METRICS.get("frame_eer")()
    assert not e.higher_is_better and e.label == "frame_eer"
    assert "sentinel" not in e.params
    p = METRICS.get("pixel_criterion_auc")(coverage=0.5)
    assert p.label == "pixel_criterion_auc[coverage=0.5]"
    with pytest.raises(InputError, match="sentinel=True is a per-video convention"):
        METRICS.get("frame_auroc")(sentinel=True)
    with pytest.raises(InputError, match="sigma must be"):
        METRICS.get("frame_aupr")(sigma=-2.0)


def test_registered_pixel_criterion_equals_the_function():
    rng = np.random.default_rng(9)
    labels, masks, maps = random_frames(rng, n=12)
    per_video = [labels[:5], labels[5:]]
    record, expl = video_record(
        per_video, [np.zeros(5), np.zeros(7)], maps=maps, masks=masks, order=rng.permutation(12)
    )
    m = METRICS.get("pixel_criterion_auc")()
    out = run(m, record, expl)
    assert out.value == pixel_criterion_auc(labels, masks, maps)
    assert out.n == 12 and "pixel_criterion_roc" in out.curves
    assert "anomalous and" in out.note and ">= 40% of its anomalous pixels" in out.note
    # memory: one number per frame
    state = m.update(m.init(), record, expl)
    assert all(isinstance(v[1], float) for f in state.videos.values() for v in f.values())


def test_registered_errors():
    labels, scores = [np.array([0, 1, 0])], [np.array([0.0, 1.0, 0.5])]
    record, expl = video_record(labels, scores)
    m = METRICS.get("frame_auroc")()
    bare = Record(Inputs(ids=record.ids, category="x"), Targets(labels=record.targets.labels))
    with pytest.raises(
        InputError, match="record.inputs.video_ids and record.inputs.frame_index are missing"
    ):
        m.update(m.init(), bare, expl)
    half = Record(
        Inputs(ids=record.ids, category="x", video_ids=record.inputs.video_ids),
        Targets(labels=record.targets.labels),
    )
    with pytest.raises(InputError, match=r"needs video records: record.inputs.frame_index is"):
        m.update(m.init(), half, expl)
    bad_index = Record(
        Inputs(
            ids=record.ids,
            category="x",
            video_ids=record.inputs.video_ids,
            frame_index=np.array([0.0, 1.5, 2.0]),
        ),
        Targets(labels=record.targets.labels),
    )
    with pytest.raises(InputError, match=r"frame_index\[1\] .* is 1.5; expected an integer"):
        m.update(m.init(), bad_index, expl)
    state = m.update(m.init(), record, expl)
    with pytest.raises(InputError, match="frame 0 of video 'v00' is given twice"):
        m.update(state, record.subset([0]), expl.subset([0]))
    with pytest.raises(InputError, match="both hold frame 1 of video 'v00'"):
        m.merge(m.update(m.init(), record.subset([1, 2]), expl.subset([1, 2])), state)
    twice = Record(
        Inputs(ids=["a", "b"], category="x", video_ids=["v", "v"], frame_index=np.array([3, 3])),
        Targets(labels=np.array([0, 1])),
    )
    with pytest.raises(InputError, match="frame 3 of video 'v' is given twice"):
        m.update(m.init(), twice, expl.subset([0, 1]))
    expl.scores[1] = np.nan
    with pytest.raises(InputError, match="score of frame 1 of video 'v00'.* is nan"):
        m.update(m.init(), record, expl)
    # a gap in the frames cannot be smoothed
    rec2, ex2 = video_record([np.array([0, 1, 0, 1])], [np.array([0.0, 1.0, 0.2, 0.9])])
    smooth = METRICS.get("frame_auroc")(sigma=1.0)
    st_ = smooth.update(smooth.init(), rec2.subset([0, 1, 3]), ex2.subset([0, 1, 3]))
    with pytest.raises(InputError, match="video 'v00' misses frame 2"):
        smooth.compute(st_)
    assert math.isfinite(m.compute(st_).value)  # no preprocessing: gaps are fine
    pc = METRICS.get("pixel_criterion_auc")()
    no_masks = Record(rec2.inputs, Targets(labels=rec2.targets.labels))
    with pytest.raises(InputError, match="needs pixel masks"):
        pc.update(pc.init(), no_masks, ex2)
    with pytest.raises(InputError, match="frame 1 of video 'v00' is labelled anomalous but its"):
        pc.update(pc.init(), rec2, ex2)


def test_empty_state_is_nan():
    for name in ("frame_auroc", "frame_aupr", "frame_eer", "pixel_criterion_auc"):
        m = METRICS.get(name)()
        with pytest.warns(UndefinedMetricWarning, match="no frames"):
            out = m.compute(m.init())
        assert math.isnan(out.value) and out.n == 0


OPTIONS = [
    ("frame_auroc", {}),
    ("frame_auroc", {"average": "macro"}),
    ("frame_aupr", {"average": "macro", "sentinel": True, "sigma": 1.0}),
    ("frame_aupr", {"normalise": True, "drop_leading": 1}),
    ("frame_eer", {"average": "macro", "sigma": 0.7}),
    ("frame_eer", {}),
]


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_merge_of_any_split_equals_the_whole(data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels, scores = random_videos(rng, int(rng.integers(1, 5)), both=bool(rng.integers(2)))
    n = sum(map(len, labels))
    masks, maps = [], []
    for y in np.concatenate(labels):
        m = np.zeros((3, 4), bool)
        if y:
            m[rng.integers(0, 3), : rng.integers(1, 5)] = True
        masks.append(m)
        maps.append(rng.integers(0, 5, (3, 4)).astype(np.float32))
    side = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    perm = rng.permutation(n)
    a_idx, b_idx = perm[side[perm]], perm[~side[perm]]
    record, expl = video_record(labels, scores, maps=maps, masks=masks, order=perm)
    rec_a, ex_a = video_record(labels, scores, maps=maps, masks=masks, order=a_idx)
    rec_b, ex_b = video_record(labels, scores, maps=maps, masks=masks, order=b_idx)
    for name, opts in [
        *OPTIONS,
        ("pixel_criterion_auc", {}),
        ("pixel_criterion_auc", {"coverage": 0.3}),
    ]:
        m = METRICS.get(name)(**opts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            whole = m.compute(m.update(m.init(), record, expl))
            sa = m.update(m.init(), rec_a, ex_a)
            sb = m.update(m.init(), rec_b, ex_b)
            merged = m.compute(m.merge(sa, sb))
            swapped = m.compute(m.merge(pickle.loads(pickle.dumps(sb)), sa))
        for got in (merged, swapped):
            assert got.value == whole.value or (math.isnan(got.value) and math.isnan(whole.value))
            assert got.n == whole.n and got.note == whole.note
        assert isinstance(sa, FrameState)
