"""Reliability of the numbers: xeval never reports a silently wrong value.

Each principle is one parametrised test over a catalogue of inputs (several per
principle, including cases that the issue did not list). Where a value is defined it is
compared with scikit-learn or a hand-computed value.

- P1 undefined: where a metric is undefined or its computation degenerates (one class,
  no region, a single removal region, a vacuous binned bound, a constant validation set,
  zero perturbations, a zero-norm map, fewer than 2 values to bootstrap...), the value is
  NaN with an :class:`~xeval.errors.UndefinedMetricWarning` saying why, or a clear error
  naming the option -- never 0.5, 0, 1 or another constant.
- P2 precision and range: maps and scores near the float64 limits (1e308, subnormals,
  mixed huge and tiny, float64 detail finer than float32, integers beyond 2**24) are
  handled exactly -- same value as scikit-learn or as the same input rescaled -- or
  rejected with a message naming the map; the binned streaming mode reports a bound that
  holds, or NaN when the bound says nothing.
- P3 reshaping: a map whose aspect ratio differs from its mask's (or, in the engine, from
  the image the detector saw) is an error naming both shapes (and the sample); maps of the
  same aspect are upsampled bilinearly as documented; the functional metrics demand
  equal shapes.
- P4 alignment: metric states reject updates whose ids and values do not line up
  (lengths, duplicate ids within a state or across a merge); a bootstrap count is a
  positive integer; a validation fraction that leaves no fit image or no validation image
  is an error naming the category and the counts.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from xeval import metrics as M
from xeval.adapters.base import Detector
from xeval.errors import ConfigError, InputError, UndefinedMetricWarning
from xeval.metrics import ranking
from xeval.metrics.base import Explanation
from xeval.record import Inputs, Record, Targets

# ----------------------------------------------------------------------------- helpers


def _undefined(fn, match: str | None = None):
    """``fn()`` warns UndefinedMetricWarning (matching ``match``) and returns NaN (all of
    it, for an array)."""
    with pytest.warns(UndefinedMetricWarning, match=match):
        out = fn()
    v = np.asarray(out, dtype=float)
    assert np.all(np.isnan(v)), f"expected NaN, got {out!r}"
    return out


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _no_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        warnings.simplefilter("error", RuntimeWarning)
        return fn()


def _masks_maps(seed=0, n=4, h=12, w=10, values=None):
    """Masks with a square defect on every other image and maps drawn from ``values``
    (or uniform) with defects scoring a bit higher on average."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), bool)
    for i in range(0, n, 2):
        masks[i, 2:6, 3:7] = True
    if values is None:
        maps = rng.random((n, h, w)) + 0.3 * masks
    else:
        values = np.asarray(values)
        maps = values[rng.integers(0, values.size, (n, h, w))]
        bump = values[rng.integers(0, values.size, (n, h, w))]
        maps = np.where(masks & (rng.random((n, h, w)) < 0.5), np.maximum(maps, bump), maps)
    return masks, maps


class _ScoreDetector(Detector):
    """score = scale * (2 * mean(x) - 1) + offset; maps = the channel mean (float64)."""

    name = "score_toy"
    input_size = (8, 8)

    def __init__(self, scale=1.0, offset=0.0):
        self.scale, self.offset = scale, offset

    def fit(self, batches):
        return self

    def predict(self, images):
        x = np.asarray(images, np.float64)
        # computed as a convex combination so that huge scales do not overflow
        m = x.mean(axis=(1, 2, 3))
        s = self.scale * m - self.scale * (1 - m) + self.offset
        return s, x.mean(axis=1)


class _TorchSum(_ScoreDetector):
    differentiable = True

    def torch_score(self):
        return lambda x: x.double().sum(dim=(1, 2, 3))


def _record(ids, masks, labels=None):
    n = len(ids)
    labels = np.array([int(m.any()) for m in masks]) if labels is None else labels
    h, w = masks[0].shape
    inputs = Inputs(
        ids=list(ids),
        category="c",
        images=np.zeros((n, 3, h, w), np.float32),
        native_sizes=[m.shape for m in masks],
    )
    return Record(inputs, Targets(labels=np.asarray(labels), masks=list(masks)))


def _explanation(maps, scores=None):
    maps = np.asarray(maps, np.float32)
    scores = maps.reshape(len(maps), -1).max(1) if scores is None else scores
    return Explanation(explainer="e", maps=maps, native=list(maps), scores=np.asarray(scores))


