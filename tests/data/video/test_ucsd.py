"""UCSD Ped1/Ped2 reader on tiny fixtures written in the exact layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

import xeval.data.video._common as common
from xeval.data.video.ucsd import read_ucsd
from xeval.data.video.writers import tiny_frames, write_ucsd
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

T, H, W = 4, 24, 32


def _masks(frames_with_anomaly, t=T):
    m = np.zeros((t, H, W), dtype=bool)
    for f in frames_with_anomaly:
        m[f, 5:10, 7 + f : 12 + f] = True
    return m


@pytest.fixture
def ucsd(tmp_path):
    train = {"Train001": tiny_frames(T, seed=1), "Train002": tiny_frames(3, seed=2)}
    test = {"Test001": tiny_frames(T, seed=3), "Test002": tiny_frames(T, seed=4)}
    masks = {"Test001": _masks([1, 2]), "Test002": _masks([])}
    root = write_ucsd(tmp_path / "UCSDped2", train=train, test=test, masks=masks)
    return root, train, test, masks


def test_reads_layout_exactly(ucsd):
    root, train, test, masks = ucsd
    # registered under "ucsd" (the registry's private table: looking it up would import
    # every video reader, some of which other modules provide)
    assert VIDEO_DATASETS._entries["ucsd"] is read_ucsd
    ds = read_ucsd(path=str(root))
    assert [v.video_id for v in ds.train] == ["Train001", "Train002"]
    assert [v.video_id for v in ds.test] == ["Test001", "Test002"]
    v = ds.test[0]
    assert v.n_frames == T and v.frame_size == (H, W)
    assert v.frame_names == ["001.tif", "002.tif", "003.tif", "004.tif"]
    np.testing.assert_array_equal(v.frames(), test["Test001"])
    np.testing.assert_array_equal(v.frames(1, 3), test["Test001"][1:3])
    np.testing.assert_array_equal(v.masks(), masks["Test001"])
    np.testing.assert_array_equal(v.labels, [False, True, True, False])
    assert not ds.test[1].labels.any()
    assert all(not t.labels.any() and t.masks() is None for t in ds.train)
    np.testing.assert_array_equal(ds.train[1].frames(), train["Train002"])
    assert "any anomalous pixel" in ds.conventions["frame_labels"]


def test_natural_order_beyond_999(tmp_path):
    # 1000.tif must come after 999.tif (lexicographic sorting would put it first)
    folder = tmp_path / "Train" / "Train001"
    folder.mkdir(parents=True)
    fr = tiny_frames(3, seed=5)
    for name, f in zip(["998.tif", "999.tif", "1000.tif"], fr, strict=True):
        Image.fromarray(f[..., 0]).save(folder / name)
    write_ucsd(
        tmp_path, train={}, test={"Test001": tiny_frames(2)}, masks={"Test001": _masks([], 2)}
    )
    ds = read_ucsd(path=str(tmp_path))
    assert ds.train[0].frame_names == ["998.tif", "999.tif", "1000.tif"]
    np.testing.assert_array_equal(ds.train[0].frames(), fr)


def test_construction_reads_no_frame(ucsd, monkeypatch):
    root, _, test, _ = ucsd
    calls = []
    real = common.read_frame_file
    monkeypatch.setattr(common, "read_frame_file", lambda p: calls.append(p) or real(p))
    ds = read_ucsd(path=str(root))
    assert calls == []
    ds.test[0].frames(2, 4)
    assert [p.name for p in calls] == ["003.tif", "004.tif"]


def test_missing_folders_are_named(tmp_path, ucsd):
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist.*Train/TrainNNN"):
        read_ucsd(path=str(tmp_path / "nowhere"))
    root = ucsd[0]
    shutil.rmtree(root / "Test")
    with pytest.raises(DatasetError, match=r"Test does not exist.*Test/TestNNN"):
        read_ucsd(path=str(root))


def test_test_video_without_gt(ucsd):
    root = ucsd[0]
    shutil.rmtree(root / "Test" / "Test002_gt")
    with pytest.raises(DatasetError, match=r"Test002 has no Test002_gt folder.*frame_labels="):
        read_ucsd(path=str(root))
    with pytest.warns(UserWarning, match="Test002.*left out"):
        ds = read_ucsd(path=str(root), missing_masks="drop")
    assert [v.video_id for v in ds.test] == ["Test001"]


def test_frame_labels_from_intervals(ucsd, tmp_path):
    pytest.importorskip("xeval.data.video.intervals")
    import json

    root = ucsd[0]
    shutil.rmtree(root / "Test" / "Test002_gt")
    f = tmp_path / "ped.json"
    f.write_text(json.dumps({"Test002": {"anomalies": [{"bike": [[1, 2]]}], "length": T}}))
    ds = read_ucsd(path=str(root), frame_labels=str(f))
    v = ds.test[1]
    assert v.labels.dtype == bool and v.labels.shape == (T,) and v.labels.any()
    assert v.masks() is None


def test_mask_count_disagrees(ucsd):
    root = ucsd[0]
    (root / "Test" / "Test001_gt" / "004.bmp").unlink()
    with pytest.raises(DatasetError, match=r"Test001_gt holds 3 masks.*Test001 holds 4 frames"):
        read_ucsd(path=str(root))


def test_mask_of_other_size_names_file_and_frame(ucsd):
    root = ucsd[0]
    Image.fromarray(np.zeros((H + 1, W), np.uint8)).save(root / "Test" / "Test001_gt" / "003.bmp")
    with pytest.raises(DatasetError, match=r"003\.bmp \(frame 2\) is 25x32.*24x32"):
        read_ucsd(path=str(root))


def test_non_binary_mask(ucsd):
    root = ucsd[0]
    m = np.zeros((H, W), np.uint8)
    m[0, 0], m[0, 1] = 128, 255
    Image.fromarray(m).save(root / "Test" / "Test001_gt" / "002.bmp")
    with pytest.raises(DatasetError, match=r"002\.bmp is not binary"):
        read_ucsd(path=str(root))


def test_frame_of_other_size_names_file_and_frame(ucsd):
    root = ucsd[0]
    Image.fromarray(np.zeros((H, W + 2), np.uint8)).save(root / "Train" / "Train001" / "002.tif")
    ds = read_ucsd(path=str(root))  # lazy: found when read
    with pytest.raises(DatasetError, match=r"frame 1 \(.*002\.tif\) is 24x34.*24x32"):
        ds.train[0].frames()


def test_gap_in_frame_numbers(ucsd):
    root = ucsd[0]
    (root / "Test" / "Test002_gt" / "002.bmp").rename(root / "Test" / "Test002_gt" / "009.bmp")
    with pytest.raises(DatasetError, match=r"Test002_gt skips frame number 2 between 001\.bmp"):
        read_ucsd(path=str(root))
    (root / "Train" / "Train001" / "002.tif").rename(root / "Train" / "Train001" / "007.tif")
    (root / "Train" / "Train001" / "003.tif").unlink()
    with pytest.raises(DatasetError, match=r"Train001 skips frame numbers 2\.\.3 between"):
        read_ucsd(path=str(root))


def test_mask_numbers_must_match_frames(ucsd):
    root = ucsd[0]
    gt = root / "Test" / "Test002_gt"
    for k in (4, 3, 2, 1):
        (gt / f"{k:03d}.bmp").rename(gt / f"{k + 1:03d}.bmp")
    with pytest.raises(DatasetError, match=r"002\.bmp does not match frame 0 \(001\.tif\)"):
        read_ucsd(path=str(root))


def test_empty_video_and_orphan_gt(ucsd):
    root = ucsd[0]
    for f in (root / "Train" / "Train002").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"Train002 holds no frame file.*empty video"):
        read_ucsd(path=str(root))
    write_ucsd(root, train={"Train002": tiny_frames(2)}, test={})
    (root / "Test" / "Test009_gt").mkdir()
    with pytest.raises(DatasetError, match=r"Test009_gt has no video folder"):
        read_ucsd(path=str(root))


def test_videos_can_be_pickled_and_read(ucsd):
    import pickle

    root, _, test, _ = ucsd
    v = pickle.loads(pickle.dumps(read_ucsd(path=str(root)).test[0]))
    np.testing.assert_array_equal(v.frames(), test["Test001"])
    with pytest.raises(DatasetError, match=r"frame range \[2, 9\) is outside"):
        v.frames(2, 9)


def test_reasons_resolve_file_numbers(ucsd, tmp_path):
    import json

    root = ucsd[0]
    f = tmp_path / "xman_ped2.json"
    f.write_text(json.dumps({"Test001/002": [["object", "bicycle"]]}))
    ds = read_ucsd(path=str(root), reasons=str(f))
    # 002.tif is frame 1 (0-based display order)
    assert ds.test[0].reasons == {1: (("object", "bicycle"),)}
    assert ds.vocabulary.names == ["object: bicycle"]
