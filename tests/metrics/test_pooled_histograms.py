"""Per-image histograms of the pooled pixel metrics and the metrics on weighted sets
(xeval.metrics.pooled): exact against xeval.metrics.pixel, scikit-learn and a brute-force
AUPRO where the maps take few values; within 1e-3 of the exact values when binned."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from tests.metrics._naive import naive_aupro
from tests.metrics._toy_record import toy
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics import aupro, pixel_aupr, pixel_auroc
from xeval.metrics.pixel import AUPRO, IoUOracle, PixelAUPR, PixelAUROC
from xeval.metrics.pooled import (
    PixelHistogramCollector,
    PixelHistograms,
    fine_keys,
    grid_edges,
    stratified_weights,
    summary_from_payload,
    weighted_aupr,
    weighted_aupro,
    weighted_auroc,
)

LIMITS = (0.01, 0.05, 0.3, 1.0)


def _set(seed: int, n: int = 6, size: int = 14, levels: int | None = 5):
    """``n`` images, every other one with one or two rectangular defects (8-connected
    regions); maps with ``levels`` integer values (None: continuous), higher on the
    defects."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(0, n, 2):
        y, x = rng.integers(0, size - 4, 2)
        masks[i, y : y + 3, x : x + 4] = True
        if i % 4 == 0:
            masks[i, -2:, :3] = True
    if levels is None:
        maps = rng.random((n, size, size)) + 0.6 * masks * rng.random((n, size, size))
    else:
        maps = rng.integers(0, levels, (n, size, size)) + masks * rng.integers(0, 3, masks.shape)
    return masks, maps.astype(np.float32)


def _summary(masks, maps, bins: int = 512) -> PixelHistograms:
    ids = [f"i{k}" for k in range(len(masks))]
    return PixelHistogramCollector(bins=bins).update(masks, maps, ids=ids).finish()


def _weighted_all(s: PixelHistograms, w, limits=LIMITS) -> dict[str, np.ndarray]:
    neg, pos, cov, nreg = s.weighted(w)
    out = {"pixel_auroc": weighted_auroc(neg, pos), "pixel_aupr": weighted_aupr(neg, pos)}
    for lim in limits:
        out[f"aupro@{lim:g}"] = weighted_aupro(neg, cov, nreg, fpr_limit=lim)
    return out


def _exact_all(masks, maps, limits=LIMITS) -> dict[str, float]:
    out = {"pixel_auroc": pixel_auroc(masks, maps), "pixel_aupr": pixel_aupr(masks, maps)}
    for lim in limits:
        out[f"aupro@{lim:g}"] = aupro(masks, maps, fpr_limit=lim)
    return out