def _pow2_resize_reference(a, size):
    """Bilinear resize computed in float64 after an exact power-of-two rescaling."""
    a = np.asarray(a, np.float64)
    big = float(np.abs(a).max()) or 1.0
    s = math.ldexp(1.0, max(-1074, min(1023, -math.frexp(big)[1])))
    t = torch.from_numpy(a * s)[None, None]
    shrink = size[0] < a.shape[0] or size[1] < a.shape[1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy() / s


# ======================================================================= P1 undefined


def _p1_image_auroc_one_class():
    _undefined(lambda: M.image_auroc([1, 1, 1], [0.1, 0.2, 0.3]), "one class")
    _undefined(lambda: M.image_aupr([0, 0], [0.1, 0.2]), "one class")


def _p1_pixel_auroc_no_anomalous_pixel():
    masks = np.zeros((2, 4, 4), bool)
    _undefined(lambda: M.pixel_auroc(masks, np.random.default_rng(0).random((2, 4, 4))))


def _p1_aupro_no_region():
    masks = np.zeros((2, 4, 4), bool)
    _undefined(lambda: M.aupro(masks, np.random.default_rng(0).random((2, 4, 4))))


def _p1_aupro_coarse_fpr_grid_is_defined():
    # Decision: AUPRO is defined whenever there is a region and a defect-free pixel. The
    # curve is a polyline from (0, 0); up to FPR = L it is flat where no threshold lands
    # (exact under monotonicity) and diagonal only across tied blocks (the ROC ties
    # convention), so even 3 normal pixels with L = 0.3 give a value, hand-computed here:
    # the highest pixel is normal (FPR 1/3, PRO 0), then the region's pixel (PRO 1).
    masks = np.array([[[True, False], [False, False]]])
    maps = np.array([[[0.5, 0.9], [0.1, 0.2]]])
    assert _no_warning(lambda: M.aupro(masks, maps, fpr_limit=0.3)) == 0.0
    assert _no_warning(lambda: M.aupro(masks, maps, fpr_limit=0.5)) == pytest.approx(1 / 3)
    # a tie between the region and a normal pixel at the top: the diagonal to (1/3, 1)
    maps = np.array([[[0.9, 0.9], [0.1, 0.2]]])
    assert M.aupro(masks, maps, fpr_limit=0.3) == pytest.approx(0.3 * 0.9 / 2 / 0.3)


def _p1_binned_all_in_one_bin():
    masks, _ = _masks_maps()
    maps = np.full(masks.shape, 0.7)
    pr = M.PixelRanking(mode="binned")
    st = pr.update(pr.init(), masks, maps)
    out = _quiet(lambda: pr.compute(st))
    for k in ("pixel_auroc", "pixel_aupr", "aupro@0.3"):
        assert math.isnan(out[k]), (k, out[k])
    with pytest.warns(UndefinedMetricWarning, match="bound"):
        pr.compute(st)


def _p1_binned_float64_detail_below_float32():
    masks, _ = _masks_maps()
    rng = np.random.default_rng(1)
    maps = 1.0 + rng.integers(0, 50, masks.shape) * 1e-9 + masks * 1e-8
    pr = M.PixelRanking(mode="binned")
    st = pr.update(pr.init(), masks, maps)
    out = _quiet(lambda: pr.compute(st))
    assert math.isnan(out["pixel_auroc"]), out["pixel_auroc"]
    # the registered metric says the same
    from xeval.metrics.pixel import PixelAUROC

    metric = PixelAUROC(mode="binned")
    s = metric.update(metric.init(), _record(list("abcd"), masks), _expl64(maps))
    _undefined(lambda: metric.compute(s).value, "bound")


def _expl64(maps):
    return Explanation(
        explainer="e",
        maps=np.asarray(maps, np.float32),
        native=list(np.asarray(maps)),
        scores=np.asarray(maps).reshape(len(maps), -1).max(1),
    )


def _p1_deletion_single_region():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 8, 8)).astype(np.float32)
    attr = rng.random((2, 8, 8))
    ref = np.zeros((3, 8, 8), np.float32)
    for fn in (M.deletion_auc, M.insertion_auc):
        with pytest.raises(InputError, match="patch_size"):
            _quiet(lambda fn=fn: fn(_ScoreDetector(), images, attr, patch_size=8,
                                    substrate="normal", reference=ref))  # fmt: skip
    with pytest.raises(InputError, match="patch_size"):
        _quiet(lambda: M.aopc(_ScoreDetector(), images, attr, patch_size=9,
                              substrate="normal", reference=ref))  # fmt: skip


def _p1_deletion_not_separated():
    rng = np.random.default_rng(0)
    images = np.full((2, 3, 8, 8), 0.5, np.float32)
    attr = rng.random((2, 8, 8))
    ref = np.full((3, 8, 8), 0.5, np.float32)  # the substrate is the image itself
    _undefined(
        lambda: _quiet_substrate(
            lambda: M.deletion_auc(
                _ScoreDetector(), images, attr, substrate="normal", reference=ref
            )
        )
    )


def _quiet_substrate(fn):
    from xeval.substrates import SubstrateWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubstrateWarning)
        return fn()


def _p1_infidelity_zero_perturbations():
    images = np.full((2, 3, 8, 8), 0.5, np.float32)
    ref = np.full((3, 8, 8), 0.5, np.float32)  # every replaced square equals the image
    attr = np.random.default_rng(0).random((2, 8, 8))
    _undefined(
        lambda: M.infidelity(
            _TorchSum(), images, attr, reference=ref, multiply_by_inputs=False, n_samples=4
        ),
        "perturbation",
    )


def _p1_sensitivity_zero_norm_map():
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)

    def zero(x):
        return np.zeros((len(x), 8, 8))

    _undefined(lambda: M.max_sensitivity(zero, images, n_samples=3), "all zero")
    _undefined(lambda: M.avg_sensitivity(zero, images, n_samples=3), "all zero")
    # unnormalised it is defined: the map does not move
    got = _no_warning(lambda: M.max_sensitivity(zero, images, n_samples=3, normalise=False))
    assert np.all(got == 0)


