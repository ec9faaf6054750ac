"""Threshold metrics and image metrics: hand-computed values, scikit-learn, edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from xeval import metrics as M
from xeval.errors import InputError, UndefinedMetricWarning

RNG = np.random.default_rng(0)
NAN_MAP = np.array([[[0.0, np.nan], [0, 0]]])


def test_iou_dice_pro_hand_computed():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True  # region A, 4 px
    masks[0, 3, 3] = True  # region B, 1 px
    maps = np.zeros((2, 4, 4))
    maps[0, :2, 0] = 1.0  # covers 2 px of A
    maps[1, 0, 0] = 1.0  # a false positive in the normal image
    # TP = 2, FP = 1, FN = 3
    assert M.iou(masks, maps, threshold=0.5) == pytest.approx(2 / 6)
    assert M.dice(masks, maps, threshold=0.5) == pytest.approx(4 / 8)
    assert M.pro_at(masks, maps, threshold=0.5) == pytest.approx((2 / 4 + 0) / 2)
    per = M.iou_per_image(masks, maps, threshold=0.5)
    assert per[0] == pytest.approx(2 / 5) and np.isnan(per[1])


def test_threshold_is_inclusive():
    mask = np.array([[1, 0]], bool)
    amap = np.array([[0.5, 0.2]])
    assert M.iou(mask, amap, threshold=0.5) == 1.0


def test_normal_threshold_quantile():
    maps = [np.arange(100, dtype=float).reshape(10, 10)]
    assert M.normal_threshold(maps, quantile=0.99) == pytest.approx(
        np.quantile(np.arange(100), 0.99)
    )
    with pytest.raises(InputError, match="quantile"):
        M.normal_threshold(maps, quantile=1.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(50) < 0.4
    s = np.round(rng.random(50) + 0.3 * y, 1)  # with ties
    assert M.image_auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s))
    assert M.image_aupr(y, s) == pytest.approx(skm.average_precision_score(y, s))
    p, r, _ = skm.precision_recall_curve(y, s)
    f1 = np.nan_to_num(2 * p * r / (p + r))
    assert M.f1_max(y, s) == pytest.approx(f1.max())


def test_fpr_at_95_tpr_hand_computed():
    # 20 anomalies scored 1..20, normals scored 0.5 and 1.5..: TPR>=0.95 needs t <= 2
    y = np.r_[np.ones(20), np.zeros(4)]
    s = np.r_[np.arange(1, 21), [0.5, 1.5, 2.5, 30]]
    # at t = 2: TPR = 19/20 = 0.95; negatives >= 2: 2.5 and 30 -> FPR = 2/4
    assert M.fpr_at_tpr(y, s) == pytest.approx(0.5)


def test_one_class_gives_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="one class"):
        assert np.isnan(M.image_auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(UndefinedMetricWarning, match="no anomalous pixels"):
        assert np.isnan(M.aupro(np.zeros((2, 3, 3)), RNG.random((2, 3, 3))))
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(M.pixel_auroc(np.ones((1, 3, 3)), RNG.random((1, 3, 3))))


def test_no_warning_on_valid_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.aupro(np.eye(4)[None].astype(bool), RNG.random((1, 4, 4)))


@pytest.mark.parametrize(
    ("masks", "maps", "match"),
    [
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), r"maps has shape \(2, 4, 5\).*masks has shape"),
        ([np.zeros((4, 4))], [np.zeros((3, 4))], r"maps\[0\] has shape"),
        (np.full((1, 2, 2), 255), np.zeros((1, 2, 2)), r"binary.*255.*mask > 0"),
        (
            np.zeros((1, 2, 2)),
            np.array([[[0.0, np.nan], [0, 0]]]),
            r"non-finite.*index \(0, 0, 1\)",
        ),
        (np.zeros((1, 2, 2)), np.array([[[0.0, np.inf], [0, 0]]]), r"non-finite"),
        (np.zeros((0, 2, 2)), np.zeros((0, 2, 2)), r"empty"),
        (np.zeros((3, 2, 2)), np.zeros((2, 2, 2)), r"same number of images, got 3 and 2"),
        (np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2)), r"\(N, H, W\)"),
    ],
)
def test_bad_input_names_argument_and_value(masks, maps, match):
    with pytest.raises(InputError, match=match):
        M.aupro(masks, maps)


def test_bad_labels():
    with pytest.raises(InputError, match="labels must be 0"):
        M.image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(InputError, match="equal length"):
        M.image_auroc([0, 1], [0.1])
    with pytest.raises(InputError, match="non-finite"):
        M.image_auroc([0, 1], [0.1, np.nan])


def test_resize_to_is_bilinear_and_untransformed():
    a = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    out = M.resize_to(a, (4, 4))
    assert out.shape == (4, 4)
    assert out.min() >= 0 and out.max() <= 3  # no normalisation, no overshoot
    assert out[0, 0] == pytest.approx(0.0) and out[-1, -1] == pytest.approx(3.0)
    assert M.resize_to(a, (2, 2)) is a
