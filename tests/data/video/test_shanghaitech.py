"""ShanghaiTech reader on tiny fixtures (frame folders, .npy labels and masks, tracks)."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

import xeval.data.video._common as common
from xeval.data.video.shanghaitech import read_shanghaitech
from xeval.data.video.tracks import write_merl_tracks
from xeval.data.video.writers import tiny_frames, write_shanghaitech
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

T, H, W = 5, 24, 32


def _masks(frames, t=T):
    m = np.zeros((t, H, W), dtype=bool)
    for f in frames:
        m[f, 4:9, 2 * f : 2 * f + 6] = True
    return m


def _boxes(masks, track=1):
    rows = []
    for t, m in enumerate(masks):
        if m.any():
            ys, xs = np.nonzero(m)
            rows.append([t, track, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


@pytest.fixture
def sht(tmp_path):
    train = {"01_001": tiny_frames(T, channels=3, seed=1), "02_001": tiny_frames(3, channels=3)}
    test = {"01_0014": tiny_frames(T, channels=3, seed=3), "01_0015": tiny_frames(4, channels=3)}
    masks = {"01_0014": _masks([1, 2, 3]), "01_0015": _masks([], 4)}
    root = write_shanghaitech(
        tmp_path / "shanghaitech", train=train, test=test, pixel_masks=masks, ext=".png"
    )
    return root, train, test, masks


def test_reads_layout_exactly(sht):
    root, train, test, masks = sht
    assert VIDEO_DATASETS._entries["shanghaitech"] is read_shanghaitech
    ds = read_shanghaitech(path=str(root))
    assert [v.video_id for v in ds.train] == ["01_001", "02_001"]
    assert [v.video_id for v in ds.test] == ["01_0014", "01_0015"]
    v = ds.test[0]
    assert v.frame_names == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    assert (v.n_frames, v.frame_size) == (T, (H, W))
    np.testing.assert_array_equal(v.frames(), test["01_0014"])
    np.testing.assert_array_equal(v.masks(), masks["01_0014"])
    np.testing.assert_array_equal(v.masks(2, 4), masks["01_0014"][2:4])
    np.testing.assert_array_equal(v.labels, [False, True, True, True, False])
    np.testing.assert_array_equal(ds.train[1].frames(), train["02_001"])
    assert v.regions is None and "test_frame_mask" in ds.conventions["frame_labels"]


def test_jpeg_frames_and_training_videos(tmp_path):
    pytest.importorskip("av")
    train = {"01_001": tiny_frames(3, channels=3, seed=1)}
    smooth = np.tile(np.linspace(0, 255, W, dtype=np.uint8)[None, None, :, None], (3, H, 1, 3))
    write_shanghaitech(
        tmp_path,
        train=train,
        test={"01_0001": smooth},
        frame_labels={"01_0001": [0, 1, 0]},
        train_layout="videos",
    )
    ds = read_shanghaitech(path=str(tmp_path))
    np.testing.assert_array_equal(ds.train[0].frames(), train["01_001"])  # lossless avi
    v = ds.test[0]
    assert v.frame_names[0] == "000.jpg" and v.masks() is None
    assert np.abs(v.frames().astype(int) - smooth).max() <= 8  # JPEG
    assert "no test_pixel_mask" in ds.conventions["pixel_masks"]


def test_construction_reads_no_frame_and_no_mask(sht, monkeypatch):
    root = sht[0]
    calls, loads = [], []
    real, real_load = common.read_frame_file, np.load
    monkeypatch.setattr(common, "read_frame_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(
        np, "load", lambda *a, **k: loads.append(k.get("mmap_mode")) or real_load(*a, **k)
    )
    ds = read_shanghaitech(path=str(root))
    assert calls == []
    assert set(loads) <= {None, "r"} and "r" in loads
    v = pickle.loads(pickle.dumps(ds.test[0]))  # memory map dropped, reopened on use
    np.testing.assert_array_equal(v.masks(1, 2)[0], sht[3]["01_0014"][1])
    assert [p.name for p in calls] == []
    v.frames(4, 5)
    assert [p.name for p in calls] == ["004.png"]


def test_missing_folders_named_with_layout(sht, tmp_path):
    root = sht[0]
    shutil.rmtree(root / "training" / "frames")
    with pytest.raises(DatasetError, match=r"training holds neither frames/ nor videos/"):
        read_shanghaitech(path=str(root))
    with pytest.raises(DatasetError, match=r"training/videos does not exist.*testing/frames"):
        read_shanghaitech(path=str(root), train_layout="videos")
    shutil.rmtree(root / "testing" / "test_frame_mask")
    (root / "training" / "frames" / "01_001").mkdir(parents=True)
    Image.fromarray(np.zeros((H, W), np.uint8)).save(root / "training/frames/01_001/000.png")
    with pytest.raises(DatasetError, match=r"test_frame_mask does not exist \(expected layout"):
        read_shanghaitech(path=str(root))


def test_frame_label_count_and_values(sht):
    root = sht[0]
    f = root / "testing" / "test_frame_mask" / "01_0014.npy"
    np.save(f, np.zeros(T + 1, np.uint8))
    with pytest.raises(DatasetError, match=r"01_0014\.npy holds 6 labels.*01_0014 holds 5 frames"):
        read_shanghaitech(path=str(root))
    np.save(f, np.array([0, 1, 2, 0, 0]))
    with pytest.raises(DatasetError, match=r"01_0014\.npy: frame 2 \(002\.png\) has label 2"):
        read_shanghaitech(path=str(root))
    f.unlink()
    with pytest.raises(DatasetError, match=r"01_0014 has no frame label file"):
        read_shanghaitech(path=str(root))


def test_pickled_labels_are_refused(sht):
    root = sht[0]
    np.save(root / "testing/test_frame_mask/01_0014.npy", np.array([[1], "x"], dtype=object))
    with pytest.raises(DatasetError, match=r"cannot read .*01_0014\.npy.*no pickled objects"):
        read_shanghaitech(path=str(root))


def test_pixel_mask_count_size_and_values(sht):
    root = sht[0]
    f = root / "testing" / "test_pixel_mask" / "01_0015.npy"
    np.save(f, np.zeros((3, H, W), np.uint8))
    with pytest.raises(DatasetError, match=r"01_0015\.npy holds 3 masks.*01_0015 holds 4 frames"):
        read_shanghaitech(path=str(root))
    np.save(f, np.zeros((4, H, W + 1), np.uint8))
    with pytest.raises(DatasetError, match=r"01_0015\.npy: masks are 24x33.*are 24x32"):
        read_shanghaitech(path=str(root))
    m = np.zeros((4, H, W), np.uint8)
    m[3, 0, 0] = 7
    np.save(f, m)
    v = read_shanghaitech(path=str(root)).test[1]  # values are checked when read
    v.masks(0, 3)
    with pytest.raises(DatasetError, match=r"01_0015\.npy: the mask of frame 3 is not binary"):
        v.masks()


def test_unknown_videos_in_label_folders(sht):
    root = sht[0]
    np.save(root / "testing/test_frame_mask/01_9999.npy", np.zeros(3, np.uint8))
    with pytest.raises(DatasetError, match=r"01_9999\.npy names video '01_9999'.*unknown video"):
        read_shanghaitech(path=str(root))


def test_empty_video_folder(sht):
    root = sht[0]
    for f in (root / "testing" / "frames" / "01_0015").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"01_0015 holds no frame file.*empty video"):
        read_shanghaitech(path=str(root))


def test_tracks_become_regions(sht, tmp_path):
    root, _, _, masks = sht
    tracks = tmp_path / "tracks"
    names = [f"{t:03d}.png" for t in range(T)]
    boxes = _boxes(masks["01_0014"], track=3)
    write_merl_tracks(tracks / "01_0014.txt", boxes, frame_names=names)
    ds = read_shanghaitech(path=str(root), tracks=str(tracks))
    np.testing.assert_array_equal(ds.test[0].regions, boxes)
    assert ds.test[1].regions.shape == (0, 6)  # normal throughout, no file needed
    assert "MERL" in ds.conventions["regions"]


def test_track_errors(sht, tmp_path):
    root = sht[0]
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    with pytest.raises(DatasetError, match=r"01_0014 has 3 anomalous frames but no track file"):
        read_shanghaitech(path=str(root), tracks=str(tracks))
    (tracks / "01_0014.txt").write_text("002.png 1 5 5 2 2\n009.png 1 5 5 2 2\n")
    with pytest.raises(
        DatasetError, match=r"01_0014\.txt, line 2: frame '009\.png' is not a frame"
    ):
        read_shanghaitech(path=str(root), tracks=str(tracks))
    (tracks / "01_0014.txt").write_text("000.png 4 5 5 2 2\n")
    with pytest.raises(DatasetError, match=r"track 4 has a region on frame 0 \(000\.png\).*normal"):
        read_shanghaitech(path=str(root), tracks=str(tracks))
    (tracks / "01_0014.txt").write_text("001.png 4 5 5 2 2\n")
    (tracks / "07_0001.txt").write_text("")
    with pytest.raises(DatasetError, match=r"07_0001\.txt names video '07_0001'"):
        read_shanghaitech(path=str(root), tracks=str(tracks))


def test_reasons_are_attached(sht, tmp_path):
    pytest.importorskip("xeval.data.video.xman")
    root = sht[0]
    f = tmp_path / "xman.json"
    f.write_text(
        json.dumps({"01_0014/1": [["action", "run / jog"]], "01_0014/2": [["object", "car"]]})
    )
    ds = read_shanghaitech(path=str(root), reasons=str(f))
    assert ds.test[0].reasons == {1: (("action", "run / jog"),), 2: (("object", "car"),)}
    assert ds.vocabulary is not None and ds.vocabulary.coarse == ("action", "object")
    f.write_text(json.dumps({"01_0014/0": [["action", "run / jog"]]}))  # frame 0 is normal
    with pytest.raises(DatasetError, match=r"frame 0 \(000\.png\).*labelled normal"):
        read_shanghaitech(path=str(root), reasons=str(f))