def _p1_bootstrap_fewer_than_two():
    from xeval.stats import bootstrap_auroc_ci, bootstrap_mean_ci

    _undefined(lambda: bootstrap_mean_ci([0.3], n_boot=10), "fewer than 2")
    _undefined(lambda: bootstrap_mean_ci([np.nan, 0.2, np.nan], n_boot=10), "fewer than 2")
    _undefined(lambda: bootstrap_auroc_ci([1, 1, 1], [0.1, 0.2, 0.3], n_boot=10), "one class")


def _p1_threshold_from_constant_validation():
    _undefined(lambda: M.normal_threshold(np.zeros((3, 4, 4))), "constant")
    _undefined(lambda: M.normal_threshold([np.full((4, 4), 2.5), np.full((2, 3), 2.5)]))


def _p1_iou_without_anomalous_pixel():
    masks = np.zeros((2, 4, 4), bool)
    maps = np.random.default_rng(0).random((2, 4, 4))
    for fn in (M.iou, M.dice, M.pro_at):
        _undefined(lambda fn=fn: fn(masks, maps, threshold=0.5))


def _p1_ssim_constant_maps():
    from xeval.metrics.randomisation import _ssim_rows

    a = np.zeros((2, 8, 8))
    b = np.random.default_rng(0).random((2, 8, 8))
    assert np.all(np.isnan(_quiet(lambda: _ssim_rows(a, b))))
    assert np.all(np.isnan(_quiet(lambda: _ssim_rows(b, a))))
    assert np.all(np.isfinite(_ssim_rows(b, b[::-1])))


def _p1_metric_values_without_images():
    from xeval.metrics.randomisation import MPRTSpearman, MPRTState

    _undefined(lambda: MPRTSpearman().compute(MPRTState()).value)
    im = M.ImageMetrics()
    out = _quiet(lambda: im.compute(im.init()))
    assert all(math.isnan(v) for v in out.values())


P1 = [
    pytest.param(_p1_image_auroc_one_class, id="image_auroc_one_class"),
    pytest.param(_p1_pixel_auroc_no_anomalous_pixel, id="pixel_auroc_no_positive"),
    pytest.param(_p1_aupro_no_region, id="aupro_no_region"),
    pytest.param(_p1_aupro_coarse_fpr_grid_is_defined, id="aupro_coarse_fpr_grid_defined"),
    pytest.param(_p1_binned_all_in_one_bin, id="binned_one_bin_vacuous"),
    pytest.param(_p1_binned_float64_detail_below_float32, id="binned_float64_detail"),
    pytest.param(_p1_deletion_single_region, id="deletion_patch_covers_image"),
    pytest.param(_p1_deletion_not_separated, id="deletion_not_separated"),
    pytest.param(_p1_infidelity_zero_perturbations, id="infidelity_zero_perturbations"),
    pytest.param(_p1_sensitivity_zero_norm_map, id="sensitivity_zero_norm"),
    pytest.param(_p1_bootstrap_fewer_than_two, id="bootstrap_n_lt_2"),
    pytest.param(_p1_threshold_from_constant_validation, id="threshold_constant_validation"),
    pytest.param(_p1_iou_without_anomalous_pixel, id="iou_dice_pro_no_positive"),
    pytest.param(_p1_ssim_constant_maps, id="mprt_ssim_constant_maps"),
    pytest.param(_p1_metric_values_without_images, id="no_images"),
]


@pytest.mark.parametrize("case", P1)
def test_p1_undefined_is_nan_with_a_reason_or_an_error(case):
    case()


# ================================================================ P2 precision, range

EXTREMES = np.array(
    [
        1.7976931348623157e308,
        -1.7976931348623157e308,
        1e308,
        -1e308,
        5e-324,
        -5e-324,
        1e-310,
        0.0,
        1e-300,
        1.0,
        -1.0,
        1e300,
        3.4e38,
        3.5e38,
        1e-45,
    ]
)


