"""Faithfulness metrics: deletion/insertion, AOPC, faithfulness correlation, infidelity.

Tiny analytic detectors make the curves hand-computable: ``score = sum_hw w_hw *
sum_c |x - normal|`` (an additive detector whose exact attribution is known).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from xeval.adapters.base import Detector
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics import (
    aopc,
    deletion_auc,
    deletion_curve,
    faithfulness_correlation,
    infidelity,
    insertion_auc,
    insertion_curve,
)
from xeval.substrates import Road, SubstrateWarning, road_impute


class AbsDetector(Detector):
    """score = sum_hw weights * sum_c |x - normal| (float64; no torch score)."""

    name = "abs"

    def __init__(self, normal: np.ndarray, weights: np.ndarray | None = None) -> None:
        self.normal = normal.astype(np.float64)
        h, w = normal.shape[-2:]
        self.weights = np.ones((h, w)) if weights is None else weights
        self.calls = 0
        self.sizes: list[int] = []

    def fit(self, batches):
        return self

    def maps(self, images: np.ndarray) -> np.ndarray:
        return np.abs(images.astype(np.float64) - self.normal).sum(axis=1) * self.weights

    def predict(self, images):
        self.calls += 1
        self.sizes.append(len(images))
        m = self.maps(images)
        return m.sum(axis=(1, 2)), m


class LinearDetector(Detector):
    """score = sum w * x, with a differentiable torch score (float64 inside)."""

    name = "linear"

    def __init__(self, w: np.ndarray) -> None:
        self.w = w.astype(np.float64)

    def fit(self, batches):
        return self

    def predict(self, images):
        s = (images.astype(np.float64) * self.w).sum(axis=(1, 2, 3))
        return s, np.zeros((len(images), 0, 0))

    def torch_score(self):
        w = torch.from_numpy(self.w)
        return lambda x: (x.double() * w).sum(dim=(1, 2, 3))


@pytest.fixture
def defect_set():
    """8 images 3x16x16: normal texture + noise + a bright 4x4 defect; the oracle mask."""
    rng = np.random.default_rng(0)
    normal = rng.uniform(0.3, 0.7, size=(3, 16, 16))
    images = np.repeat(normal[None], 8, axis=0) + rng.normal(0, 0.01, (8, 3, 16, 16))
    masks = np.zeros((8, 16, 16), bool)
    for i in range(8):
        y, x = rng.integers(0, 12, size=2)
        images[i, :, y : y + 4, x : x + 4] += 0.5
        masks[i, y : y + 4, x : x + 4] = True
    return images.astype(np.float32), masks, normal.astype(np.float32)


def test_hand_computed_2x2_curve():
    normal = np.zeros((1, 2, 2))
    det = AbsDetector(normal)
    x = np.array([[[[4.0, 3.0], [2.0, 1.0]]]], np.float32)
    a = np.array([[[1.0, 4.0], [3.0, 2.0]]])  # order: (0,1)=3, (1,0)=2, (1,1)=1, (0,0)=4
    d = deletion_curve(det, x, a, reference=normal, steps=4)
    np.testing.assert_allclose(d.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(d.scores[0], [10, 7, 5, 4, 0])
    np.testing.assert_allclose(d.curves[0], [1, 0.7, 0.5, 0.4, 0])
    np.testing.assert_allclose(d.auc, [0.25 * (0.85 + 0.6 + 0.45 + 0.2)])
    ins = insertion_curve(det, x, a, reference=normal, steps=4)
    np.testing.assert_allclose(ins.scores[0], [0, 3, 5, 6, 10])
    np.testing.assert_allclose(ins.auc, [0.25 * (0.15 + 0.4 + 0.55 + 0.8)])
    assert d.substrate.startswith("normal") and d.notes == ()
    # AOPC = mean_k (s0 - sk) = (0 + 3 + 5 + 6 + 10) / 5
    np.testing.assert_allclose(aopc(det, x, a, reference=normal, steps=4), [4.8])
    # LeRF removes (0,0)=4, (1,1)=1, (1,0)=2, (0,1)=3 -> scores 10, 6, 5, 3, 0
    np.testing.assert_allclose(aopc(det, x, a, order="lerf", reference=normal, steps=4), [5.2])


def test_ties_broken_in_raster_order():
    normal = np.zeros((1, 2, 2))
    det = AbsDetector(normal)
    x = np.array([[[[4.0, 3.0], [2.0, 1.0]]]], np.float32)
    a = np.array([[[1.0, 1.0], [0.0, 1.0]]])  # tie among (0,0), (0,1), (1,1)
    d = deletion_curve(det, x, a, reference=normal, steps=4)
    np.testing.assert_allclose(d.scores[0], [10, 6, 3, 2, 0])


def test_oracle_beats_random_and_inverted(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    oracle = masks.astype(float)
    rand = np.random.default_rng(1).random(masks.shape)
    kw = {"reference": normal, "steps": 16}
    d_o, d_r, d_i = (deletion_auc(det, images, m, **kw) for m in (oracle, rand, -oracle))
    i_o, i_r, i_i = (insertion_auc(det, images, m, **kw) for m in (oracle, rand, -oracle))
    assert np.all(d_o < d_r) and np.all(d_r <= d_i)  # both may saturate at the clip
    assert np.all(i_o > i_r) and np.all(i_r > i_i)
    assert np.all(d_o < 0.25) and np.all(i_o > 0.75)


def test_normal_substrate_on_normal_image_changes_nothing(defect_set):
    _, _, normal = defect_set
    det = AbsDetector(normal)
    x = normal[None]
    a = np.random.default_rng(0).random((1, 16, 16))
    with pytest.warns(UndefinedMetricWarning, match="does not score clearly above"):
        curve = deletion_curve(det, x, a, reference=np.stack([normal, normal]), steps=5)
    np.testing.assert_allclose(curve.scores, 0.0)
    assert np.isnan(curve.auc).all()


def test_reference_mean_is_used(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    refs = np.stack([normal - 0.1, normal + 0.1])  # mean == normal
    a = masks.astype(float)
    np.testing.assert_allclose(
        deletion_auc(det, images, a, substrate="normal", reference=refs, steps=8),
        deletion_auc(det, images, a, substrate="normal", reference=normal, steps=8),
        rtol=1e-5,
    )


def test_road_imputes_a_linear_ramp_exactly_inside():
    h, w = 12, 10
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([0.1 * yy + 0.05 * xx, 1 - 0.02 * xx + 0.03 * yy]).astype(np.float64)
    removed = np.zeros((h, w), bool)
    removed[2:9, 3:8] = True
    removed[5, 1] = True
    out = road_impute(ramp, removed, noise=0.0)
    np.testing.assert_allclose(out, ramp, atol=1e-5)
    # noise only on imputed pixels, seeded
    noisy = road_impute(ramp, removed, noise=0.01, rng=0)
    np.testing.assert_array_equal(noisy[:, ~removed], ramp[:, ~removed].astype(np.float32))
    assert np.abs(noisy - ramp)[:, removed].std() > 0.005
    np.testing.assert_array_equal(noisy, road_impute(ramp, removed, noise=0.01, rng=0))
    # fully removed: the flat channel-mean image
    full = road_impute(ramp, np.ones((h, w), bool), noise=0.0)
    np.testing.assert_allclose(full, ramp.mean(axis=(1, 2), keepdims=True) + 0 * ramp, atol=1e-6)


def test_road_border_pixel_is_weighted_mean_of_in_image_neighbours():
    img = np.arange(9, dtype=float).reshape(1, 3, 3)
    removed = np.zeros((3, 3), bool)
    removed[0, 0] = True
    out = road_impute(img, removed, noise=0.0)
    # neighbours (0,1) w=1/6, (1,0) w=1/6, (1,1) w=1/12
    expected = (1 / 6 * 1 + 1 / 6 * 3 + 1 / 12 * 4) / (1 / 6 + 1 / 6 + 1 / 12)
    assert out[0, 0, 0] == pytest.approx(expected, rel=1e-6)


def _smooth_defects(normal: np.ndarray, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = np.repeat(normal[None], 4, axis=0)
    masks = np.zeros((4, 16, 16))
    for i in range(4):
        y, x = rng.integers(2, 10, size=2)
        images[i, :, y : y + 4, x : x + 4] += 0.5
        masks[i, y : y + 4, x : x + 4] = 1
    return images.astype(np.float32), masks


def test_road_imputes_normal_content_where_the_defect_was():
    # on a smooth (ramp) normal image, ROAD fills a removed defect with the ramp
    yy, xx = np.mgrid[0:16, 0:16]
    normal = np.stack([0.2 + 0.02 * yy, 0.3 + 0.01 * xx, 0.5 + 0.005 * (xx + yy)])
    images, masks = _smooth_defects(normal)
    det = AbsDetector(normal)
    curve = deletion_curve(det, images, masks, substrate=Road(0.0), steps=16)
    # step 1 removes exactly the 16 defect pixels (1/16 of 256)
    assert np.all(curve.scores[:, 1] < 1e-4 * curve.scores[:, 0])


def test_road_substrate_ranks_oracle_first_and_is_batch_independent():
    # a flat normal image: ROAD's imputation (and its flat endpoint) is normal content
    normal = np.ones((3, 16, 16)) * np.array([0.2, 0.5, 0.7])[:, None, None]
    images, masks = _smooth_defects(normal)
    det = AbsDetector(normal)
    kw = {"substrate": "road", "steps": 8, "seed": 3, "reference": normal}
    d_o = deletion_auc(det, images, masks, **kw)
    d_i = deletion_auc(det, images, -masks, **kw)
    d_r = deletion_auc(det, images, np.random.default_rng(1).random(masks.shape), **kw)
    assert np.all(d_o < d_r) and np.all(d_r <= d_i)  # both may saturate at the clip
    i_o = insertion_auc(det, images, masks, **kw)
    i_i = insertion_auc(det, images, -masks, **kw)
    assert np.all(i_o > i_i)
    again = deletion_auc(det, images, masks, batch_size=5, **kw)
    np.testing.assert_array_equal(d_o, again)
    other_seed = deletion_auc(det, images, masks, **{**kw, "seed": 4})
    assert not np.array_equal(d_o, other_seed)
    # without a reference the fully removed image is the flat channel-mean image
    c = deletion_curve(det, images[:1], masks[:1], substrate=Road(0.0), steps=4)
    assert "flat channel means" in c.substrate
    flat = images[:1].mean(axis=(2, 3), keepdims=True) + 0 * images[:1]
    assert c.scores[0, -1] == pytest.approx(det.score(flat)[0], rel=1e-5)


def test_aopc_morf_beats_lerf_for_oracle(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    kw = {"reference": normal, "steps": 10}
    morf = aopc(det, images, masks.astype(float), order="morf", **kw)
    lerf = aopc(det, images, masks.astype(float), order="lerf", **kw)
    assert np.all(morf > lerf)
    pm = aopc(det, images, masks.astype(float), patch_size=4, **kw)
    assert pm.shape == (8,) and np.all(pm > lerf)


def test_patches_remove_whole_squares():
    normal = np.zeros((1, 4, 4))
    det = AbsDetector(normal)
    x = np.ones((1, 1, 4, 4), np.float32)
    a = np.zeros((1, 4, 4))
    a[0, 2:, 2:] = 1.0  # bottom-right 2x2 patch first, then raster order
    d = deletion_curve(det, x, a, reference=normal, steps=4, patch_size=2)
    np.testing.assert_allclose(d.scores[0], [16, 12, 8, 4, 0])
    # the oracle patch removed first, then (0,0), (0,1), (1,0) patches
    np.testing.assert_allclose(d.curves[0], [1, 0.75, 0.5, 0.25, 0])


def test_faithfulness_correlation_is_one_for_additive_detector(defect_set):
    images, _, normal = defect_set
    rng = np.random.default_rng(5)
    weights = rng.uniform(0.5, 2.0, size=(16, 16))
    det = AbsDetector(normal, weights)
    exact = det.maps(images)  # the exact additive contributions
    fc = faithfulness_correlation(det, images, exact, reference=normal, n_samples=30)
    np.testing.assert_allclose(fc, 1.0, atol=1e-9)
    rand = faithfulness_correlation(det, images, rng.random((8, 16, 16)), reference=normal)
    assert np.all(rand < 0.9)


def test_faithfulness_correlation_deterministic(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    a = masks + np.random.default_rng(2).random(masks.shape)
    f1 = faithfulness_correlation(det, images, a, reference=normal, seed=4, batch_size=7)
    f2 = faithfulness_correlation(det, images, a, reference=normal, seed=4, batch_size=64)
    np.testing.assert_array_equal(f1, f2)
    f3 = faithfulness_correlation(det, images, a, reference=normal, seed=5)
    assert not np.array_equal(f1, f3)


def test_infidelity_zero_for_linear_detector():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 16, 16))
    det = LinearDetector(w)
    x = rng.uniform(0, 1, size=(4, 3, 16, 16)).astype(np.float32)
    ref = rng.uniform(0, 1, size=(3, 16, 16)).astype(np.float32)
    # gradient x input against a zero reference
    zeros = np.zeros_like(ref)
    gxi = w * x
    inf0 = infidelity(det, x, gxi, reference=zeros, n_samples=16)
    assert inf0.shape == (4,) and np.all(inf0 < 1e-8)
    # gradient x (input - reference), per channel and as a signed channel-sum map
    gx = w * (x - ref)
    assert np.all(infidelity(det, x, gx, reference=ref, n_samples=16) < 1e-8)
    assert np.all(infidelity(det, x, gx.sum(axis=1), reference=ref, n_samples=16) < 1e-8)
    # gradient attributions with noise perturbations / with patches (I = m * (x - r))
    grad = np.broadcast_to(w, x.shape).copy()
    assert np.all(infidelity(det, x, grad, perturbation="noise", n_samples=16) < 1e-8)
    assert np.all(
        infidelity(det, x, grad, reference=ref, multiply_by_inputs=False, n_samples=16) < 1e-8
    )
    # a wrong attribution is not ~0; batch size does not change the numbers
    bad = infidelity(det, x, gxi[..., ::-1].copy(), reference=zeros, n_samples=16, seed=1)
    assert np.all(bad > 1e-3)
    bad2 = infidelity(
        det, x, gxi[..., ::-1].copy(), reference=zeros, n_samples=16, seed=1, batch_size=3
    )
    np.testing.assert_allclose(bad, bad2, rtol=1e-5)


def test_infidelity_needs_torch_score(defect_set):
    images, masks, normal = defect_set
    with pytest.raises(InputError, match="torch_score.*ConvAutoencoder"):
        infidelity(AbsDetector(normal), images, masks.astype(float), reference=normal)
    det = LinearDetector(np.ones((3, 16, 16)))
    with pytest.raises(InputError, match="multiply_by_inputs=False"):
        infidelity(det, images, masks.astype(float), perturbation="noise", multiply_by_inputs=True)


def test_batched_call_count(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    images5, a5 = images[:5], masks[:5].astype(float)
    deletion_auc(det, images5, a5, reference=normal, steps=10, batch_size=16)
    assert det.calls == -(-5 * 11 // 16) == 4
    assert max(det.sizes) == 16
    det.calls, det.sizes = 0, []
    faithfulness_correlation(det, images5, a5, reference=normal, n_samples=20, batch_size=25)
    assert det.calls == -(-5 * 21 // 25)
    det.calls = 0
    aopc(det, images5, a5, reference=normal, steps=4, batch_size=1000)
    assert det.calls == 1


def test_batch_size_does_not_change_values(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    a = masks + 0.1 * np.random.default_rng(0).random(masks.shape)
    c1 = deletion_curve(det, images, a, reference=normal, steps=7, batch_size=3)
    c2 = deletion_curve(det, images, a, reference=normal, steps=7, batch_size=100)
    np.testing.assert_array_equal(c1.scores, c2.scores)


def test_shape_mismatch_names_both_shapes(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    with pytest.raises(InputError, match=r"\(8, 8, 8\).*\(8, 3, 16, 16\)"):
        deletion_auc(det, images, np.ones((8, 8, 8)), reference=normal)
    with pytest.raises(InputError, match="reduce channels"):
        deletion_auc(det, images, np.ones((8, 3, 16, 16)), reference=normal)
    with pytest.raises(InputError, match=r"\(3, 16, 16\)"):
        deletion_auc(det, images, masks.astype(float), reference=np.ones((3, 8, 8)))


def test_all_zero_attributions_are_nan(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    a = masks.astype(float)
    a[[1, 4]] = 0.0
    with pytest.warns(UndefinedMetricWarning, match=r"image\(s\) \[1, 4\].*constant"):
        d = deletion_auc(det, images, a, reference=normal, steps=4)
    assert np.isnan(d[[1, 4]]).all() and np.isfinite(np.delete(d, [1, 4])).all()
    with pytest.warns(UndefinedMetricWarning):
        fc = faithfulness_correlation(det, images, np.zeros((8, 16, 16)), reference=normal)
    assert np.isnan(fc).all()
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(aopc(det, images[:1], np.full((1, 16, 16), 2.0), reference=normal))[0]


def test_non_finite_inputs(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    a = masks.astype(float)
    a[2, 3, 4] = np.nan
    with pytest.raises(InputError, match=r"non-finite.*\(2, 3, 4\)"):
        deletion_auc(det, images, a, reference=normal)
    bad = images.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="images hold non-finite"):
        insertion_auc(det, bad, masks.astype(float), reference=normal)


def test_substrate_errors_and_flags(defect_set):
    images, masks, normal = defect_set
    det = AbsDetector(normal)
    a = masks.astype(float)
    with pytest.raises(InputError, match="needs reference"):
        deletion_auc(det, images, a)
    with pytest.raises(InputError, match="reconstruct"):
        deletion_auc(det, images, a, substrate="reconstruction")
    with pytest.raises(InputError, match="substrate must be one of"):
        deletion_auc(det, images, a, substrate="zeros")
    for name in ("black", "blur"):
        with pytest.warns(SubstrateWarning, match="new anomalies"):
            c = deletion_curve(det, images, a, substrate=name, steps=4)
        assert c.notes and "new anomalies" in c.notes[0]


def test_reconstruction_substrate(defect_set):
    images, masks, normal = defect_set

    class Rec(AbsDetector):
        def reconstruct(self, x):
            return np.broadcast_to(self.normal, x.shape).astype(np.float32)

    det = Rec(normal)
    a = masks.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = deletion_auc(det, images, a, substrate="reconstruction", steps=8)
    np.testing.assert_allclose(got, deletion_auc(det, images, a, reference=normal, steps=8))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_steps(defect_set, bad):
    images, masks, normal = defect_set
    with pytest.raises(InputError, match="steps"):
        deletion_auc(AbsDetector(normal), images, masks, reference=normal, steps=bad)


def test_conv_autoencoder_reconstruction_and_infidelity():
    from xeval.adapters.autoencoder import ConvAutoencoder

    rng = np.random.default_rng(0)
    train = rng.uniform(0.4, 0.6, (8, 3, 16, 16)).astype(np.float32)
    det = ConvAutoencoder(input_size=16, epochs=1, width=4, batch_size=8, seed=0).fit([train])
    x = train[:3].copy()
    x[:, :, 4:8, 4:8] = 1.0
    mask = np.zeros((3, 16, 16))
    mask[:, 4:8, 4:8] = 1
    curve = deletion_curve(det, x, mask, substrate="reconstruction", steps=4, batch_size=8)
    assert curve.scores.shape == (3, 5) and curve.substrate.startswith("reconstruction")
    inf = infidelity(det, x, mask, reference=train, n_samples=4, batch_size=8)
    assert inf.shape == (3,) and np.all(np.isfinite(inf)) and np.all(inf >= 0)


# ----------------------------------------------------- bounded, separated (issue 8)
def test_oracle_beats_random_on_every_clearly_detected_anomaly():
    """Deletion and insertion: the true mask as the attribution is better than a random
    map on every image whose score is clearly above its substrate's; an image that
    barely differs from its substrate is excluded with a reason, never a large value."""
    rng = np.random.default_rng(3)
    normal = rng.uniform(0.3, 0.7, size=(3, 24, 24))
    n = 12
    images = np.repeat(normal[None], n, axis=0) + rng.normal(0, 0.01, (n, 3, 24, 24))
    masks = np.zeros((n, 24, 24), bool)
    for i in range(n):
        y, x = rng.integers(0, 18, 2)
        size = 6 if i else 1  # image 0: a one-pixel, barely visible defect
        masks[i, y : y + size, x : x + size] = True
        images[i][:, masks[i]] += 0.3 if i else 0.002
    images = images.astype(np.float32)
    det = AbsDetector(normal)
    noise = det.predict(images)[0].std()  # score spread of the normal noise
    oracle = masks.astype(np.float32)
    random = rng.random(masks.shape).astype(np.float32)
    kw = {"reference": normal, "steps": 12, "margin": 3 * noise}
    with pytest.warns(UndefinedMetricWarning, match="does not score clearly above"):
        d_o = deletion_curve(det, images, oracle, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        d_r = deletion_curve(det, images, random, **kw)
        i_o = insertion_curve(det, images, oracle, **kw)
        i_r = insertion_curve(det, images, random, **kw)
    clear = np.array([e is None for e in d_o.excluded])
    assert not clear[0] and clear[1:].all()
    assert d_o.excluded[0] == "not separated from its substrate"
    assert np.isnan(d_o.auc[0]) and np.isnan(i_o.auc[0])  # NaN, not a huge ratio
    assert np.all(d_o.auc[clear] < d_r.auc[clear])
    assert np.all(i_o.auc[clear] > i_r.auc[clear])
    for c in (d_o, d_r, i_o, i_r):  # every curve and AUC in [0, 1]
        ok = ~np.isnan(c.auc)
        assert np.all((c.auc[ok] >= 0) & (c.auc[ok] <= 1))
        assert np.nanmin(c.curves) >= 0 and np.nanmax(c.curves) <= 1


def test_without_a_margin_a_near_tie_would_explode():
    """The failure the margin prevents: s(x) barely above s(substrate) makes the
    normalised curve of any removal order huge before clipping."""
    normal = np.full((3, 8, 8), 0.5)
    img = normal.copy()
    img[:, 2, 2] += 0.2  # s(x) = 0.6
    ref = normal.copy()
    ref[:, 5, 5] += 0.2 - 1e-4  # s(substrate) = 0.6 - 3e-4: a near tie
    det = AbsDetector(normal)
    att = np.zeros((1, 8, 8), np.float32)
    att[0, 5, 5] = 1.0  # removing it first adds the reference's own anomaly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        c = deletion_curve(det, img[None].astype(np.float32), att, reference=ref, steps=4)
    assert c.overshoot[0] > 10  # what an unclipped ratio would have reported
    assert 0 <= c.auc[0] <= 1  # bounded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        c2 = deletion_curve(
            det, img[None].astype(np.float32), att, reference=ref, steps=4, margin=0.01
        )
    assert np.isnan(c2.auc[0]) and c2.excluded[0] == "not separated from its substrate"


def test_constant_maps_at_chance_or_excluded():
    rng = np.random.default_rng(0)
    normal = rng.uniform(0.3, 0.7, size=(3, 12, 12))
    imgs = (normal[None] + 0.0).repeat(3, axis=0)
    imgs[:, :, 3:7, 3:7] += 0.4
    det = AbsDetector(normal)
    flat = np.zeros((3, 12, 12), np.float32)
    with pytest.warns(UndefinedMetricWarning, match="constant"):
        c = deletion_curve(det, imgs.astype(np.float32), flat, reference=normal, steps=6)
    assert np.isnan(c.auc).all() and set(c.excluded) == {"constant map"}
    r = deletion_curve(
        det, imgs.astype(np.float32), flat, reference=normal, steps=6, constant="random",
        keys=["a", "b", "c"],
    )  # fmt: skip
    assert np.isfinite(r.auc).all() and np.all((r.auc >= 0) & (r.auc <= 1))
    r2 = deletion_curve(
        det, imgs.astype(np.float32), flat, reference=normal, steps=6, constant="random",
        keys=["a", "b", "c"], batch_size=1,
    )  # fmt: skip
    np.testing.assert_array_equal(r.auc, r2.auc)  # seeded by the key, not the batch
    r3 = deletion_curve(
        det, imgs.astype(np.float32), flat, reference=normal, steps=6, constant="random",
        keys=["x", "y", "z"],
    )  # fmt: skip
    assert not np.array_equal(r.curves, r3.curves)  # another key, another order
