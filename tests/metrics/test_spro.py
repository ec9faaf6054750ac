"""sPRO / AUC-sPRO: hand-checked values, a brute-force implementation of the definition,
mergeable states, invariances, relation to AUPRO, per-type averaging, undefined cases."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from xeval import metrics as M
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics.base import Explanation
from xeval.metrics.spro import AUCsPRO, auc_spro, spro_at, spro_curve
from xeval.record import DefectRegion, Inputs, Record, Targets

LIMITS = (0.01, 0.05, 0.1, 0.3, 1.0)


# ------------------------------------------------------------------ brute force
def _area(x, y, limit):
    """Trapezoid area of the polyline up to ``limit`` (value there interpolated) / limit."""
    area = 0.0
    for i in range(len(x) - 1):
        x0, x1, y0, y1 = x[i], x[i + 1], y[i], y[i + 1]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


def brute_curve(regions, maps, *, strict=True, fpr_on_good_only=False):
    """Every distinct score as a threshold, counting pixels; (0, 0) and (1, 1) added."""
    negs, regs = [], []
    for rr, a in zip(regions, maps, strict=True):
        union = np.zeros(a.shape, bool)
        for m, sat in rr:
            area = int(m.sum())
            regs.append((a[m], area if sat is None else min(sat, area)))
            union |= m
        if not fpr_on_good_only or not rr:
            negs.append(a[~union])
    neg = np.concatenate(negs)
    xs, ys = [0.0], [0.0]
    for t in np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]:
        above = (lambda v, t=t: v > t) if strict else (lambda v, t=t: v >= t)
        xs.append(np.count_nonzero(above(neg)) / neg.size)
        ys.append(np.mean([min(1.0, np.count_nonzero(above(v)) / s) for v, s in regs]))
    xs.append(1.0)
    ys.append(1.0)
    return np.array(xs), np.array(ys)


def brute_auc(regions, maps, limit, **kw):
    return _area(*brute_curve(regions, maps, **kw), limit)


def random_set(seed, *, n_images=None, levels=None, types=("logical", "structural")):
    """Random maps with ties, overlapping regions, relative / absolute / area saturation."""
    rng = np.random.default_rng(seed)
    n = n_images or int(rng.integers(3, 7))
    regions, maps, kinds = [], [], []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(4, 11, 2))
        good = i > 0 and rng.random() < 0.35
        rr = []
        a = rng.normal(size=(h, w))
        for _ in range(0 if good else int(rng.integers(1, 4))):
            m = np.zeros((h, w), bool)
            y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
            m[y : y + rng.integers(1, 5), x : x + rng.integers(1, 6)] = True
            area = int(m.sum())
            kind = rng.integers(0, 3)
            if kind == 0:
                sat = max(1, math.floor(rng.uniform(0.05, 1.0) * area))
            elif kind == 1:
                sat = int(rng.integers(1, 2 * area + 2))  # may exceed the area: capped
            else:
                sat = None
            a = a + m * rng.uniform(0, 2)
            rr.append((m, sat))
        lv = levels if levels is not None else rng.choice([2, 5, 0])
        if lv:
            a = np.round(a * lv) / lv
        maps.append(a)
        regions.append(rr)
        kinds.append(None if good else types[int(rng.integers(0, len(types)))])
    # at least one negative pixel somewhere
    maps[0] = np.pad(maps[0], ((0, 1), (0, 0)), constant_values=0.0)
    regions[0] = [(np.pad(m, ((0, 1), (0, 0))), s) for m, s in regions[0]]
    return regions, maps, kinds


# -------------------------------------------------------------- hand-checked cases
def _rows_example():
    pred = np.repeat((np.arange(8) / 10 + 0.05)[:, None], 5, axis=1)
    a = np.zeros((8, 5), bool)
    a[[1, 3, 5, 7]] = True  # area 20, absolute saturation 10
    b = np.zeros((8, 5), bool)
    b[[0, 6]] = True  # area 10, relative 0.5 -> 5
    return pred, a, b


def test_single_threshold_values():
    pred, a, b = _rows_example()
    ts = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    got = [spro_at([[(a, 10), (b, 5)]], [pred], threshold=t) for t in ts]
    assert got == pytest.approx([1, 1, 1, 0.75, 0, 0], abs=1e-12)
    got = [spro_at([[(a, None), (b, None)]], [pred], threshold=t) for t in ts]
    assert got == pytest.approx([1, 0.625, 0.5, 0.375, 0, 0], abs=1e-12)
    # strict threshold: a pixel scoring exactly t is not positive
    t = float(pred[6, 0])
    assert spro_at([[(a, None), (b, None)]], [pred], threshold=t) == 0.125
    assert spro_at([[(a, None), (b, None)]], [pred], threshold=np.nextafter(t, 0)) == 0.375


def _auc_example():
    good = np.array([[0.1, 0.2, 0.3, 0.4]])
    anom = np.array([[0.15, 0.9, 0.8, 0.35]])
    c1 = np.array([[0, 1, 1, 0]], bool)  # absolute saturation 1
    c2 = np.array([[1, 0, 0, 0]], bool)  # relative 1.0 -> 1 pixel
    return [[], [(c1, 1), (c2, 1)]], [good, anom]


def test_worked_auc_example():
    regions, maps = _auc_example()
    for lim in LIMITS:
        want = 0.6 if lim == 1.0 else 0.5
        assert auc_spro(regions, maps, fpr_limit=lim) == pytest.approx(want, abs=1e-12)
        assert brute_auc(regions, maps, lim) == pytest.approx(want, abs=1e-12)
    fx, fy = spro_curve(regions, maps)
    assert fx[0] == fy[0] == 0 and fx[-1] == fy[-1] == 1
    # (0,0), (0,.5), (.2,.5), (.4,.5), (.6,.5), (.8,.5), (.8,1), (1,1): 5 negative pixels
    assert np.all(np.diff(fx) >= 0)
    assert np.interp([0.1, 0.3, 0.5, 0.7, 0.9], fx, fy) == pytest.approx([0.5] * 4 + [1.0])
    assert fy[fx < 0.8].max() == 0.5 and (0.8, 1.0) in set(
        zip(fx.tolist(), fy.tolist(), strict=True)
    )
    # the FPR pools the defect-free pixels of anomalous images: on good images only the
    # value differs (this example discriminates the two definitions)
    # (at L = 1: 0.625 instead of 0.6; below L = 0.75 both curves are flat at 0.5)
    assert brute_auc(regions, maps, 1.0, fpr_on_good_only=True) == pytest.approx(0.625)


def test_official_script_values():
    """Synthetic data on which the official MVTec LOCO script was run (adaptive and
    all-distinct thresholds agreed to 6 decimals): abs saturation 3 (area 6), relative
    0.5 (area 9 -> 4), relative 1.0 (area 16); three normal images."""
    rng = np.random.default_rng(0)
    g1a = np.zeros((8, 8), bool)
    g1a[0:2, 0:3] = True
    g1b = np.zeros((8, 8), bool)
    g1b[5:8, 5:8] = True
    g2 = np.zeros((8, 8), bool)
    g2[2:6, 2:6] = True
    maps = [np.round(rng.random((8, 8)), 3) for _ in range(3)]
    a1 = np.round(rng.random((8, 8)), 3)
    a1[g1a] += 0.5
    a1[g1b] += 0.3
    a2 = np.round(rng.random((8, 8)), 3)
    a2[g2] += 0.4
    maps += [a1, a2]
    regions = [[], [], [], [(g1a, 3), (g1b, 4)], [(g2, 16)]]
    want = [0.854167, 0.867791, 0.871396, 0.90828, 0.966768]
    got = [auc_spro(regions, maps, fpr_limit=lim) for lim in LIMITS]
    assert got == pytest.approx(want, abs=5e-7)


def test_end_to_end_on_loco_fixture(tmp_path):
    from PIL import Image

    from xeval.data.loader import iter_batches
    from xeval.data.loco import load_mvtec_loco, write_tiny_loco

    split = load_mvtec_loco(write_tiny_loco(tmp_path / "ds", n_per_type=3), "a")
    rng = np.random.default_rng(0)
    m = AUCsPRO(fpr_limit=0.3)
    state = m.init()
    regions, maps, kinds = [], [], []
    for rec in iter_batches(split.test, batch_size=4, image_size=(8, 8)):
        native = []
        for s_id, mask in zip(rec.ids, rec.targets.masks, strict=True):
            a = np.round(rng.random(mask.shape) + 0.6 * mask, 2)
            native.append(a)
            s = next(x for x in split.test if x.id == s_id)
            rr = []
            for ref in s.regions:  # saturation from the file, as the official script
                reg = np.asarray(Image.open(ref.path)) > 0
                area = int(reg.sum())
                sat = (
                    math.floor(ref.saturation * area) if ref.relative else min(ref.saturation, area)
                )
                rr.append((reg, sat))
            regions.append(rr)
            maps.append(a)
            kinds.append(None if s.label == 0 else s.defect)
        exp = Explanation(
            explainer="x", maps=np.zeros((len(rec), 1, 1)), native=native, scores=np.zeros(len(rec))
        )
        state = m.update(state, rec, exp)
    v = m.compute(state)
    assert v.n == len(split.test) == 8
    assert v.value == pytest.approx(auc_spro(regions, maps, fpr_limit=0.3, types=kinds), abs=1e-12)
    each = []
    for k in ("logical_anomalies", "structural_anomalies"):
        idx = [i for i, x in enumerate(kinds) if x in (None, k)]
        each.append(brute_auc([regions[i] for i in idx], [maps[i] for i in idx], 0.3))
    assert v.value == pytest.approx(np.mean(each), abs=1e-12)


# --------------------------------------------------------------- brute force
@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    regions, maps, _ = random_set(seed)
    for lim in LIMITS:
        want = brute_auc(regions, maps, lim)
        assert auc_spro(regions, maps, fpr_limit=lim) == pytest.approx(want, abs=1e-12)
    t = float(np.median(np.concatenate([a.ravel() for a in maps])))
    vals = []
    for rr, a in zip(regions, maps, strict=True):
        for m, s in rr:
            area = int(m.sum())
            vals.append(
                min(1.0, np.count_nonzero(a[m] > t) / (area if s is None else min(s, area)))
            )
    assert spro_at(regions, maps, threshold=t) == pytest.approx(np.mean(vals), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_strict_and_non_strict_thresholds_give_the_same_auc(seed):
    regions, maps, _ = random_set(100 + seed, levels=3)
    for lim in LIMITS:
        gt = brute_auc(regions, maps, lim, strict=True)
        ge = brute_auc(regions, maps, lim, strict=False)
        assert gt == pytest.approx(ge, abs=1e-12)
        assert auc_spro(regions, maps, fpr_limit=lim) == pytest.approx(gt, abs=1e-12)


def test_overlapping_regions_count_for_each_region():
    a = np.array([[0.9, 0.8, 0.1, 0.0]])
    r1 = np.array([[1, 1, 0, 0]], bool)
    r2 = np.array([[0, 1, 1, 0]], bool)
    # t = 0.85: r1 half found, r2 none -> 0.25; t = 0.5: r1 full, r2 half -> 0.75
    assert spro_at([[(r1, None), (r2, None)]], [a], threshold=0.85) == 0.25
    assert spro_at([[(r1, None), (r2, None)]], [a], threshold=0.5) == 0.75
    regions = [[(r1, None), (r2, None)]]
    assert auc_spro(regions, [a], fpr_limit=1.0) == pytest.approx(
        brute_auc(regions, [a], 1.0), abs=1e-12
    )


# ------------------------------------------------------------------ relation to AUPRO
@pytest.mark.parametrize("seed", range(5))
def test_equals_aupro_with_components_and_area_saturation(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((5, 12, 12)) < 0.15
    masks[0] = False
    maps = np.round(rng.normal(size=(5, 12, 12)) + masks, 1)
    regions = []
    for m in masks:
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions.append([(lab == k, None) for k in range(1, n + 1)])
    for lim in (0.05, 0.3, 1.0):
        assert auc_spro(regions, list(maps), fpr_limit=lim) == pytest.approx(
            M.aupro(masks, maps, fpr_limit=lim), abs=1e-12
        )


# ---------------------------------------------------------------------- metric
def _records(regions, maps, kinds, *, batch=2, with_regions=True):
    out = []
    for s in range(0, len(maps), batch):
        sl = slice(s, s + batch)
        masks = []
        regs = []
        for rr, a in zip(regions[sl], maps[sl], strict=True):
            m = np.zeros(a.shape, bool)
            for r, _ in rr:
                m |= r
            masks.append(m)
            regs.append(tuple(DefectRegion(mask=r, saturation=sat) for r, sat in rr))
        ks = kinds[sl]
        ids = [f"img{i}" for i in range(s, s + len(ks))]
        rec = Record(
            Inputs(ids=ids, category="c"),
            Targets(
                labels=np.array([k is not None for k in ks], np.int64),
                masks=masks,
                defects=["good" if k is None else k for k in ks],
                regions=regs if with_regions else None,
            ),
        )
        exp = Explanation(
            explainer="x",
            maps=np.zeros((len(ks), 1, 1)),
            native=list(maps[sl]),
            scores=np.zeros(len(ks)),
        )
        out.append((rec, exp))
    return out


def _metric_state(metric, pairs):
    st_ = metric.init()
    for rec, exp in pairs:
        st_ = metric.update(st_, rec, exp)
    return st_


def test_metric_class_attributes_and_registry():
    from xeval.registry import METRICS

    assert METRICS.get("auc_spro") is AUCsPRO
    m = AUCsPRO()
    assert m.label == "auc_spro@0.05" and m.params == {"fpr_limit": 0.05, "average": "types"}
    assert AUCsPRO(fpr_limit=0.3, average="pooled").label == "auc_spro_pooled@0.3"
    assert AUCsPRO.higher_is_better and AUCsPRO.family == "localisation"
    assert AUCsPRO.needs == frozenset({"masks", "regions"})
    doc = AUCsPRO.__doc__
    assert "Higher is better" in doc and "2022" in doc and "Bergmann" in doc
    with pytest.raises(InputError, match="fpr_limit"):
        AUCsPRO(fpr_limit=0)
    with pytest.raises(InputError, match="average"):
        AUCsPRO(average="mean")


@pytest.mark.parametrize("seed", range(4))
def test_metric_matches_functional_and_types_average(seed):
    regions, maps, kinds = random_set(200 + seed, n_images=8)
    kinds[1], kinds[2] = "logical", "structural"  # both types present
    regions[1] = regions[1] or [(np.ones(maps[1].shape, bool), 3)]
    regions[2] = regions[2] or [(np.ones(maps[2].shape, bool), 3)]
    pairs = _records(regions, maps, kinds, batch=3)
    for lim in (0.05, 0.3):
        pooled = AUCsPRO(fpr_limit=lim, average="pooled")
        v = pooled.compute(_metric_state(pooled, pairs))
        assert v.value == pytest.approx(auc_spro(regions, maps, fpr_limit=lim), abs=1e-12)
        assert v.n == 8 and "spro" in v.curves
        types = AUCsPRO(fpr_limit=lim)
        vt = types.compute(_metric_state(types, pairs))
        each = []
        for k in ("logical", "structural"):
            idx = [i for i, x in enumerate(kinds) if x in (None, k)]
            each.append(auc_spro([regions[i] for i in idx], [maps[i] for i in idx], fpr_limit=lim))
        assert vt.value == pytest.approx(np.mean(each), abs=1e-12)
        assert vt.value == pytest.approx(
            auc_spro(regions, maps, fpr_limit=lim, types=kinds), abs=1e-12
        )
        assert set(vt.curves) == {"spro/logical", "spro/structural"}
        assert "logical=" in vt.note and "structural=" in vt.note


def test_single_type_types_equals_pooled():
    regions, maps, kinds = random_set(7, types=("only",))
    pairs = _records(regions, maps, kinds)
    a = AUCsPRO(average="types", fpr_limit=0.3)
    b = AUCsPRO(average="pooled", fpr_limit=0.3)
    assert a.compute(_metric_state(a, pairs)).value == pytest.approx(
        b.compute(_metric_state(b, pairs)).value, abs=1e-15
    )


def test_fallback_without_regions_is_whole_mask_pro():
    regions, maps, kinds = random_set(11)
    pairs = _records(regions, maps, kinds, with_regions=False)
    m = AUCsPRO(average="pooled", fpr_limit=0.3)
    v = m.compute(_metric_state(m, pairs))
    whole = []
    for rr, a in zip(regions, maps, strict=True):
        u = np.zeros(a.shape, bool)
        for r, _ in rr:
            u |= r
        whole.append([(u, None)] if u.any() else [])
    assert v.value == pytest.approx(brute_auc(whole, maps, 0.3), abs=1e-12)
    assert "whole mask" in v.note


def test_shape_mismatch_names_both_shapes():
    regions, maps, kinds = random_set(3)
    pairs = _records(regions, maps, kinds)
    rec, exp = pairs[0]
    exp.native[0] = np.zeros((2, 3))
    m = AUCsPRO()
    with pytest.raises(InputError, match=r"img0.*\(2, 3\).*mask has shape"):
        m.update(m.init(), rec, exp)
    with pytest.raises(InputError, match=r"\(2, 2\).*region 0 mask has shape \(1, 4\)"):
        auc_spro([[(np.ones((1, 4), bool), None)]], [np.zeros((2, 2))])
    with pytest.raises(InputError, match="non-finite"):
        auc_spro([[(np.ones((1, 2), bool), None)]], [np.array([[0.0, np.nan]])])
    with pytest.raises(InputError, match="region 0 is empty"):
        auc_spro([[(np.zeros((1, 2), bool), None)]], [np.zeros((1, 2))])


def test_state_pickles():
    regions, maps, kinds = random_set(5)
    pairs = _records(regions, maps, kinds)
    m = AUCsPRO(fpr_limit=0.3)
    st_ = _metric_state(m, pairs)
    back = pickle.loads(pickle.dumps(st_))
    assert m.compute(back).value == m.compute(st_).value


# -------------------------------------------------------------------- hypothesis
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.data())
def test_merge_of_split_states_equals_whole(seed, d):
    regions, maps, kinds = random_set(seed)
    pairs = _records(regions, maps, kinds, batch=1)
    cut = d.draw(st.integers(1, len(pairs) - 1))
    for average in ("types", "pooled"):
        m = AUCsPRO(fpr_limit=0.3, average=average)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            whole = m.compute(_metric_state(m, pairs)).value
            merged = m.compute(
                m.merge(_metric_state(m, pairs[cut:]), _metric_state(m, pairs[:cut]))
            ).value
        assert merged == pytest.approx(whole, abs=1e-12, nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 5, 0]))
def test_invariant_under_strictly_increasing_transform(seed, levels):
    regions, maps, _ = random_set(seed, levels=levels)
    flat = np.concatenate([a.ravel() for a in maps])
    uniq = np.unique(flat)
    out = [np.exp(np.searchsorted(uniq, a) / 10.0) * 3.0 - 7.0 for a in maps]
    for lim in (0.05, 1.0):
        assert auc_spro(regions, out, fpr_limit=lim) == pytest.approx(
            auc_spro(regions, maps, fpr_limit=lim), abs=1e-12
        )


# -------------------------------------------------------------------- undefined
def test_undefined_cases_warn_and_return_nan():
    a = np.array([[0.1, 0.2]])
    with pytest.warns(UndefinedMetricWarning, match="no ground-truth region"):
        assert math.isnan(auc_spro([[]], [a]))
    with pytest.warns(UndefinedMetricWarning, match="no defect-free pixel"):
        assert math.isnan(auc_spro([[(np.ones((1, 2), bool), None)]], [a]))
    with pytest.warns(UndefinedMetricWarning, match="no ground-truth region"):
        assert math.isnan(spro_at([[]], [a], threshold=0.0))
    with pytest.warns(UndefinedMetricWarning):
        fx, fy = spro_curve([[]], [a])
    assert fx.size == fy.size == 0
    m = AUCsPRO()
    pairs = _records([[], []], [a, a], [None, None])
    with pytest.warns(UndefinedMetricWarning, match=r"auc_spro@0\.05 is undefined"):
        v = m.compute(_metric_state(m, pairs))
    assert math.isnan(v.value) and v.n == 2
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(m.compute(m.init()).value)
