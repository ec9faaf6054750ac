"""CUHK Avenue reader on tiny fixtures (PyAV .avi files, scipy .mat volLabel cells)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("av")
from scipy.io import savemat  # noqa: E402

import xeval.data.video._common as common  # noqa: E402
from xeval.data.video.avenue import read_avenue  # noqa: E402
from xeval.data.video.writers import tiny_frames, write_avenue, write_video_file  # noqa: E402
from xeval.errors import DatasetError  # noqa: E402
from xeval.registry import VIDEO_DATASETS  # noqa: E402

T, H, W = 5, 24, 32


def _masks(frames, t=T):
    m = np.zeros((t, H, W), dtype=bool)
    for f in frames:
        m[f, 2:6, f : f + 3] = True
    return m


@pytest.fixture
def avenue(tmp_path):
    train = {"01": tiny_frames(T, channels=3, seed=1), "02": tiny_frames(3, channels=3, seed=2)}
    test = {"01": tiny_frames(T, channels=3, seed=3), "02": tiny_frames(4, channels=3, seed=4)}
    masks = {"01": _masks([2, 3]), "02": _masks([], 4)}
    root = write_avenue(tmp_path / "Avenue", train=train, test=test, masks=masks)
    return root, train, test, masks


def _cell(masks):
    cell = np.empty((1, len(masks)), dtype=object)
    for t, m in enumerate(masks):
        cell[0, t] = np.asarray(m)
    return {"volLabel": cell}


def test_reads_layout_exactly(avenue):
    root, train, test, masks = avenue
    assert VIDEO_DATASETS._entries["avenue"] is read_avenue
    ds = read_avenue(path=str(root))
    assert [v.video_id for v in ds.train] == ["train_01", "train_02"]
    assert [v.video_id for v in ds.test] == ["01", "02"]
    v = ds.test[0]
    assert (v.n_frames, v.frame_size) == (T, (H, W))
    assert v.frame_names == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(v.frames(), test["01"])  # lossless FFV1
    np.testing.assert_array_equal(v.frames(3, 5), test["01"][3:])
    np.testing.assert_array_equal(v.frames(1, 2), test["01"][1:2])  # backwards: reopens
    np.testing.assert_array_equal(v.masks(), masks["01"])
    np.testing.assert_array_equal(v.masks(2, 3), masks["01"][2:3])
    np.testing.assert_array_equal(v.labels, [False, False, True, True, False])
    assert v.labels.dtype == bool
    np.testing.assert_array_equal(ds.test[1].masks(), masks["02"])
    np.testing.assert_array_equal(ds.train[1].frames(), train["02"])
    assert ds.train[0].masks() is None and not ds.train[0].labels.any()


def test_construction_decodes_nothing(avenue, monkeypatch):
    root, _, test, _ = avenue
    calls = []
    real = common.decode_frames
    monkeypatch.setattr(common, "decode_frames", lambda c, s: calls.append(1) or real(c, s))
    ds = read_avenue(path=str(root))
    assert calls == []
    for t in range(T):  # sequential single-frame reads decode the file once
        np.testing.assert_array_equal(ds.test[0].frames(t, t + 1)[0], test["01"][t])
    assert len(calls) == 1


def test_grey_lossy_video_and_pickling(tmp_path):
    import pickle

    fr = np.full((3, H, W, 1), 120, np.uint8)
    write_video_file(tmp_path / "training_videos" / "01.avi", fr, codec="mpeg4")
    write_avenue(tmp_path, train={}, test={"01": fr}, masks={"01": _masks([1], 3)})
    ds = read_avenue(path=str(tmp_path))
    v = pickle.loads(pickle.dumps(ds.train[0]))
    got = v.frames()
    assert got.shape == (3, H, W, 3)
    assert np.abs(got.astype(int) - 120).max() <= 3


def test_missing_folders(avenue, tmp_path):
    root = avenue[0]
    with pytest.raises(DatasetError, match=r"nope does not exist.*training_videos/NN\.avi"):
        read_avenue(path=str(tmp_path / "nope"))
    shutil.rmtree(root / "testing_label_mask")
    with pytest.raises(DatasetError, match=r"testing_label_mask does not exist.*N_label\.mat"):
        read_avenue(path=str(root))


def test_original_archive_ground_truth_folder(avenue):
    root = avenue[0]
    (root / "ground_truth_demo").mkdir()
    (root / "testing_label_mask").rename(root / "ground_truth_demo" / "testing_label_mask")
    assert read_avenue(path=str(root)).test[0].labels.sum() == 2


def test_frame_count_disagrees_names_both_files(avenue):
    root = avenue[0]
    savemat(root / "testing_label_mask" / "1_label.mat", _cell(_masks([1], T + 2)))
    with pytest.raises(
        DatasetError, match=r"1_label\.mat holds 7 masks \(volLabel\).*01\.avi has 5 frames"
    ):
        read_avenue(path=str(root))


def test_mask_size_and_values_name_file_and_frame(avenue):
    root = avenue[0]
    masks = list(_masks([1]).astype(np.uint8))
    masks[3] = np.zeros((H, W + 1), np.uint8)
    savemat(root / "testing_label_mask" / "1_label.mat", _cell(masks))
    with pytest.raises(DatasetError, match=r"1_label\.mat: the mask of frame 3 is 24x33"):
        read_avenue(path=str(root))
    masks[3] = np.zeros((H, W), np.uint8)
    masks[4] = np.full((H, W), 2, np.uint8)
    savemat(root / "testing_label_mask" / "1_label.mat", _cell(masks))
    with pytest.raises(DatasetError, match=r"1_label\.mat: the mask of frame 4 is not binary"):
        read_avenue(path=str(root))


def test_label_files_and_videos_must_pair(avenue):
    root = avenue[0]
    savemat(root / "testing_label_mask" / "9_label.mat", _cell(_masks([], 2)))
    with pytest.raises(DatasetError, match=r"9_label\.mat has no test video 09\.avi"):
        read_avenue(path=str(root))
    (root / "testing_label_mask" / "9_label.mat").unlink()
    (root / "testing_label_mask" / "2_label.mat").unlink()
    with pytest.raises(DatasetError, match=r"02\.avi has no label file .*2_label\.mat"):
        read_avenue(path=str(root))


def test_volume_without_vollabel_and_v73(avenue):
    root = avenue[0]
    savemat(root / "testing_label_mask" / "1_label.mat", {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"1_label\.mat holds no variable 'volLabel'"):
        read_avenue(path=str(root))
    # a MATLAB v7.3 file is an HDF5 file with a 512-byte MATLAB header
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    (root / "testing_label_mask" / "1_label.mat").write_bytes(
        header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM" + b"\x00" * 388
    )
    with pytest.raises(DatasetError, match=r"1_label\.mat is a MATLAB v7\.3 \(HDF5\) file"):
        read_avenue(path=str(root))


def test_empty_or_broken_video(avenue):
    root = avenue[0]
    (root / "testing_videos" / "02.avi").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"02\.avi"):
        read_avenue(path=str(root))
    (root / "testing_videos" / "02.avi").unlink()
    (root / "testing_label_mask" / "2_label.mat").unlink()
    for f in (root / "training_videos").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"training_videos holds no video file"):
        read_avenue(path=str(root))


def test_missing_av_says_how_to_install(avenue, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_av(name, *a, **k):
        if name == "av":
            raise ImportError("no av")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(DatasetError, match=r"pip install 'xeval\[video\]'"):
        read_avenue(path=str(avenue[0]))


def test_video_shorter_than_its_header(avenue, monkeypatch):
    import itertools

    root = avenue[0]
    real = common.decode_frames
    monkeypatch.setattr(common, "decode_frames", lambda c, s: itertools.islice(real(c, s), 2))
    v = read_avenue(path=str(root)).test[0]
    with pytest.raises(DatasetError, match=r"01\.avi decodes to 2 frames, but its header says 5"):
        v.frames()
