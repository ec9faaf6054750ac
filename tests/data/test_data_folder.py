"""Generic folder reader."""

from __future__ import annotations

import shutil

import pytest

from xeval.data import load_folder, load_mvtec, write_tiny_mvtec
from xeval.errors import DatasetError


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_mvtec(tmp_path / "ds", categories=("a",), defects=("scratch", "stain"))


def test_defaults_match_mvtec_reader(tiny):
    split = load_folder(tiny / "a", category="a")
    ref = load_mvtec(tiny, "a")
    assert [(s.id, s.label, s.defect, s.mask_path) for s in split.test] == [
        (s.id, s.label, s.defect, s.mask_path) for s in ref.test
    ]
    assert [s.id for s in split.train] == [s.id for s in ref.train]


def test_custom_layout_and_patterns(tiny, tmp_path):
    root = tmp_path / "flat"
    shutil.copytree(tiny / "a" / "train" / "good", root / "normal_train")
    shutil.copytree(tiny / "a" / "test" / "good", root / "normal_test")
    for kind in ("scratch", "stain"):
        shutil.copytree(tiny / "a" / "test" / kind, root / "anomalous" / kind)
        for m in (tiny / "a" / "ground_truth" / kind).iterdir():
            dst = root / "masks" / kind / m.name.replace("_mask", "")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(m, dst)
    split = load_folder(
        root,
        category="flat",
        train_glob="normal_train/*",
        test_normal_glob="normal_test/*",
        test_anomalous_glob="anomalous/*/*",
        mask_pattern=["nothing/{name}", "masks/{defect}/{stem}.{ext}"],
    )
    assert split.counts() == {
        "train": 4,
        "test": 6,
        "test/good": 2,
        "test/scratch": 2,
        "test/stain": 2,
    }
    by_id = {s.id: s for s in split.test}
    assert by_id["flat/anomalous/stain/001"].mask_path == root / "masks" / "stain" / "001.png"
    assert by_id["flat/normal_test/001"].label == 0
    no_masks = load_folder(
        root,
        train_glob="normal_train/*",
        test_normal_glob="normal_test/*",
        test_anomalous_glob="anomalous/*/*",
        mask_pattern=None,
    )
    assert all(s.mask_path is None for s in no_masks.test)


def test_folder_errors(tiny):
    with pytest.raises(DatasetError, match=r"scratch/000\.png.*000_gt\.png"):
        load_folder(tiny / "a", mask_pattern="ground_truth/{defect}/{stem}_gt.png")
    with pytest.raises(DatasetError, match="unknown placeholder"):
        load_folder(tiny / "a", mask_pattern="ground_truth/{kind}/{stem}.png")
    with pytest.raises(DatasetError, match="train set.*empty"):
        load_folder(tiny / "a", train_glob="nothing/*")
    with pytest.raises(DatasetError, match="relative"):
        load_folder(tiny / "a", train_glob="../*")