# ----------------------------------------------------------------- exactness
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 6), levels=st.integers(1, 7))
def test_unit_weights_equal_the_exact_definitions_on_few_valued_maps(seed, n, levels):
    masks, maps = _set(seed, n=n, levels=levels)
    s = _summary(masks, maps)
    assert s.edges.size + 1 == np.unique(maps).size  # one bin per value: nothing binned
    got = _weighted_all(s, np.ones(n))
    want = _exact_all(masks, maps)
    for k, v in want.items():
        assert got[k].shape == (1,)
        assert got[k][0] == pytest.approx(v, abs=1e-12), k
    # independent references
    y, a = masks.ravel(), maps.ravel().astype(np.float64)
    assert got["pixel_auroc"][0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert got["pixel_aupr"][0] == pytest.approx(average_precision_score(y, a), abs=1e-12)
    assert got["aupro@0.3"][0] == pytest.approx(naive_aupro(masks, maps, 0.3), abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    counts=st.lists(st.integers(0, 3), min_size=6, max_size=6),
)
def test_integer_weights_equal_the_metric_of_the_repeated_images(seed, counts):
    masks, maps = _set(seed, n=6, levels=4)
    counts = np.asarray(counts)
    counts[0] = max(counts[0], 1)  # an image with a defect (and normal pixels)
    s = _summary(masks, maps)
    got = _weighted_all(s, counts.astype(float))
    idx = np.repeat(np.arange(6), counts)
    want = _exact_all(masks[idx], maps[idx])
    for k, v in want.items():
        assert got[k][0] == pytest.approx(v, abs=1e-12), k
    y, a = masks[idx].ravel(), maps[idx].ravel().astype(np.float64)
    assert got["pixel_auroc"][0] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert got["pixel_aupr"][0] == pytest.approx(average_precision_score(y, a), abs=1e-12)


def test_rows_of_a_weight_matrix_are_independent_sets():
    masks, maps = _set(3, n=6, levels=6)
    s = _summary(masks, maps)
    w = stratified_weights(s.strata, n_boot=7, rng=np.random.default_rng(1))
    got = _weighted_all(s, w)
    for b in range(7):
        idx = np.repeat(np.arange(6), w[b].astype(int))
        want = _exact_all(masks[idx], maps[idx])
        for k, v in want.items():
            assert got[k][b] == pytest.approx(v, abs=1e-12), (k, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binned_values_are_close_to_the_exact_ones_on_continuous_maps(seed):
    masks, maps = _set(seed, n=10, size=40, levels=None)
    s = _summary(masks, maps, bins=512)
    assert s.edges.size + 1 <= 512 + 1 < np.unique(maps).size  # really binned
    got = _weighted_all(s, np.ones(10), limits=(0.3,))
    want = _exact_all(masks, maps, limits=(0.3,))
    assert got["pixel_auroc"][0] == pytest.approx(want["pixel_auroc"], abs=1e-3)
    assert got["pixel_aupr"][0] == pytest.approx(want["pixel_aupr"], abs=2e-3)  # ~1 / bins
    assert got["aupro@0.3"][0] == pytest.approx(want["aupro@0.3"], abs=2e-3)
    # coarser grids are further off, not closer (the binning really is an approximation)
    coarse = _weighted_all(_summary(masks, maps, bins=8), np.ones(10), limits=(0.3,))
    assert abs(coarse["pixel_auroc"][0] - want["pixel_auroc"]) > abs(
        got["pixel_auroc"][0] - want["pixel_auroc"]
    )


def test_undefined_without_anomalous_or_normal_pixels():
    masks, maps = _set(0, n=4, levels=3)
    s = _summary(masks, maps)
    w = np.array([[0.0, 1.0, 0.0, 2.0]])  # images 1 and 3 have no defect
    got = _weighted_all(s, w)
    assert all(np.isnan(v[0]) for v in got.values())
    full = np.ones((4, 4), bool)
    s2 = _summary(np.stack([full, full]), np.stack([maps[0, :4, :4], maps[1, :4, :4]]))
    got = _weighted_all(s2, np.ones(2))
    assert all(np.isnan(v[0]) for v in got.values())


# ----------------------------------------------------------------------- grid
def test_grid_has_one_bin_per_value_when_few_and_quantiles_otherwise():
    neg = np.array([0.0, 1.0, 1.0, 2.0])
    pos = np.array([2.0, 3.0])
    np.testing.assert_array_equal(grid_edges(neg, pos, bins=8), [1.0, 2.0, 3.0])
    shared = grid_edges(np.array([0, 1, 2, 2]), np.array([1, 2, 3]), bins=4)
    np.testing.assert_array_equal(shared, [1, 2, 3])  # 4 distinct values in all: exact
    rng = np.random.default_rng(0)
    neg, pos = rng.random(10_000), rng.random(500) + 0.5
    e = grid_edges(neg, pos, bins=64)
    assert 32 <= e.size <= 64 and np.all(np.diff(e) > 0)
    assert np.isin(e, np.concatenate([neg, pos])).all()  # observed values
    counts = np.bincount(np.searchsorted(e, neg, side="right"), minlength=e.size + 1)
    assert counts.max() <= 2 * neg.size / 32 + 1  # FPR steps of at most ~2 / bins
    with pytest.raises(InputError, match="bins"):
        grid_edges(neg, pos, bins=1)
    with pytest.raises(InputError, match="bins"):
        PixelHistogramCollector(bins=True)


def test_grid_of_counted_values_equals_the_grid_of_the_repeated_values():
    rng = np.random.default_rng(4)
    neg, pos = rng.integers(0, 3000, 400), rng.integers(1000, 4000, 50)
    cn, cp = rng.integers(0, 5, 400), rng.integers(1, 4, 50)
    got = grid_edges(neg, pos, bins=64, neg_counts=cn, pos_counts=cp)
    want = grid_edges(np.repeat(neg, cn), np.repeat(pos, cp), bins=64)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match="counts must match"):
        grid_edges(neg, pos, neg_counts=cn[:3])


def test_fine_keys_preserve_order_and_merge_only_close_scores():
    rng = np.random.default_rng(0)
    v = np.sort(np.concatenate([rng.normal(0, 10, 5000), [0.0, -0.0, 1e-30, -1e-30]]))
    k = fine_keys(v.astype(np.float32))
    assert np.all(np.diff(k) >= 0)  # a <= b => key(a) <= key(b)
    assert fine_keys(np.array([-0.0]))[0] == fine_keys(np.array([0.0]))[0]
    ints = np.arange(-2048, 2048, dtype=np.float32)
    assert np.unique(fine_keys(ints)).size == ints.size  # integers below 2**11 stay apart
    x = np.float32(3.7)
    assert fine_keys(np.array([x]))[0] != fine_keys(np.array([x * (1 + 2.0**-9)]))[0]
    same = fine_keys(np.array([1.0, 1.0 + 2.0**-12], np.float32))
    assert same[0] == same[1]  # within 2**-10: one fine bin


def test_collector_keeps_fine_histograms_not_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 200, 200), bool)
    masks[0, 50:80, 60:90] = True
    maps = rng.random((2, 200, 200)).astype(np.float32) * 4 + 0.5  # 3 binades
    c = PixelHistogramCollector().update(masks, maps, ids=["x", "y"])
    held = sum(a.size for im in c._images for a in im[:5])
    assert held < 3 * 2 * 1024 * 3  # keys, counts (and weights) per binade, not 80 000 px