def _p2_pixel_ranking_extremes(seed):
    masks, maps = _masks_maps(seed, values=EXTREMES)
    y, s = masks.ravel(), maps.ravel()
    assert M.pixel_auroc(masks, maps) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.pixel_aupr(masks, maps) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def _p2_image_metrics_extremes(seed):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * 6)
    s = EXTREMES[rng.integers(0, EXTREMES.size, y.size)]
    assert M.image_auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.image_aupr(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    from xeval.stats import bootstrap_auroc_ci

    lo, hi = bootstrap_auroc_ci(y, s, n_boot=50)
    assert 0 <= lo <= hi <= 1


def _p2_binned_bound_holds(seed):
    masks, maps = _masks_maps(seed, values=EXTREMES)
    pr = M.PixelRanking(mode="binned")
    out = _quiet(lambda: pr.compute(pr.update(pr.init(), masks, maps)))
    y, s = masks.ravel(), maps.ravel()
    exact = {
        "pixel_auroc": skm.roc_auc_score(y, s),
        "pixel_aupr": skm.average_precision_score(y, s),
    }
    for k, e in exact.items():
        if math.isnan(out[k]):
            continue  # vacuous bound: undefined, said so (P1)
        assert abs(out[k] - e) <= out[f"error_bound/{k}"] + 1e-12, (k, out[k], e)


def _p2_binned_overflowing_float32():
    masks, _ = _masks_maps(3)
    rng = np.random.default_rng(3)
    maps = 10.0 ** rng.uniform(300, 305, masks.shape) * (1 + masks)
    pr = M.PixelRanking(mode="binned")
    out = _quiet(lambda: pr.compute(pr.update(pr.init(), masks, maps)))
    e = skm.roc_auc_score(masks.ravel(), maps.ravel())
    assert (
        math.isnan(out["pixel_auroc"])
        or abs(out["pixel_auroc"] - e) <= out["error_bound/pixel_auroc"] + 1e-12
    )
    # the exact mode handles it exactly
    assert M.pixel_auroc(masks, maps) == pytest.approx(e, abs=1e-12)


def _p2_resize_keeps_float64_detail():
    a = 1.0 + np.arange(6).reshape(2, 3) * 1e-9
    got = M.resize_to(a, (4, 6))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _pow2_resize_reference(a, (4, 6)), rtol=0, atol=1e-15)
    assert np.unique(got).size > 1


def _p2_resize_huge_values():
    for a in (
        np.array([[1e300, 2e300], [3e300, 4e300]]),
        np.array([[1.7e308, -1.7e308], [1e308, -1e308]]),
        np.array([[5e-324, 1e-310], [0.0, 2e-310]]),
    ):
        got = M.resize_to(a, (4, 4))
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, _pow2_resize_reference(a, (4, 4)), rtol=1e-14)


def _p2_resize_large_integers():
    a = np.array([[2**24 + 1, 2**24 + 3], [2**30 + 7, 2**40 + 1]], dtype=np.int64)
    got = M.resize_to(a, (4, 4))
    np.testing.assert_array_equal(got, _pow2_resize_reference(a.astype(np.float64), (4, 4)))
    with pytest.raises(InputError, match="map"):
        M.resize_to(np.array([[2**60 + 1, 2**60]], dtype=np.int64), (2, 4))


def _p2_integer_maps_beyond_float64():
    masks = np.array([[[True, False, False, True]]])
    maps = np.array([[[2**60 + 3, 2**60 + 1, 2**60 + 2, 2**60]]], dtype=np.int64)
    with pytest.raises(InputError, match=r"maps.*2\*\*53"):
        M.pixel_auroc(masks, maps)
    with pytest.raises(InputError, match=r"scores.*2\*\*53"):
        M.image_auroc([1, 0, 0, 1], maps.ravel())
    # within float64's integers: exact
    ok = maps - 2**60 + 2**40
    assert M.pixel_auroc(masks, ok) == skm.roc_auc_score(masks.ravel(), ok.ravel())


def _p2_threshold_compared_exactly():
    masks = np.array([[[True, True], [False, False]]])
    maps32 = np.array([[[1.0, 0.5], [1.0, 0.2]]], np.float32)
    t = 1.00000001  # between float32(1.0) and the next float32
    assert float(np.float32(t)) == 1.0
    assert _quiet(lambda: M.iou(masks, maps32, threshold=t)) == 0.0  # nothing predicted
    assert M.iou(masks, maps32, threshold=1.0) == pytest.approx(1 / 3)
    assert M.iou(masks, maps32, threshold=0.99999999) == pytest.approx(1 / 3)
    regions = [[(masks[0], None)]]
    assert M.spro_at(regions, maps32, threshold=0.99999999) == 0.5  # 1.0 > t
    assert M.spro_at(regions, maps32, threshold=1.0) == 0.0


def _p2_quantile_threshold_huge():
    vals = [np.array([[-1e308, 1e308], [1.5e308, -1.5e308]])]
    t = M.normal_threshold(vals, quantile=0.6)
    assert math.isfinite(t)
    assert t == pytest.approx(float(np.quantile(vals[0] / 2.0**1000, 0.6)) * 2.0**1000)


def _exact_mass(mask, a):
    """Relevance mass of the exact (rounded) input values, in rationals."""
    ap = [Fraction(float(v)) for v in np.maximum(a, 0).ravel()]
    inside = sum(v for v, m in zip(ap, mask.ravel(), strict=True) if m)
    return float(inside / sum(ap))


def _exact_gini(a):
    x = sorted(Fraction(float(v)) for v in np.abs(a).ravel())
    n = len(x)
    return float(sum((2 * i - n - 1) * v for i, v in enumerate(x, 1)) / (n * sum(x)))


def _exact_entropy(a):
    x = [Fraction(float(v)) for v in np.abs(a).ravel()]
    total = sum(x)
    p = [float(v / total) for v in x]
    return -math.fsum(q * math.log(q) for q in p if q > 0)


def _p2_relevance_mass_huge_and_tiny():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2] = True
    base = np.random.default_rng(0).random((1, 4, 4))
    for scale in (1.0, 1e308 / base.max(), 1.7e308, 1e-310, 2.0**-1070):
        x = base * scale
        got = M.relevance_mass(masks, x)
        assert got == pytest.approx(_exact_mass(masks[0], x[0]), rel=1e-12), scale


