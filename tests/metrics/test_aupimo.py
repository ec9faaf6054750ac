"""AUPIMO: hand-computed values, a brute-force implementation of the definition,
mergeable states and invariance (hypothesis), undefined cases, and agreement with
anomalib's implementation (stored fixture; live when anomalib is importable)."""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from make_aupimo_fixture import synthetic_set
from scipy.stats import rankdata

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics.aupimo import AUPIMO, AUPIMOState, aupimo, aupimo_per_image
from xeval.metrics.base import Explanation
from xeval.record import Inputs, Record, Targets

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "aupimo_anomalib.npz"


# ------------------------------------------------------------------ brute force
def _log_area(fpr, tpr, lower, upper):
    """Trapezoid area of the polyline (ln fpr, tpr) over [ln L, ln U] (values there
    interpolated) divided by ln(U / L); ``fpr`` non-decreasing from 0."""
    lo, hi = math.log(lower), math.log(upper)
    area = 0.0
    for k in range(len(fpr) - 1):
        if fpr[k + 1] == fpr[k] or fpr[k] == 0.0:  # vertical / from ln 0 (below ln L)
            continue
        x0, x1, y0, y1 = math.log(fpr[k]), math.log(fpr[k + 1]), tpr[k], tpr[k + 1]
        if x1 <= lo or x0 >= hi:
            continue
        a0, a1 = max(x0, lo), min(x1, hi)
        s = (y1 - y0) / (x1 - x0)
        area += 0.5 * ((y0 + s * (a0 - x0)) + (y0 + s * (a1 - x0))) * (a1 - a0)
    return area / math.log(upper / lower)


def brute_aupimo(masks, maps, lower, upper, *, top=None):
    """Every distinct score (normal images and the image's positives) as a threshold,
    counting pixels ``>= t`` (FPR: mean over the normal images of their fraction); the
    polyline from the point above all scores (FPR 0, TPR 0); NaN where undefined.

    ``top``: keep only each normal image's ``top`` highest scores and the thresholds
    whose FPR is <= 2 U (exact when no image can have ``top`` pixels above such a
    threshold), for large images."""
    normal = [
        np.asarray(a, np.float64).ravel() for m, a in zip(masks, maps, strict=True) if not m.any()
    ]
    sizes = [x.size for x in normal]
    if top is not None:
        normal = [np.sort(x)[-top:] for x in normal]
    out = np.full(len(maps), np.nan)
    if not normal or all(not m.any() for m in masks):
        return out
    for i, (m, a) in enumerate(zip(masks, maps, strict=True)):
        if not m.any():
            continue
        pos = np.asarray(a, np.float64)[m]
        thr = np.unique(np.concatenate([*normal, pos]))[::-1]
        counts = [(x[None, :] >= thr[:, None]).sum(axis=1) for x in normal]
        fpr = np.mean([c / s for c, s in zip(counts, sizes, strict=True)], axis=0)
        tpr = (pos[None, :] >= thr[:, None]).mean(axis=1)
        if top is not None:
            assert all(c.max() == top for c in counts)  # truncation reached
            keep = fpr <= 2 * upper
            assert all(c[keep].max() < top for c in counts)  # ... not below 2 U
            fpr, tpr = fpr[keep], tpr[keep]
        if fpr[fpr > 0].min() > lower:
            return np.full(len(maps), np.nan)
        out[i] = _log_area(np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr)), lower, upper)
    return out


