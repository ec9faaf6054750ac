"""MVTec-layout reader, on tiny fixture trees (valid and broken)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from xeval.data import list_categories, load_mvtec, write_tiny_mvtec
from xeval.errors import DatasetError


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_mvtec(
        tmp_path / "ds", categories=("a", "b"), defects=("scratch", "hole"), n_defect=2
    )


def test_reads_tiny_dataset(tiny):
    assert list_categories(tiny) == ["a", "b"]
    split = load_mvtec(tiny, "a")
    assert split.category == "a" and split.root == tiny
    assert len(split.train) == 4 and all(s.label == 0 for s in split.train)
    assert split.counts() == {
        "train": 4,
        "test": 6,
        "test/good": 2,
        "test/hole": 2,
        "test/scratch": 2,
    }
    assert split.defects == ["hole", "scratch"]
    ids = [s.id for s in split.test]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert "a/test/scratch/001" in ids and split.train[0].id == "a/train/good/000"
    for s in split.test:
        assert (s.mask_path is None) == (s.defect == "good")
        assert s.label == int(s.defect != "good") and s.split == "test"
    assert load_mvtec(tiny, "a") == split  # deterministic
    assert split.fingerprint() == load_mvtec(tiny, "a").fingerprint()
    assert len(split.fingerprint(content=True)) == 64


def test_btad_like_names_and_extensions(tiny):
    gt = tiny / "a" / "ground_truth" / "scratch"
    (gt / "000_mask.png").rename(gt / "000.png")  # <id>.<ext> mask
    img = tiny / "a" / "test" / "hole" / "001.png"
    Image.open(img).save(img.with_suffix(".bmp"))
    img.unlink()
    split = load_mvtec(tiny, "a")
    by_id = {s.id: s for s in split.test}
    assert by_id["a/test/scratch/000"].mask_path == gt / "000.png"
    assert by_id["a/test/hole/001"].image_path.suffix == ".bmp"


def test_missing_category_names_folder_and_choices(tiny):
    with pytest.raises(DatasetError, match=r"zzz.*a, b"):
        load_mvtec(tiny, "zzz")
    with pytest.raises(DatasetError, match="nowhere"):
        load_mvtec(tiny / "nowhere", "a")


def test_missing_mask_names_image(tiny):
    (tiny / "a" / "ground_truth" / "hole" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"hole/001\.png.*no ground-truth mask"):
        load_mvtec(tiny, "a")
    split = load_mvtec(tiny, "a", validate=False)  # listing only
    assert any(s.mask_path is None and s.label == 1 for s in split.test)
    split = load_mvtec(tiny, "a", require_masks=False)
    assert len(split.test) == 6


def test_mask_size_mismatch_names_both_files(tiny):
    mask = tiny / "a" / "ground_truth" / "scratch" / "000_mask.png"
    Image.fromarray(np.zeros((16, 32), dtype=np.uint8)).save(mask)
    with pytest.raises(DatasetError, match=r"000_mask\.png.*16x32.*scratch/000\.png.*32x32"):
        load_mvtec(tiny, "a")


def test_non_binary_mask_names_file(tiny):
    mask = tiny / "b" / "ground_truth" / "hole" / "000_mask.png"
    arr = np.zeros((32, 32), dtype=np.uint8)
    arr[3:6, 3:6] = 127
    Image.fromarray(arr).save(mask)
    with pytest.raises(DatasetError, match=r"hole/000_mask\.png.*not binary.*127"):
        load_mvtec(tiny, "b")


def test_empty_test_set(tiny):
    shutil.rmtree(tiny / "a" / "test")
    with pytest.raises(DatasetError, match=r"test set of category 'a' is empty.*a/test"):
        load_mvtec(tiny, "a")


def test_empty_train_set(tiny):
    for p in (tiny / "b" / "train" / "good").iterdir():
        p.unlink()
    (tiny / "b" / "train" / "good" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"train set of category 'b' is empty.*train/good"):
        load_mvtec(tiny, "b")


def test_duplicate_stems_refused(tiny):
    img = tiny / "a" / "test" / "good" / "000.png"
    Image.open(img).save(img.with_suffix(".jpg"))
    with pytest.raises(DatasetError, match=r"a/test/good/000.*not unique"):
        load_mvtec(tiny, "a")


def test_no_categories(tmp_path):
    with pytest.raises(DatasetError, match="no category folder"):
        list_categories(tmp_path)