def _p2_complexity_huge_and_tiny():
    a = np.random.default_rng(1).random((2, 5, 5))
    for scale in (1.0, 1.7e308 / a.max(), 1e-315, 2.0**-1060):
        x = a * scale
        g, h = M.gini_sparseness(x), M.entropy_complexity(x)
        for i in range(2):
            assert g[i] == pytest.approx(_exact_gini(x[i]), rel=1e-12), scale
            assert h[i] == pytest.approx(_exact_entropy(x[i]), rel=1e-12), scale


def _p2_sensitivity_huge_and_tiny():
    images = np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32)

    def fn(scale):
        return lambda x: np.asarray(x, np.float64).sum(axis=1) * scale

    want = M.max_sensitivity(fn(1.0), images, n_samples=3)
    for scale in (1e200, 1e300, 1e-310):
        got = M.max_sensitivity(fn(scale), images, n_samples=3)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=str(scale))
    want = M.avg_sensitivity(fn(1.0), images, n_samples=3, normalise=False)
    got = M.avg_sensitivity(fn(2.0**-1000), images, n_samples=3, normalise=False)
    np.testing.assert_allclose(got, want * 2.0**-1000, rtol=1e-9)


def _p2_deletion_scores_near_limits():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 8, 8)).astype(np.float32) * 0.5 + 0.5
    attr = rng.random((2, 8, 8))
    ref = np.zeros((3, 8, 8), np.float32)

    def run(det, fn=M.deletion_auc):
        return _quiet_substrate(
            lambda: fn(det, images, attr, substrate="normal", reference=ref, steps=8)
        )

    want = run(_ScoreDetector(1.0))
    assert np.all(np.isfinite(want))
    for det in (_ScoreDetector(1e308), _ScoreDetector(1.7e308), _ScoreDetector(1e-300)):
        np.testing.assert_allclose(run(det), want, rtol=1e-9)
    want = run(_ScoreDetector(1.0), M.insertion_auc)
    np.testing.assert_allclose(run(_ScoreDetector(1.7e308), M.insertion_auc), want, rtol=1e-9)
    want_a = _quiet_substrate(
        lambda: M.aopc(_ScoreDetector(1.0), images, attr, substrate="normal",
                       reference=ref, steps=8, normalise=True)
    )  # fmt: skip
    got_a = _quiet_substrate(
        lambda: M.aopc(_ScoreDetector(1.7e308), images, attr, substrate="normal",
                       reference=ref, steps=8, normalise=True)
    )  # fmt: skip
    np.testing.assert_allclose(got_a, want_a, rtol=1e-9)


def _p2_faithfulness_correlation_huge_attributions():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 8, 8)).astype(np.float32)
    attr = rng.random((2, 8, 8))
    ref = np.zeros((3, 8, 8), np.float32)

    def run(a, det):
        return _quiet_substrate(
            lambda: M.faithfulness_correlation(
                det, images, a, substrate="normal", reference=ref, n_samples=10, patch_size=2
            )
        )

    want = run(attr, _ScoreDetector())
    np.testing.assert_allclose(run(attr * 1.5e308, _ScoreDetector()), want, rtol=1e-9)
    np.testing.assert_allclose(run(attr, _ScoreDetector(1.7e308)), want, rtol=1e-9)


def _p2_auroc_counts_beyond_int64():
    # 4e9 positives tied with 4e9 negatives, plus one separated pair: exact U needs more
    # than 63 bits
    n = 4_000_000_000
    s = ranking.RankSummary(
        thresholds=np.array([2.0, 1.0]),
        m=np.array([1, n], np.int64),
        w=np.array([0.0, 0.0]),
        neg_ge=np.array([0, n + 1], np.int64),
        neg_gt=np.array([0, 1], np.int64),
        n_pos=n + 1,
        n_neg=n + 1,
        n_regions=1,
    )
    want = Fraction(2 * (n + 1) + n * n, 2 * (n + 1) * (n + 1))
    assert ranking.auroc(s) == pytest.approx(float(want), rel=1e-15)


def _p2_engine_map_working_dtype(tmp_path):
    """The engine works on float32 maps: a detector map whose float64 detail would
    collapse into ties (or overflow) in float32 is an error naming the detector and
    the sample."""
    from xeval.data import load_mvtec, write_tiny_mvtec
    from xeval.engine.evaluate import stream
    from xeval.explainers.native import NativeMap

    root = write_tiny_mvtec(tmp_path / "d", size=(16, 16), n_train=2, n_good=1, n_defect=1)
    samples = load_mvtec(root, "a").test

    class Fine(_ScoreDetector):
        name = "fine"

        def __init__(self, maps):
            self.maps = maps

        def predict(self, images):
            b = len(images)
            return np.zeros(b), np.broadcast_to(self.maps, (b, 8, 8)).copy()

    rng = np.random.default_rng(0)
    for bad in (1.0 + rng.integers(0, 100, (8, 8)) * 1e-10, np.full((8, 8), 1e300)):
        with pytest.raises(InputError, match=r"fine.*float32"):
            stream(Fine(bad), [NativeMap()], [], samples, batch_size=2, category="a",
                   calibration={"native": {}}, subsets={}, probe_for=lambda e: None)  # fmt: skip
    # lossy but order-preserving float64 maps are fine (no tie created)
    ok = rng.random((8, 8))
    stream(Fine(ok), [NativeMap()], [], samples, batch_size=2, category="a",
           calibration={"native": {}}, subsets={}, probe_for=lambda e: None)  # fmt: skip