def random_set(seed, *, n_normal=4, n_anomalous=4, levels=None, same_size=False):
    """Random maps of random sizes (normal images too), anomalous images with a
    rectangular mask and shifted scores; ``levels`` rounds the maps (ties)."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    kinds = rng.permutation([False] * n_normal + [True] * n_anomalous)
    for anomalous in kinds:
        h, w = (8, 9) if same_size else rng.integers(5, 14, 2)
        a = rng.normal(size=(h, w))
        m = np.zeros((h, w), bool)
        if anomalous:
            y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
            m[y0 : y0 + rng.integers(1, 4), x0 : x0 + rng.integers(1, 4)] = True
            a = a + m * rng.uniform(0, 3)
        if levels:
            a = np.round(a * levels) / levels
        masks.append(m)
        maps.append(a)
    return masks, maps


# ------------------------------------------------------------------ hand-computed
def _image(values, shape=(2, 5), mask=False):
    a = np.zeros(shape)
    a.flat[: len(values)] = values
    m = np.zeros(shape, bool)
    if mask:
        m.flat[: len(values)] = True
    return m, a


def test_hand_computed_no_ties():
    # normal: scores 0..9 -> FPR(9)=.1, FPR(8)=.2, ..., FPR(5)=.5; positives 9.5, 7.5,
    # 5.5, 0.5 (P=4): TPR = 1/4 on (ln .1, ln .2), 1/2 on (ln .2, ln .4), 3/4 on
    # (ln .4, ln .5) -> area = 1/4 ln 2 + 1/2 ln 2 + 3/4 ln 1.25 = 3/4 ln 2.5
    m0, a0 = _image(np.arange(10.0))
    m1, a1 = _image([9.5, 7.5, 5.5, 0.5], mask=True)
    per = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.1, 0.5))
    assert np.isnan(per[0])
    assert per[1] == pytest.approx(0.75 * math.log(2.5) / math.log(5), abs=1e-14)


def test_hand_computed_ties_between_normal_and_positive_scores():
    # positives 9, 7, 7, 3 tied with normal scores 9 and 7. Segments (ln FPR, TPR):
    # level 8: (ln .1, 1/4) -> (ln .2, 1/4); level 7 (tie): (ln .2, 1/4) -> (ln .3, 3/4)
    # straight; then 3/4 up to ln .5. (Level 9 goes from ln 0 and lies below ln L.)
    m0, a0 = _image(np.arange(10.0))
    m1, a1 = _image([9.0, 7.0, 7.0, 3.0], mask=True)
    expected = 0.25 * math.log(2) + 0.5 * math.log(1.5) + 0.75 * math.log(5 / 3)
    per = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.1, 0.5))
    assert per[1] == pytest.approx(expected / math.log(5), abs=1e-14)
    # step convention would give 1/4 ln 1.5 or 3/4 ln 1.5 on the tied segment instead
    assert per[1] != pytest.approx((expected - 0.25 * math.log(1.5)) / math.log(5), abs=1e-3)


def test_hand_computed_bounds_between_curve_points_interpolate_in_log_space():
    # same curve, bounds (0.25, 0.45): the tied segment is cut at ln .25, its value
    # there interpolated linearly in ln FPR; the last segment is cut at ln .45
    m0, a0 = _image(np.arange(10.0))
    m1, a1 = _image([9.0, 7.0, 7.0, 3.0], mask=True)
    y_lo = 0.25 + 0.5 * math.log(0.25 / 0.2) / math.log(0.3 / 0.2)
    area = 0.5 * (y_lo + 0.75) * math.log(0.3 / 0.25) + 0.75 * math.log(0.45 / 0.3)
    per = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.25, 0.45))
    assert per[1] == pytest.approx(area / math.log(0.45 / 0.25), abs=1e-14)
    # lower bound on a horizontal segment: only the width changes
    per = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.15, 0.45))
    area = 0.25 * math.log(0.2 / 0.15) + 0.5 * math.log(1.5) + 0.75 * math.log(0.45 / 0.3)
    assert per[1] == pytest.approx(area / math.log(3), abs=1e-14)


def test_hand_computed_mean_of_per_image_fpr_for_normal_images_of_different_sizes():
    # normal A: 4 pixels 0,1,2,3 (weight 1/8 each); normal B: 2 pixels 0.5, 2.5 (1/4):
    # FPR(3)=1/8, FPR(2.5)=3/8, FPR(2)=1/2. Positives 2.7, 2.2: TPR 1/2 on
    # (ln 1/8, ln 3/8), 1 on (ln 3/8, ln 1/2). (Pooled FPR would give other levels.)
    ma, aa = _image([0, 1, 2, 3], shape=(2, 2))
    mb, ab = _image([0.5, 2.5], shape=(1, 2))
    mp, ap = _image([2.7, 2.2], shape=(1, 2), mask=True)
    per = aupimo_per_image([ma, mp, mb], [aa, ap, ab], fpr_bounds=(1 / 8, 1 / 2))
    expected = (0.5 * math.log(3) + math.log(4 / 3)) / math.log(4)
    assert np.isnan(per[[0, 2]]).all()
    assert per[1] == pytest.approx(expected, abs=1e-14)
    assert aupimo([ma, mp, mb], [aa, ap, ab], fpr_bounds=(1 / 8, 1 / 2)) == per[1]


def test_hand_computed_tied_block_of_normal_scores_across_upper_bound():
    # normal (20 pixels): 10, 9, ten 7s, eight 0s -> FPR(10)=.05, FPR(9)=.1, FPR(7)=.6;
    # positives 9.5, 8, 7, 3: TPR 1/4 on (ln .05, ln .1), then the tie at 7 goes straight
    # from (ln .1, 1/2) to (ln .6, 3/4), cut at U = .12 (value interpolated in ln FPR)
    m0, a0 = _image([10, 9] + [7] * 10, shape=(4, 5))
    m1, a1 = _image([9.5, 8, 7, 3], mask=True)
    y_hi = 0.5 + 0.25 * math.log(0.12 / 0.1) / math.log(0.6 / 0.1)
    area = 0.25 * math.log(2) + 0.5 * (0.5 + y_hi) * math.log(1.2)
    per = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.05, 0.12))
    assert per[1] == pytest.approx(area / math.log(2.4), abs=1e-14)
    assert per[1] == pytest.approx(brute_aupimo([m0, m1], [a0, a1], 0.05, 0.12)[1], abs=1e-14)


def test_normal_pixels_of_anomalous_images_are_not_used():
    m0, a0 = _image(np.arange(10.0))
    m1, a1 = _image([9.5, 7.5, 5.5, 0.5], mask=True)
    base = aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.1, 0.5))
    a1 = a1.copy()
    a1[~m1] = 100.0  # very high scores outside the mask of the anomalous image
    assert np.array_equal(
        aupimo_per_image([m0, m1], [a0, a1], fpr_bounds=(0.1, 0.5)), base, equal_nan=True
    )


# ----------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("levels", [None, 4])
def test_matches_brute_force(seed, levels):
    masks, maps = random_set(seed, levels=levels)
    for bounds in ((0.03, 0.3), (0.05, 1.0), (0.05, 0.052)):
        got = aupimo_per_image(masks, maps, fpr_bounds=bounds)
        want = brute_aupimo(masks, maps, *bounds)
        assert not np.isnan(want).all()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=str(bounds))


def test_matches_brute_force_default_bounds_many_normal_pixels():
    # 4 normal images of ~ 30 000 pixels (different sizes): smallest FPR ~ 8e-6 < 1e-5
    rng = np.random.default_rng(7)
    masks, maps = [], []
    shapes = [(200, 150), (190, 160), (210, 140), (180, 170), (64, 48), (50, 60), (40, 40)]
    for i, (h, w) in enumerate(shapes):
        a = np.round(rng.normal(size=(h, w)) * 64) / 64  # ties
        m = np.zeros((h, w), bool)
        if i >= 4:
            m[5:15, 3 : 10 + 5 * i] = True
            a[m] += rng.uniform(2, 4) + np.round(rng.normal(size=m.sum()) * 64) / 64
        masks.append(m)
        maps.append(a)
    got = aupimo_per_image(masks, maps)
    want = brute_aupimo(masks, maps, 1e-5, 1e-4, top=100)
    assert not np.isnan(got[4:]).any() and np.nanmin(got) < np.nanmax(got)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_array_and_list_inputs_agree():
    masks, maps = random_set(3, same_size=True)
    a = aupimo_per_image(np.stack(masks), np.stack(maps), fpr_bounds=(0.03, 0.3))
    b = aupimo_per_image(masks, [x.astype(np.float32) for x in maps], fpr_bounds=(0.03, 0.3))
    np.testing.assert_allclose(a, b, atol=1e-6)


# -------------------------------------------------------------------- hypothesis
@st.composite
def aupimo_sets(draw):
    n_normal = draw(st.integers(1, 4))
    n_anomalous = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([3, 10, 100, None]))
    return random_set(seed, n_normal=n_normal, n_anomalous=n_anomalous, levels=levels)


def _pairs(masks, maps, batch):
    out = []
    for s in range(0, len(maps), batch):
        ms, ams = masks[s : s + batch], maps[s : s + batch]
        rec = Record(
            Inputs(ids=[f"img{i}" for i in range(s, s + len(ms))], category="c"),
            Targets(labels=np.array([m.any() for m in ms], np.int64), masks=list(ms)),
        )
        exp = Explanation(
            explainer="x",
            maps=np.zeros((len(ms), 1, 1)),
            native=list(ams),
            scores=np.zeros(len(ms)),
        )
        out.append((rec, exp))
    return out


def _state(metric, pairs):
    state = metric.init()
    for rec, exp in pairs:
        state = metric.update(state, rec, exp)
    return state


BOUNDS = (0.04, 0.5)  # resolvable unless the top normal score is heavily tied (then NaN)
QUIET = pytest.mark.filterwarnings("ignore::xeval.errors.UndefinedMetricWarning")


@QUIET
@settings(max_examples=50, deadline=None)
@given(aupimo_sets(), st.data())
def test_merge_of_split_states_equals_whole(data, d):
    masks, maps = data
    metric = AUPIMO(fpr_bounds=BOUNDS)
    pairs = _pairs(masks, maps, batch=1)
    whole = metric.compute(_state(metric, pairs))
    split = d.draw(st.integers(0, len(pairs)))
    a, b = _state(metric, pairs[:split]), _state(metric, pairs[split:])
    merged = metric.compute(metric.merge(a, b))
    assert merged.ids == whole.ids == [f"img{i}" for i in range(len(masks))]
    np.testing.assert_allclose(merged.per_image, whole.per_image, atol=1e-12)
    assert merged.value == pytest.approx(whole.value, abs=1e-12, nan_ok=True)
    assert merged.n == whole.n == np.count_nonzero(~np.isnan(whole.per_image))
    # pickled and batched states give the same
    again = metric.compute(pickle.loads(pickle.dumps(_state(metric, _pairs(masks, maps, 3)))))
    np.testing.assert_allclose(again.per_image, whole.per_image, atol=1e-12)
    np.testing.assert_allclose(
        whole.per_image, aupimo_per_image(masks, maps, fpr_bounds=BOUNDS), atol=1e-12
    )


@QUIET
@settings(max_examples=50, deadline=None)
@given(aupimo_sets(), st.floats(0.01, 100), st.floats(-10, 10))
def test_invariant_under_strictly_increasing_transform(data, scale, shift):
    masks, maps = data
    flat = np.concatenate([a.ravel() for a in maps])
    ranks = rankdata(flat, method="dense")  # strictly increasing on distinct values
    warped, affine, i = [], [], 0
    for a in maps:
        warped.append(np.exp(ranks[i : i + a.size].reshape(a.shape) / 10.0) * 3.0 - 7.0)
        affine.append(np.round(a * 1000) * scale + shift)  # exact ties, distinct kept
        i += a.size
    base = aupimo_per_image(masks, maps, fpr_bounds=BOUNDS)
    np.testing.assert_allclose(aupimo_per_image(masks, warped, fpr_bounds=BOUNDS), base, atol=1e-12)
    rounded = [np.round(a * 1000) for a in maps]
    np.testing.assert_allclose(
        aupimo_per_image(masks, affine, fpr_bounds=BOUNDS),
        aupimo_per_image(masks, rounded, fpr_bounds=BOUNDS),
        atol=1e-12,
    )


# ------------------------------------------------------------------ undefined
def test_too_few_normal_pixels_is_undefined_with_a_warning():
    masks, maps = random_set(0)  # ~ 4 x 80 normal pixels: FPR resolution >> 1e-5
    with pytest.warns(UndefinedMetricWarning, match="too few normal pixels"):
        per = aupimo_per_image(masks, maps)
    assert np.isnan(per).all() and per.shape == (len(masks),)
    metric = AUPIMO()
    with pytest.warns(UndefinedMetricWarning, match="lower FPR bound 1e-05"):
        v = metric.compute(_state(metric, _pairs(masks, maps, 3)))
    assert math.isnan(v.value) and v.n == 0 and np.isnan(v.per_image).all()
    assert len(v.ids) == len(masks) and "undefined" in v.note
    # resolvable lower bound: defined, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not math.isnan(aupimo(masks, maps, fpr_bounds=(0.01, 0.1)))


def test_smallest_fpr_equal_to_lower_bound_is_defined():
    m0, a0 = _image(np.arange(10.0))
    m1, a1 = _image([9.5, 7.5, 5.5, 0.5], mask=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aupimo([m0, m1], [a0, a1], fpr_bounds=(0.1, 0.2)) == pytest.approx(0.25)
    with pytest.warns(UndefinedMetricWarning, match="too few normal pixels"):
        assert math.isnan(aupimo([m0, m1], [a0, a1], fpr_bounds=(0.099, 0.2)))


def test_no_normal_or_no_anomalous_image_is_undefined():
    masks, maps = random_set(1)
    anomalous = [i for i, m in enumerate(masks) if m.any()]
    normal = [i for i, m in enumerate(masks) if not m.any()]
    with pytest.warns(UndefinedMetricWarning, match="no normal image"):
        per = aupimo_per_image([masks[i] for i in anomalous], [maps[i] for i in anomalous])
    assert np.isnan(per).all() and per.size == len(anomalous)
    with pytest.warns(UndefinedMetricWarning, match="no anomalous image"):
        v = aupimo([masks[i] for i in normal], [maps[i] for i in normal], fpr_bounds=BOUNDS)
    assert math.isnan(v)
    metric = AUPIMO()
    with pytest.warns(UndefinedMetricWarning, match="no images"):
        assert math.isnan(metric.compute(metric.init()).value)


def test_normal_images_get_nan_and_value_is_mean_over_anomalous():
    masks, maps = random_set(5, n_normal=3, n_anomalous=5)
    metric = AUPIMO(fpr_bounds=BOUNDS)
    v = metric.compute(_state(metric, _pairs(masks, maps, 2)))
    is_anom = np.array([m.any() for m in masks])
    assert np.isnan(v.per_image[~is_anom]).all() and not np.isnan(v.per_image[is_anom]).any()
    assert v.n == 5 and v.ids == [f"img{i}" for i in range(8)]
    assert v.value == pytest.approx(math.fsum(v.per_image[is_anom]) / 5, abs=1e-15)
    assert ((v.per_image[is_anom] >= 0) & (v.per_image[is_anom] <= 1)).all()
    assert "exact" in v.note


# ------------------------------------------------------------------ the class
def test_metric_class_attributes_options_and_registry():
    from xeval.registry import METRICS

    assert METRICS.get("aupimo") is AUPIMO
    m = AUPIMO()
    assert m.label == "aupimo" and m.params == {"fpr_bounds": (1e-5, 1e-4)}
    assert m.fpr_bounds == (1e-5, 1e-4)
    assert AUPIMO(fpr_bounds=[1e-6, 1e-5]).label == "aupimo@1e-06-1e-05"
    assert AUPIMO(fpr_bounds=[1e-6, 1e-5]).fpr_bounds == (1e-6, 1e-5)
    assert AUPIMO(fpr_bounds=[1e-6, 1e-5]).params == {"fpr_bounds": (1e-6, 1e-5)}
    assert AUPIMO.higher_is_better and AUPIMO.family == "localisation" and AUPIMO.per_image
    assert AUPIMO.needs == frozenset({"masks"})
    doc = AUPIMO.__doc__
    assert "Higher is better" in doc and "2024" in doc and "Bertoldo" in doc
    for bad in [(0, 1e-4), (1e-4, 1e-5), (1e-5, 1e-5), (0.1, 1.5), (1e-5,), "ab", (True, 0.5)]:
        with pytest.raises(InputError, match="fpr_bounds"):
            AUPIMO(fpr_bounds=bad)
    with pytest.raises(TypeError):
        AUPIMO((1e-5, 1e-4))


def test_state_rejects_empty_images_and_mismatched_ids():
    with pytest.raises(InputError, match="no pixels"):
        AUPIMOState().update([np.zeros((0, 3), bool)], [np.zeros((0, 3))])
    with pytest.raises(InputError, match="ids"):
        AUPIMOState().update([np.zeros((2, 2), bool)] * 2, [np.zeros((2, 2))] * 2, ids=["a"])
    with pytest.raises(InputError, match="shape"):
        aupimo_per_image([np.zeros((2, 2), bool)], [np.zeros((2, 3))])


# ------------------------------------------------------------------ anomalib
# anomalib evaluates the curves on 300 000 thresholds evenly spaced over the range of the
# normal scores and, at each bound, takes the grid point whose shared FPR is nearest to
# it (no interpolation), integrates between those points and still divides by
# ln(U / L), then clips to [0, 1]. With 30 normal 128 x 128 images the shared FPR moves
# in steps of 1 / 491 520 ~ 2.0e-6, so its range is [5/491520, 49/491520] ~ [1.017e-5,
# 9.969e-5] instead of [1e-5, 1e-4]: measured max |xeval - anomalib| = 8.8e-3 per image
# (mean 3.8e-3; anomalib 2.7.0). Integrating xeval's exact curve over anomalib's range
# and rescaling leaves only the grid's own error: measured max 1.9e-5 (mean 1.6e-6).
TOL_NOMINAL = 2e-2  # ~2.3 x the measured 8.8e-3
TOL_SAME_RANGE = 6e-5  # ~3 x the measured 1.9e-5


def _fixture():
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE.name} not found (tests/metrics/make_aupimo_fixture.py)")
    d = np.load(FIXTURE)
    params = {k: int(d[k]) for k in ("seed", "n_normal", "n_anomalous", "height", "width")}
    masks, maps = synthetic_set(**params)
    return d, masks, maps


def _anomalib_range_estimate(masks, maps, fpr_bounds):
    """xeval's exact curve integrated between the attainable shared-FPR levels nearest
    to each bound (what anomalib's grid lands on: all normal images have one size, so
    the levels are k / #normal pixels), rescaled to anomalib's normaliser and clipped."""
    n_pix = sum(m.size for m in masks if not m.any())
    lo, hi = (round(b * n_pix) / n_pix for b in fpr_bounds)
    per = aupimo_per_image(masks, maps, fpr_bounds=(lo, hi))
    return np.clip(per * math.log(hi / lo) / math.log(fpr_bounds[1] / fpr_bounds[0]), 0, 1)


def _compare_with_anomalib(masks, maps, ref, fpr_bounds):
    got = aupimo_per_image(masks, maps, fpr_bounds=fpr_bounds)
    is_anom = masks.any(axis=(1, 2))
    assert np.array_equal(np.isnan(ref), ~is_anom) and np.array_equal(np.isnan(got), ~is_anom)
    diff = np.abs(got - ref)[is_anom]
    assert diff.max() <= TOL_NOMINAL, diff
    same = np.abs(_anomalib_range_estimate(masks, maps, fpr_bounds) - ref)[is_anom]
    assert same.max() <= TOL_SAME_RANGE, same
    assert abs(np.nanmean(got) - np.nanmean(ref)) <= TOL_NOMINAL
    return diff


def test_matches_anomalib_fixture():
    d, masks, maps = _fixture()
    assert float(maps.astype(np.float64).sum()) == pytest.approx(float(d["maps_sum"]), rel=1e-9)
    assert np.array_equal(d["image_classes"].astype(bool), masks.any(axis=(1, 2)))
    ref = d["aupimos"]
    assert np.nanmax(ref) > 0.8 and np.nanmin(ref) < 0.1  # spread of values
    _compare_with_anomalib(masks, maps, ref, tuple(d["fpr_bounds"]))


@pytest.mark.slow
@pytest.mark.anomalib
def test_matches_anomalib_live():
    from _crosscheck import require

    aupimo_scores = require("anomalib.metrics.pimo.functional").aupimo_scores
    import torch

    d, masks, maps = _fixture()
    fpr_bounds = tuple(float(b) for b in d["fpr_bounds"])
    _, _, _, classes, ref, _ = aupimo_scores(
        torch.from_numpy(maps),
        torch.from_numpy(masks),
        num_thresholds=int(d["num_thresholds"]),
        fpr_bounds=fpr_bounds,
        force=False,
    )
    ref = ref.numpy().astype(np.float64)
    assert np.array_equal(classes.numpy().astype(bool), masks.any(axis=(1, 2)))
    _compare_with_anomalib(masks, maps, ref, fpr_bounds)