# ------------------------------------------------------------ collector/payload
def test_collector_merge_equals_one_update_and_refuses_repeated_ids():
    masks, maps = _set(5, n=6, levels=None)
    ids = [f"i{k}" for k in range(6)]
    a = PixelHistogramCollector(bins=64).update(masks[:2], maps[:2], ids=ids[:2])
    b = PixelHistogramCollector(bins=64).update(list(masks[2:]), list(maps[2:]), ids=ids[2:])
    merged, whole = a.merge(b).finish(), _summary(masks, maps, bins=64)
    for f in ("edges", "neg", "pos", "cov", "n_regions"):
        np.testing.assert_array_equal(getattr(merged, f), getattr(whole, f))
    assert merged.ids == whole.ids == ids
    np.testing.assert_array_equal(whole.strata, [1, 0, 1, 0, 1, 0])
    assert whole.n_regions.tolist() == [2, 0, 1, 0, 2, 0]
    assert whole.cov.sum(axis=1) == pytest.approx(whole.n_regions)
    with pytest.raises(InputError, match="i0"):
        a.update(masks[:1], maps[:1], ids=["i0"])
    with pytest.raises(InputError):
        a.merge(a)


def test_payload_round_trips_through_json_without_pickle():
    masks, maps = _set(2, n=6, levels=None)
    s = _summary(masks, maps, bins=128)
    text = json.dumps(s.to_payload())
    back = summary_from_payload(json.loads(text))
    for f in ("edges", "neg", "pos", "cov", "n_regions"):
        np.testing.assert_array_equal(getattr(back, f), getattr(s, f))
    assert back.ids == s.ids
    assert len(text) < 20_000  # compact (6 images x 128 bins x 3 arrays)
    with pytest.raises(InputError, match="unknown pooled summary kind"):
        summary_from_payload({"kind": "pickle"})
    with pytest.raises(InputError, match="weights must have shape"):
        s.weighted(np.ones((2, 5)))
    with pytest.raises(InputError, match="non-negative"):
        s.weighted(-np.ones(6))


def test_stratified_weights_keep_each_stratum_size():
    strata = np.array([0, 1, 1, 0, 1, 1, 1])
    w = stratified_weights(strata, n_boot=500, rng=np.random.default_rng(0))
    assert w.shape == (500, 7)
    np.testing.assert_array_equal(w[:, strata == 0].sum(axis=1), 2)
    np.testing.assert_array_equal(w[:, strata == 1].sum(axis=1), 5)
    assert np.abs(w.mean(axis=0) - 1).max() < 0.15  # each image drawn once on average
    again = stratified_weights(strata, n_boot=500, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(w, again)


# ---------------------------------------------------------------- metric hook
def test_registered_pixel_metrics_declare_the_summary_hook():
    record, expl = toy(8)
    q = np.quantile(expl.maps, np.linspace(0, 1, 40))  # 40 values: the grid is exact
    expl.native = [np.searchsorted(q, a).astype(np.float32) for a in expl.native]
    metrics = [PixelAUROC(), PixelAUPR(), AUPRO(fpr_limit=0.3), AUPRO(fpr_limit=0.05)]
    keys = {m.summary_key() for m in metrics}
    assert len(keys) == 1 and None not in keys  # one shared summary
    assert IoUOracle().summary_key() is None  # oracle threshold: not resampled
    m0 = metrics[0]
    s = m0.update_summary(m0.init_summary(), record, expl).finish()
    w = stratified_weights(s.strata, n_boot=4, rng=np.random.default_rng(0))
    w = np.vstack([np.ones(8), w])
    masks = np.stack(record.targets.masks)
    maps = np.stack(expl.native)
    fns = {
        "pixel_auroc": pixel_auroc,
        "pixel_aupr": pixel_aupr,
        "aupro@0.3": lambda a, b: aupro(a, b, fpr_limit=0.3),
        "aupro@0.05": lambda a, b: aupro(a, b, fpr_limit=0.05),
    }
    for m in metrics:
        state = m.update(m.init(), record, expl)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            exact = m.compute(state).value
        assert exact == pytest.approx(fns[m.label](masks, maps), abs=1e-12)
        vals = m.compute_weighted(s, w)
        assert vals.shape == (5,)
        assert vals[0] == pytest.approx(exact, abs=1e-12)
        for b in range(1, 5):
            idx = np.repeat(np.arange(8), w[b].astype(int))
            assert vals[b] == pytest.approx(fns[m.label](masks[idx], maps[idx]), abs=1e-12)