P2 = [
    *(
        pytest.param(lambda s=s: _p2_pixel_ranking_extremes(s), id=f"pixel_extremes_{s}")
        for s in range(3)
    ),  # fmt: skip
    *(
        pytest.param(lambda s=s: _p2_image_metrics_extremes(s), id=f"image_extremes_{s}")
        for s in range(3)
    ),  # fmt: skip
    *(
        pytest.param(lambda s=s: _p2_binned_bound_holds(s), id=f"binned_bound_{s}")
        for s in range(3)
    ),  # fmt: skip
    pytest.param(_p2_binned_overflowing_float32, id="binned_beyond_float32"),
    pytest.param(_p2_resize_keeps_float64_detail, id="resize_float64_detail"),
    pytest.param(_p2_resize_huge_values, id="resize_huge_and_subnormal"),
    pytest.param(_p2_resize_large_integers, id="resize_large_integers"),
    pytest.param(_p2_integer_maps_beyond_float64, id="int64_beyond_2**53"),
    pytest.param(_p2_threshold_compared_exactly, id="threshold_exact_comparison"),
    pytest.param(_p2_quantile_threshold_huge, id="quantile_threshold_huge"),
    pytest.param(_p2_relevance_mass_huge_and_tiny, id="relevance_mass_huge_tiny"),
    pytest.param(_p2_complexity_huge_and_tiny, id="complexity_huge_tiny"),
    pytest.param(_p2_sensitivity_huge_and_tiny, id="sensitivity_huge_tiny"),
    pytest.param(_p2_deletion_scores_near_limits, id="deletion_scores_near_limits"),
    pytest.param(_p2_faithfulness_correlation_huge_attributions, id="faithfulness_corr_huge"),
    pytest.param(_p2_auroc_counts_beyond_int64, id="auroc_counts_beyond_int64"),
]


@pytest.mark.parametrize("case", P2)
def test_p2_precision_and_range_are_kept_or_refused(case):
    case()


def test_p2_engine_refuses_maps_float32_cannot_hold(tmp_path):
    _p2_engine_map_working_dtype(tmp_path)


# ======================================================================= P3 reshaping

OTHER_ASPECT = [((12, 12), (24, 20)), ((20, 24), (24, 20)), ((24, 40), (24, 20)), ((3, 9), (9, 9))]
SAME_ASPECT = [((12, 10), (24, 20)), ((6, 5), (24, 20)), ((25, 20), (24, 20)), ((48, 40), (24, 20))]


@pytest.mark.parametrize(("shape", "size"), OTHER_ASPECT)
def test_p3_resize_refuses_another_aspect_ratio(shape, size):
    with pytest.raises(InputError) as e:
        M.resize_to(np.zeros(shape), size)
    msg = str(e.value)
    assert str(shape) in msg and str(size) in msg and "aspect" in msg


@pytest.mark.parametrize(("shape", "size"), SAME_ASPECT)
def test_p3_resize_upsamples_the_same_aspect_bilinearly(shape, size):
    a = np.random.default_rng(0).random(shape).astype(np.float32)
    got = M.resize_to(a, size)
    assert got.shape == size
    np.testing.assert_allclose(got, _pow2_resize_reference(a, size), atol=1e-6)


FUNCTIONAL = {
    "pixel_auroc": lambda m, a: M.pixel_auroc(m, a),
    "pixel_aupr": lambda m, a: M.pixel_aupr(m, a),
    "aupro": lambda m, a: M.aupro(m, a),
    "aupimo": lambda m, a: M.aupimo(m, a),
    "iou": lambda m, a: M.iou(m, a, threshold=0.5),
    "pro_at": lambda m, a: M.pro_at(m, a, threshold=0.5),
    "pointing_game": lambda m, a: M.pointing_game(m, a),
    "relevance_mass": lambda m, a: M.relevance_mass(m, a),
    "relevance_rank": lambda m, a: M.relevance_rank(m, a),
    "top_k": lambda m, a: M.top_k_intersection(m, a),
    "spro_at": lambda m, a: M.spro_at([[(x, None)] for x in m], a, threshold=0.5),
    "auc_spro": lambda m, a: M.auc_spro([[(x, None)] for x in m], a),
}


@pytest.mark.parametrize("name", list(FUNCTIONAL))
@pytest.mark.parametrize("as_list", [False, True], ids=["stack", "list"])
def test_p3_functional_metrics_demand_equal_shapes(name, as_list):
    masks = np.zeros((2, 24, 20), bool)
    masks[:, 5:9, 5:9] = True
    maps = np.random.default_rng(0).random((2, 12, 10))  # same aspect, half the size
    m, a = (list(masks), list(maps)) if as_list else (masks, maps)
    with pytest.raises(InputError, match=r"12, 10\).*24, 20\)|24, 20\).*12, 10\)"):
        FUNCTIONAL[name](m, a)


