"""Explanation localisation: hand-computed values (ties, tolerance, empty masks, flat
maps), oracle and random maps, invariances, brute-force definitions, mergeable state,
input errors, and a cross-check against Quantus where Quantus is right."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xeval import metrics as M
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics import LocalisationMetrics

PER_IMAGE = {
    "pointing_game": M.pointing_game_per_image,
    "relevance_mass": M.relevance_mass_per_image,
    "relevance_rank": M.relevance_rank_per_image,
    "top_k_intersection": M.top_k_intersection_per_image,
}


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*args, **kw)


# ------------------------------------------------------------------ pointing game
def test_pointing_game_hit_miss_and_empty_masks_excluded():
    masks = np.zeros((4, 4, 4), bool)
    masks[0, 1:3, 1:3] = True
    masks[2, 0, :] = True
    masks[3, 3, 3] = True
    maps = np.zeros((4, 4, 4))
    maps[0, 2, 2] = 5.0  # hit
    maps[1, 0, 0] = 5.0  # empty mask: excluded, whatever the map does
    maps[2, 3, 3] = 1.0  # miss
    maps[3, 3, 3] = 0.5  # hit
    per = M.pointing_game_per_image(masks, maps)
    np.testing.assert_array_equal(per, [1.0, np.nan, 0.0, 1.0])
    assert M.pointing_game(masks, maps) == pytest.approx(2 / 3)  # not 3/4: empty != hit


def test_pointing_game_ties():
    mask = np.zeros((1, 3, 3), bool)
    mask[0, 0, :2] = True
    amap = np.zeros((1, 3, 3))
    amap[0, 0, 0] = amap[0, 0, 1] = 2.0  # both maxima inside
    assert M.pointing_game(mask, amap) == 1.0
    amap[0, 2, 2] = 2.0  # one of three maxima outside
    assert M.pointing_game(mask, amap) == 0.0  # default "all": strict
    assert M.pointing_game(mask, amap, ties="all") == 0.0
    assert M.pointing_game(mask, amap, ties="any") == 1.0
    assert M.pointing_game(mask, amap, ties="fraction") == pytest.approx(2 / 3)
    # a plateau covering the mask and beyond is a miss, even though the first argmax hits
    plateau = np.ones((1, 3, 3))
    plateau[0, 2, 2] = 0.0
    assert M.pointing_game(mask, plateau) == 0.0


def test_pointing_game_tolerance_is_euclidean_and_inclusive():
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 0, 0] = True
    amap = np.zeros((1, 9, 9))
    amap[0, 3, 4] = 1.0  # distance 5 from the mask pixel
    assert M.pointing_game(mask, amap) == 0.0
    assert M.pointing_game(mask, amap, tolerance=4.99) == 0.0
    assert M.pointing_game(mask, amap, tolerance=5) == 1.0
    assert M.pointing_game(mask, amap, tolerance=15) == 1.0
    amap[0, 8, 8] = 1.0  # a second maximum at distance 8 * sqrt(2)
    assert M.pointing_game(mask, amap, tolerance=5) == 0.0
    assert M.pointing_game(mask, amap, tolerance=5, ties="any") == 1.0
    assert M.pointing_game(mask, amap, tolerance=8 * np.sqrt(2)) == 1.0


def test_pointing_game_tolerance_never_reaches_into_another_image():
    # the stacked distance transform must not find image 0's mask from image 1
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 2, 2] = True
    masks[1, 0, 0] = True
    maps = np.zeros((2, 5, 5))
    maps[0, 0, 0] = 1.0  # distance sqrt(8) from its own mask
    maps[1, 2, 2] = 1.0  # distance sqrt(8) from its own mask, 0 from image 0's
    np.testing.assert_array_equal(M.pointing_game_per_image(masks, maps, tolerance=2), [0, 0])
    np.testing.assert_array_equal(M.pointing_game_per_image(masks, maps, tolerance=3), [1, 1])
    masks[1] = False  # an empty neighbour is NaN, never a hit through image 0
    assert np.isnan(M.pointing_game_per_image(masks, maps, tolerance=100)[1])


@pytest.mark.parametrize("fill", [0.0, 3.0, -1.0])
def test_pointing_game_constant_map_is_undefined_not_a_hit(fill):
    masks = np.zeros((2, 3, 3), bool)
    masks[:, 1, 1] = True
    maps = np.full((2, 3, 3), fill)
    maps[1, 1, 1] = fill + 1.0
    with pytest.warns(UndefinedMetricWarning, match=r"pointing_game for 1 image\(s\) \(index 0\)"):
        per = M.pointing_game_per_image(masks, maps, ties="any")
    np.testing.assert_array_equal(per, [np.nan, 1.0])
    with pytest.warns(UndefinedMetricWarning):
        assert M.pointing_game(masks, maps) == 1.0


def test_all_images_undefined_gives_nan_mean():
    masks = np.zeros((2, 3, 3), bool)
    maps = np.random.default_rng(0).random((2, 3, 3))
    for name, fn in PER_IMAGE.items():
        mean = getattr(M, name)
        kw = {"k": 2} if name == "top_k_intersection" else {}
        assert np.isnan(fn(masks, maps, **kw)).all()
        with pytest.warns(UndefinedMetricWarning, match=name):
            assert np.isnan(mean(masks, maps, **kw))


def _naive_pointing(mask, amap, tolerance):
    """Brute force: every maximal pixel within ``tolerance`` of some mask pixel."""
    if not mask.any() or amap.max() == amap.min():
        return np.nan
    gt = np.argwhere(mask)
    mx = np.argwhere(amap == amap.max())
    d = np.sqrt(((mx[:, None, :] - gt[None, :, :]) ** 2).sum(-1)).min(1)
    return float(np.all(d <= tolerance))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 1.5, 2.9, 4]))
def test_pointing_game_matches_brute_force_stack_and_list(seed, tolerance):
    rng = np.random.default_rng(seed)
    n, h, w = rng.integers(1, 5), rng.integers(1, 8), rng.integers(1, 8)
    masks = rng.random((n, h, w)) < rng.uniform(0, 0.3)
    maps = rng.integers(0, 4, (n, h, w)).astype(float)  # many ties
    expected = [_naive_pointing(m, a, tolerance) for m, a in zip(masks, maps, strict=True)]
    stacked = _quiet(M.pointing_game_per_image, masks, maps, tolerance=tolerance)
    listed = _quiet(M.pointing_game_per_image, list(masks), list(maps), tolerance=tolerance)
    np.testing.assert_array_equal(stacked, expected)
    np.testing.assert_array_equal(listed, expected)


# ----------------------------------------------------------------- relevance mass
def test_relevance_mass_hand_computed_positive_part_only():
    mask = np.array([[[1, 0], [1, 0]]], bool)
    amap = np.array([[[2.0, -5.0], [1.0, 3.0]]])  # GT a+ = 3, total a+ = 6
    assert M.relevance_mass(mask, amap) == pytest.approx(0.5)
    amap2 = np.array([[[-2.0, 1.0], [-1.0, 3.0]]])  # no positive relevance inside
    assert M.relevance_mass(mask, amap2) == 0.0


def test_relevance_mass_undefined_without_positive_attribution():
    masks = np.zeros((3, 2, 2), bool)
    masks[:, 0, 0] = True
    masks[2] = False
    maps = np.array([np.zeros((2, 2)), -np.ones((2, 2)), np.zeros((2, 2))])
    with pytest.warns(UndefinedMetricWarning, match=r"relevance_mass for 2 image\(s\)"):
        per = M.relevance_mass_per_image(masks, maps)
    assert np.isnan(per).all()


def test_relevance_mass_mean_over_defined_images():
    masks = np.zeros((3, 2, 2), bool)
    masks[0, 0, 0] = masks[2, 1, :] = True
    maps = np.array([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0], [0, 0]], [[1.0, 0], [0, 3.0]]])
    np.testing.assert_allclose(M.relevance_mass_per_image(masks, maps), [0.25, np.nan, 0.75])
    assert M.relevance_mass(masks, maps) == pytest.approx(0.5)


# ----------------------------------------------------------------- relevance rank
def test_relevance_rank_hand_computed_with_fractional_ties():
    mask = np.array([[[1, 1, 0], [0, 1, 0]]], bool)  # |GT| = 3
    amap = np.array([[[5.0, 1.0, 1.0], [1.0, 0.0, 9.0]]])
    # top 3: 9 (not GT), 5 (GT), then one of the three 1.0 (one GT of three): 1 + 1/3
    assert M.relevance_rank(mask, amap) == pytest.approx((1 + 1 / 3) / 3)
    amap = np.array([[[5.0, 4.0, 1.0], [1.0, 3.0, 0.0]]])  # no ties: top 3 = GT
    assert M.relevance_rank(mask, amap) == 1.0
    # a constant map scores chance: |GT| / n
    assert M.relevance_rank(mask, np.zeros((1, 2, 3))) == pytest.approx(3 / 6)


def _exact_expected_overlap(mask, amap, k):
    """Average over every order of the pixels used to break ties (exact expectation)."""
    m, a = mask.ravel(), amap.ravel()
    total = 0.0
    perms = list(itertools.permutations(range(a.size)))
    for perm in perms:
        order = np.lexsort((np.array(perm), -a))  # by -a, ties by the permutation
        total += m[order[:k]].sum()
    return total / len(perms)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fractional_ties_are_the_expectation_over_random_tie_breaking(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((2, 3)) < 0.5
    mask[0, 0] = True
    amap = rng.integers(0, 3, (2, 3)).astype(float)
    k = int(mask.sum())
    assert M.relevance_rank(mask, amap) == pytest.approx(
        _exact_expected_overlap(mask, amap, k) / k, abs=1e-12
    )
    for kk in (1, 2, 4):
        assert M.top_k_intersection(mask, amap, k=kk) == pytest.approx(
            _exact_expected_overlap(mask, amap, kk) / kk, abs=1e-12
        )


# ------------------------------------------------------------- top-k intersection
def test_top_k_intersection_hand_computed_and_k_options():
    mask = np.zeros((1, 4, 5), bool)
    mask[0, 0, :3] = True
    amap = np.arange(20, dtype=float)[::-1].reshape(1, 4, 5)  # top pixels: row 0
    assert M.top_k_intersection(mask, amap, k=2) == 1.0
    assert M.top_k_intersection(mask, amap, k=4) == pytest.approx(3 / 4)
    assert M.top_k_intersection(mask, amap, k=np.int64(6)) == pytest.approx(3 / 6)
    assert M.top_k_intersection(mask, amap, k=0.2) == pytest.approx(3 / 4)  # ceil(0.2*20)
    assert M.top_k_intersection(mask, amap, k=0.01) == 1.0  # at least one pixel
    with pytest.raises(InputError, match=r"k = 1000 exceeds the 20 pixels .*\(4, 5\)"):
        M.top_k_intersection(mask, amap, k=1000)  # Quantus' default
    for bad in (0, -3, 1.0, 1.5, 0.0, True, "10", np.nan):
        with pytest.raises(InputError, match="k"):
            M.top_k_intersection(mask, amap, k=bad)


def test_top_k_fraction_follows_each_image_size():
    masks = [np.ones((2, 5), bool), np.ones((4, 5), bool)]
    maps = [np.arange(10.0).reshape(2, 5), np.arange(20.0).reshape(4, 5)]
    masks[1][0] = False  # the 5 lowest pixels are not GT
    np.testing.assert_allclose(M.top_k_intersection_per_image(masks, maps, k=0.5), [1, 1])
    np.testing.assert_allclose(M.top_k_intersection_per_image(masks, maps, k=0.9), [1, 15 / 18])


# ------------------------------------------------------------- oracle and random
def _random_masks(rng, n, h, w):
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        dy, dx = rng.integers(2, 5, 2)
        masks[i, y : y + dy, x : x + dx] = True
    return masks


def test_oracle_map_scores_one_everywhere():
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, 8, 16, 20)
    for oracle in (masks.astype(float), masks * 3.0 - 1.0, masks + 0.01 * rng.random(masks.shape)):
        assert M.pointing_game(masks, oracle) == 1.0
        assert M.relevance_mass(masks, np.maximum(oracle, 0) * masks) == 1.0
        assert M.relevance_rank(masks, oracle) == 1.0
        assert M.top_k_intersection(masks, oracle, k=4) == 1.0  # k <= min |GT| = 4
    assert M.relevance_mass(masks, masks.astype(float)) == 1.0
    # lists of different sizes
    lm = [masks[0], masks[1, :10, :12].copy()]
    lm[1][:] = False
    lm[1][2:4, 2:5] = True
    assert M.relevance_rank(lm, [m * 1.0 for m in lm]) == 1.0


def test_random_map_scores_chance_on_rank_and_mass():
    rng = np.random.default_rng(1234)
    n, h, w = 200, 24, 24
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y, x = rng.integers(0, h - 10, 2)
        dy, dx = rng.integers(3, 10, 2)
        masks[i, y : y + dy, x : x + dx] = True
    maps = rng.random((n, h, w))
    chance = masks.mean(axis=(1, 2))  # |GT| / N per image
    for fn in (M.relevance_rank_per_image, M.relevance_mass_per_image):
        diff = fn(masks, maps) - chance
        se = diff.std(ddof=1) / np.sqrt(n)
        assert abs(diff.mean()) < 4 * se, fn.__name__
        assert abs(diff.mean()) < 0.01
    # the pointing game of a random map hits with probability |GT| / N too
    pg = M.pointing_game_per_image(masks, maps)
    assert abs(pg.mean() - chance.mean()) < 4 * np.sqrt(chance.mean() / n)


# -------------------------------------------------------------------- invariances
@st.composite
def loc_sets(draw, min_images=2, max_images=6):
    n = draw(st.integers(min_images, max_images))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([2, 5, None]))
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for _ in range(n):
        h, w = rng.integers(2, 9, 2)
        m = rng.random((h, w)) < rng.uniform(0, 0.5)
        a = rng.normal(size=(h, w)) + m * rng.uniform(0, 2)
        if levels:
            a = np.round(a * levels) / levels
        masks.append(m)
        maps.append(a)
    masks[0].flat[0] = True
    return masks, maps


_TRANSFORMS = [
    lambda a: np.exp(a),
    lambda a: 3.0 * a - 7.0,
    lambda a: a**3 + a,
    lambda a: np.arctan(a),
]


@settings(max_examples=40, deadline=None)
@given(loc_sets(), st.sampled_from(range(len(_TRANSFORMS))), st.floats(0.01, 100))
def test_invariances(data, ti, scale):
    masks, maps = data
    f = _TRANSFORMS[ti]
    out = [f(a) for a in maps]
    for fn in (M.pointing_game_per_image, M.relevance_rank_per_image):
        np.testing.assert_allclose(_quiet(fn, masks, out), _quiet(fn, masks, maps), atol=1e-12)
    k = int(min(a.size for a in maps))
    np.testing.assert_allclose(
        M.top_k_intersection_per_image(masks, out, k=k),
        M.top_k_intersection_per_image(masks, maps, k=k),
        atol=1e-12,
    )
    # relevance mass: invariant to a positive scale, which may differ per image
    scaled = [a * scale * (i + 1) for i, a in enumerate(maps)]
    np.testing.assert_allclose(
        _quiet(M.relevance_mass_per_image, masks, scaled),
        _quiet(M.relevance_mass_per_image, masks, maps),
        rtol=1e-12,
    )


# -------------------------------------------------------------------------- state
def _compute(metric, masks, maps, split=None, ids=None):
    ids = list(range(len(masks))) if ids is None else ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if split is None:
            return metric.compute(metric.update(metric.init(), masks, maps, ids=ids))
        a = metric.update(metric.init(), masks[:split], maps[:split], ids=ids[:split])
        b = metric.update(metric.init(), masks[split:], maps[split:], ids=ids[split:])
        return metric.compute(metric.merge(b, a))


@settings(max_examples=40, deadline=None)
@given(loc_sets(), st.data())
def test_merge_of_split_states_equals_whole(data, d):
    masks, maps = data
    split = d.draw(st.integers(1, len(masks) - 1))
    metric = LocalisationMetrics(tolerance=d.draw(st.sampled_from([0, 1.5])), k=0.25)
    whole = _compute(metric, masks, maps)
    merged = _compute(metric, masks, maps, split)
    order = np.argsort(merged["ids"])
    for name in LocalisationMetrics.names:
        a, b = whole[name], merged[name]
        assert (np.isnan(a) and np.isnan(b)) or a == b, name  # fsum: exact in any order
        assert whole["n/" + name] == merged["n/" + name]
        np.testing.assert_array_equal(
            merged[name + "_per_image"][order], whole[name + "_per_image"]
        )


def test_state_matches_functions_and_keeps_ids():
    rng = np.random.default_rng(5)
    masks = _random_masks(rng, 5, 12, 12)
    masks[2] = False
    maps = rng.normal(size=masks.shape)
    maps[3] = 0.0
    metric = LocalisationMetrics(tolerance=2, ties="any", k=10)
    with pytest.warns(UndefinedMetricWarning):
        out = metric.compute(metric.update(metric.init(), masks, maps, ids="abcde"))
    assert out["ids"] == list("abcde")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ref = {
            "pointing_game": M.pointing_game_per_image(masks, maps, tolerance=2, ties="any"),
            "relevance_mass": M.relevance_mass_per_image(masks, maps),
            "relevance_rank": M.relevance_rank_per_image(masks, maps),
            "top_k_intersection": M.top_k_intersection_per_image(masks, maps, k=10),
        }
    for name, per in ref.items():
        np.testing.assert_array_equal(out[name + "_per_image"], per)
        assert out[name] == pytest.approx(np.nanmean(per))
        assert out["n/" + name] == np.count_nonzero(~np.isnan(per))
    assert out["n/pointing_game"] == 3 and out["n/relevance_rank"] == 4
    assert all(LocalisationMetrics.higher_is_better.values())
    with pytest.raises(InputError, match="ids has 2 entries for 5 images"):
        metric.update(metric.init(), masks, maps, ids=[1, 2])


def test_state_is_picklable():
    import pickle

    metric = LocalisationMetrics(k=2)
    s = metric.update(metric.init(), np.eye(3, dtype=bool)[None], np.eye(3)[None])
    s2 = pickle.loads(pickle.dumps(s))
    assert metric.compute(s2)["relevance_rank"] == 1.0


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(PER_IMAGE))
def test_input_errors(name):
    fn = PER_IMAGE[name]
    kw = {"k": 1} if name == "top_k_intersection" else {}
    m = np.zeros((2, 4, 4), bool)
    m[:, 0, 0] = True
    with pytest.raises(InputError, match=r"\(2, 3, 3\).*\(2, 4, 4\)"):
        fn(m, np.zeros((2, 3, 3)), **kw)
    with pytest.raises(InputError, match=r"attributions\[1\] has shape \(3, 4\).*\(4, 4\)"):
        fn(list(m), [np.zeros((4, 4)), np.zeros((3, 4))], **kw)
    for bad in (np.nan, np.inf, -np.inf):
        a = np.zeros((2, 4, 4))
        a[1, 2, 3] = bad
        with pytest.raises(InputError, match="non-finite"):
            fn(m, a, **kw)
    with pytest.raises(InputError, match="binary"):
        fn(m * 255, np.ones((2, 4, 4)), **kw)
    with pytest.raises(InputError, match="same number"):
        fn(m, np.ones((3, 4, 4)), **kw)


def test_option_errors():
    m, a = np.eye(3, dtype=bool)[None], np.eye(3)[None]
    for bad in (-1, np.nan, np.inf, "2", True):
        with pytest.raises(InputError, match="tolerance"):
            M.pointing_game(m, a, tolerance=bad)
    with pytest.raises(InputError, match="ties"):
        M.pointing_game(m, a, ties="first")
    with pytest.raises(InputError, match="k"):
        LocalisationMetrics(k=0)


# ------------------------------------------------------------------ Quantus check
@pytest.fixture(scope="module")
def quantus():
    from _crosscheck import require

    return require("quantus")


def _quantus(quantus, cls, masks, maps, **kw):
    n = len(masks)
    x = np.zeros((n, 1) + masks.shape[1:], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, cls)(normalise=False, abs=False, disable_warnings=True, **kw)
        out = metric(
            model=None,
            x_batch=x,
            y_batch=np.zeros(n, int),
            a_batch=maps[:, None].astype(np.float64),
            s_batch=masks[:, None].astype(bool),
        )
    return np.asarray(out, dtype=float)


def test_quantus_agrees_where_it_is_right(quantus):
    rng = np.random.default_rng(7)
    masks = _random_masks(rng, 12, 16, 16)
    maps = rng.random(masks.shape) + masks * rng.random((12, 1, 1))  # no ties, non-negative
    np.testing.assert_array_equal(
        _quantus(quantus, "PointingGame", masks, maps), M.pointing_game_per_image(masks, maps)
    )
    np.testing.assert_allclose(
        _quantus(quantus, "RelevanceMassAccuracy", masks, maps),
        M.relevance_mass_per_image(masks, maps),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        _quantus(quantus, "RelevanceRankAccuracy", masks, maps),
        M.relevance_rank_per_image(masks, maps),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        _quantus(quantus, "TopKIntersection", masks, maps, k=20),
        M.top_k_intersection_per_image(masks, maps, k=20),
        rtol=1e-12,
    )


def test_quantus_deviations_are_the_documented_ones(quantus):
    masks = np.zeros((4, 4, 4), bool)
    masks[:3, 1:3, 1:3] = True  # image 3: empty mask
    maps = np.zeros((4, 4, 4))
    maps[0] = 1.0  # constant map
    maps[1, 1, 1] = maps[1, 3, 3] = 2.0  # two maxima, one outside
    maps[2, 0, 0] = 1.0  # a plateau of zeros at the 4-th value
    maps[3, 0, 0] = 1.0
    q = _quantus(quantus, "PointingGame", masks, maps)
    ours = _quiet(M.pointing_game_per_image, masks, maps)
    any_ = _quiet(M.pointing_game_per_image, masks, maps, ties="any")
    assert q[3] == 1.0 and np.isnan(ours[3])  # Quantus: empty mask counted as a hit
    assert q[0] == 1.0 and np.isnan(ours[0])  # Quantus: constant map is a hit
    assert q[1] == any_[1] == 1.0 and ours[1] == 0.0  # any-maximum vs strict ties
    # rank with ties: Quantus's order depends on np.argsort, ours is the expectation
    assert M.relevance_rank_per_image(masks[2:3], maps[2:3])[0] == pytest.approx(3 * 4 / 15 / 4)
    # signed maps: Quantus's mass uses signed sums and can leave [0, 1]
    signed = np.array([[[3.0, -2.0], [0.0, 0.0]]])
    m1 = np.array([[[1, 0], [0, 0]]], bool)
    assert _quantus(quantus, "RelevanceMassAccuracy", m1, signed)[0] == pytest.approx(3.0)
    assert M.relevance_mass(m1, signed) == 1.0
