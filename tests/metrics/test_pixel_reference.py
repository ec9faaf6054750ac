"""Pixel metrics against the shared reference fixtures, scikit-learn and a brute-force
implementation of the MVTec AD AUPRO definition."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _naive import naive_aupro
from sklearn.metrics import average_precision_score, roc_auc_score

from xeval import metrics as M

CASES = ["random_squares", "heavy_ties", "diagonal_regions", "realistic_60x64"]


@pytest.fixture(scope="module")
def expected(reference_dir):
    return json.loads((reference_dir / "expected.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES)
def test_reference_fixtures(reference_dir, expected, case):
    d = np.load(reference_dir / f"{case}.npz")
    masks, maps = d["masks"], d["maps"]
    want = expected[case]
    assert M.aupro(masks, maps, fpr_limit=0.3) == pytest.approx(want["aupro@0.3"], abs=1e-9)
    assert M.aupro(masks, maps, fpr_limit=0.05) == pytest.approx(want["aupro@0.05"], abs=1e-9)
    assert M.aupro(masks, maps, fpr_limit=1.0) == pytest.approx(want["aupro@1.0"], abs=1e-9)
    assert M.pixel_auroc(masks, maps) == pytest.approx(want["pixel_auroc"], abs=1e-9)
    assert M.pixel_aupr(masks, maps) == pytest.approx(want["pixel_ap_sklearn"], abs=1e-9)
    t = want["iou_threshold"]
    assert M.iou(masks, maps, threshold=t) == pytest.approx(want["iou_at_threshold"], abs=1e-9)
    labels = masks.reshape(len(masks), -1).any(axis=1)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    assert M.image_auroc(labels, scores) == pytest.approx(want["image_auroc_maxpool"], abs=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_list_input_equals_array_input(reference_dir, case):
    d = np.load(reference_dir / f"{case}.npz")
    masks, maps = d["masks"], d["maps"]
    assert M.aupro(list(masks), list(maps)) == M.aupro(masks, maps)
    assert M.pixel_auroc(list(masks), list(maps)) == pytest.approx(
        M.pixel_auroc(masks, maps), abs=1e-15
    )


def _random_set(rng, sizes, *, levels=None):
    masks, maps = [], []
    for h, w in sizes:
        m = np.zeros((h, w), bool)
        if rng.random() < 0.7:
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            m[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
            m[rng.random((h, w)) < 0.03] = True
        a = rng.random((h, w)) + 0.4 * m
        if levels:
            a = np.round(a * levels) / levels
        masks.append(m)
        maps.append(a)
    return masks, maps


@pytest.mark.parametrize("levels", [None, 7])
def test_against_sklearn_mixed_sizes(levels):
    rng = np.random.default_rng(1)
    masks, maps = _random_set(rng, [(9, 11), (12, 7), (10, 10), (5, 13)], levels=levels)
    masks[0][0, 0] = True  # make sure both classes exist
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([a.ravel() for a in maps])
    assert M.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.pixel_aupr(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("levels", [None, 5])
@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_against_brute_force(levels, limit):
    rng = np.random.default_rng(2)
    masks, maps = _random_set(rng, [(8, 9), (10, 6), (7, 7)], levels=levels)
    masks[1][2:4, 2:4] = True
    assert M.aupro(masks, maps, fpr_limit=limit) == pytest.approx(
        naive_aupro(masks, maps, limit), abs=1e-12
    )


def test_aupro_hand_computed():
    # one image, one region of 2 pixels, 2 normal pixels.
    # scores: region (0.9, 0.3); normal (0.5, 0.1).
    # t=0.9: FPR 0, PRO 1/2; t=0.5: FPR 1/2, PRO 1/2; t=0.3: FPR 1/2, PRO 1; t=0.1: (1, 1)
    # area to FPR 1: 0.5*0.5 (flat at 1/2) + 0.5*1 = 0.75; to 0.3: 0.3*0.5/0.3 = 0.5
    mask = np.array([[1, 1, 0, 0]], bool)
    amap = np.array([[0.9, 0.3, 0.5, 0.1]])
    assert M.aupro(mask, amap, fpr_limit=1.0) == pytest.approx(0.75)
    assert M.aupro(mask, amap, fpr_limit=0.3) == pytest.approx(0.5)
    # AUROC: pairs (0.9>0.5, 0.9>0.1, 0.3<0.5, 0.3>0.1) = 3/4
    assert M.pixel_auroc(mask, amap) == pytest.approx(0.75)


def test_eight_connectivity_defines_regions():
    # two diagonal pixels form ONE region (8-connectivity): PRO jumps by 1/2 per pixel
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    amap = np.zeros((4, 4))
    amap[0, 0] = 1.0
    # at t=1: PRO = 1/2 (half of the single region), FPR = 0; then all pixels at t=0
    # curve (0,0)->(0,.5)->(1,1): area to 1 = 0.75 (with 4-connectivity it would be 0.75
    # too, so check PRO@t directly)
    assert M.pro_at(mask, amap, threshold=1.0) == pytest.approx(0.5)