@pytest.mark.parametrize(
    ("map_shape", "frame", "native", "ok"),
    [
        ((16, 16), (16, 16), (32, 48), True),  # squashed input: the inverse resize
        ((8, 8), (16, 16), (32, 48), True),
        ((8, 16), (16, 16), (32, 32), False),  # map of another aspect than the input
        ((16, 8), (16, 16), (16, 16), False),
        ((4, 6), (8, 12), (16, 24), True),
        ((6, 4), (8, 12), (16, 24), False),
    ],
)
def test_p3_engine_map_must_have_the_aspect_of_the_image_it_explains(map_shape, frame, native, ok):
    from xeval.engine.explain import explain_record
    from xeval.explainers.native import NativeMap

    class Det(_ScoreDetector):
        input_size = frame

    ids = ["cat/good/007"]
    rec = Record(
        Inputs(ids=ids, category="c", images=np.zeros((1, 3, *frame), np.float32),
               native_sizes=[native]),
        Targets(labels=np.array([0]), masks=[np.zeros(native, bool)]),
    )  # fmt: skip
    dmaps = np.random.default_rng(0).random((1, *map_shape)).astype(np.float32)
    if ok:
        e = explain_record(NativeMap(), Det(), rec, np.zeros(1), dmaps)
        assert e.native[0].shape == native
    else:
        with pytest.raises(InputError) as err:
            explain_record(NativeMap(), Det(), rec, np.zeros(1), dmaps)
        msg = str(err.value)
        assert ids[0] in msg and str(map_shape) in msg and str(frame) in msg


# ======================================================================= P4 alignment


def _p4_image_metrics_ids_length():
    im = M.ImageMetrics()
    with pytest.raises(InputError, match="ids"):
        im.update(im.init(), [0, 1, 1], [0.1, 0.2, 0.3], ids=["a", "b"])


def _p4_image_metrics_duplicate_ids():
    im = M.ImageMetrics()
    st = im.update(im.init(), [0, 1], [0.1, 0.2], ids=["a", "b"])
    with pytest.raises(InputError, match="'b'"):
        im.update(st, [1], [0.3], ids=["b"])
    other = im.update(im.init(), [0], [0.5], ids=["a"])
    with pytest.raises(InputError, match="'a'"):
        im.merge(st, other)


def _p4_localisation_duplicates():
    lm = M.LocalisationMetrics()
    masks, maps = _masks_maps(n=2)
    st = lm.update(lm.init(), masks, maps, ids=["x", "y"])
    with pytest.raises(InputError, match="'x'"):
        lm.update(st, masks[:1], maps[:1], ids=["x"])
    with pytest.raises(InputError, match="'y'"):
        lm.merge(st, lm.update(lm.init(), masks[:1], maps[:1], ids=["y"]))
    with pytest.raises(InputError, match="'x' is given twice"):
        lm.update(lm.init(), masks, maps, ids=["x", "x"])


def _p4_complexity_duplicates():
    cm = M.ComplexityMetrics()
    _, maps = _masks_maps(n=2)
    with pytest.raises(InputError, match="'p'"):
        cm.update(cm.init(), maps, ids=["p", "p"])
    with pytest.raises(InputError, match="ids"):
        cm.update(cm.init(), maps, ids=["p"])


def _p4_aupimo_duplicates():
    from xeval.metrics.aupimo import AUPIMOState

    masks, maps = _masks_maps(n=2)
    with pytest.raises(InputError, match="'u'"):
        AUPIMOState().update(masks, maps, ids=["u", "u"])
    a = AUPIMOState().update(masks[:1], maps[:1], ids=["u"])
    b = AUPIMOState().update(masks[1:], maps[1:], ids=["u"])
    with pytest.raises(InputError, match="'u'"):
        a.merge(b)


def _p4_registered_per_image_metric():
    from xeval.metrics.localisation import RelevanceRank

    masks, maps = _masks_maps(n=2)
    rr = RelevanceRank()
    with pytest.raises(InputError, match="'s1'"):
        rr.update(rr.init(), _record(["s1", "s1"], masks), _explanation(maps))
    st = rr.update(rr.init(), _record(["s1", "s2"], masks), _explanation(maps))
    other = rr.update(rr.init(), _record(["s2", "s3"], masks), _explanation(maps))
    with pytest.raises(InputError, match="'s2'"):
        rr.merge(st, other)
    with pytest.raises(InputError, match="maps"):  # explanation of another batch size
        rr.update(rr.init(), _record(["s1", "s2"], masks), _explanation(maps[:1]))


def _p4_registered_image_and_pixel_metrics():
    from xeval.metrics.detection import ImageAUROC
    from xeval.metrics.pixel import PixelAUROC
    from xeval.metrics.threshold import IoUAtThreshold

    masks, maps = _masks_maps(n=2)
    rec = _record(["a", "b"], masks)
    for metric in (ImageAUROC(), PixelAUROC()):
        st = metric.update(metric.init(), rec, _explanation(maps))
        with pytest.raises(InputError, match="'a'"):
            metric.update(st, _record(["a", "c"], masks), _explanation(maps))
        with pytest.raises(InputError, match="both states hold sample id 'a'"):
            metric.merge(st, metric.update(metric.init(), rec, _explanation(maps)))
    with pytest.raises(InputError, match="scores"):
        m = ImageAUROC()
        m.update(m.init(), rec, _explanation(maps, scores=np.array([0.1, 0.2, 0.3])))
    iou = IoUAtThreshold()
    ex = _explanation(maps)
    ex.calibration = {("normal_quantile", 0.99): 0.5}
    st = iou.update(iou.init(), rec, ex)
    with pytest.raises(InputError, match="'a'"):
        iou.merge(st, iou.update(iou.init(), rec, ex))


def _p4_bootstrap_count():
    from xeval.stats import bootstrap_auroc_ci, bootstrap_mean_ci

    for bad in (0, -5, 2.5, True, "100", None):
        with pytest.raises(InputError, match="n_boot"):
            bootstrap_mean_ci([0.1, 0.2, 0.3], n_boot=bad)
        with pytest.raises(InputError, match="n_boot"):
            bootstrap_auroc_ci([0, 1, 1], [0.1, 0.2, 0.3], n_boot=bad)
    for bad in (0.0, 1.0, 1.5, True):
        with pytest.raises(InputError, match="level"):
            bootstrap_mean_ci([0.1, 0.2, 0.3], n_boot=10, level=bad)
    lo, hi = bootstrap_mean_ci([0.1, 0.2, 0.3], n_boot=np.int64(10))
    assert 0.1 <= lo <= hi <= 0.3


def _p4_config_bootstrap():
    from xeval.protocols.config import EvaluationSettings

    for bad in (0, -1, 2.5, True, "1000"):
        with pytest.raises(ConfigError, match="bootstrap"):
            EvaluationSettings(bootstrap=bad)
    for bad in (0, 1, -0.2, 1.5, True):
        with pytest.raises(ConfigError, match="validation_fraction"):
            EvaluationSettings(validation_fraction=bad)
    assert EvaluationSettings(bootstrap=1).bootstrap == 1


def _p4_config_file_bootstrap(tmp_path):
    from xeval.protocols.config import load_config

    base = (
        "name: t\ndataset: {format: textures, quick: true}\n"
        "detectors: [{kind: conv_autoencoder}]\nexplainers: [native]\n"
        "metrics: [pixel_auroc]\n"
    )
    for bad in ("0", "-1", "2.5", "true", "'1000'"):
        p = tmp_path / f"c{abs(hash(bad))}.yaml"
        p.write_text(base + f"evaluation: {{bootstrap: {bad}}}\n")
        with pytest.raises(ConfigError, match=r"bootstrap must be an integer >= 1"):
            load_config(p)


def _p4_validation_fraction_leaves_no_image():
    from xeval.data.sample import Sample
    from xeval.data.split import CategorySplit
    from xeval.engine.load import fit_and_validation
    from xeval.protocols.config import EvaluationSettings

    class Cfg:
        seed = 0

        def __init__(self, f):
            self.evaluation = EvaluationSettings(validation_fraction=f)

    def split(n):
        train = [
            Sample(
                id=f"t{i}",
                category="screw",
                split="train",
                label=0,
                defect="good",
                image_path=f"/x/{i}.png",
            )  # fmt: skip
            for i in range(n)
        ]
        return CategorySplit(category="screw", train=train)

    for n, f in ((10, 0.01), (10, 0.99), (3, 0.1), (1, 0.5), (2, 0.2)):
        with pytest.raises(InputError) as e:
            fit_and_validation(split(n), Cfg(f))
        msg = str(e.value)
        assert "screw" in msg and str(n) in msg and "validation" in msg, msg
    fit, val = fit_and_validation(split(10), Cfg(0.2))
    assert (len(fit), len(val)) == (8, 2)
    fit, val = fit_and_validation(split(2), Cfg(0.5))
    assert (len(fit), len(val)) == (1, 1)


P4 = [
    pytest.param(_p4_image_metrics_ids_length, id="image_ids_length"),
    pytest.param(_p4_image_metrics_duplicate_ids, id="image_ids_duplicates"),
    pytest.param(_p4_localisation_duplicates, id="localisation_ids"),
    pytest.param(_p4_complexity_duplicates, id="complexity_ids"),
    pytest.param(_p4_aupimo_duplicates, id="aupimo_ids"),
    pytest.param(_p4_registered_per_image_metric, id="registered_per_image"),
    pytest.param(_p4_registered_image_and_pixel_metrics, id="registered_image_pixel_iou"),
    pytest.param(_p4_bootstrap_count, id="bootstrap_count"),
    pytest.param(_p4_config_bootstrap, id="evaluation_settings"),
    pytest.param(_p4_validation_fraction_leaves_no_image, id="validation_fraction"),
]


@pytest.mark.parametrize("case", P4)
def test_p4_updates_and_counts_are_aligned(case):
    case()


def test_p4_config_file_bootstrap_is_positive(tmp_path):
    _p4_config_file_bootstrap(tmp_path)
