"""UBnormal reader on tiny fixtures (PyAV .mp4 files, per-frame id masks, tracks files)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

import xeval.data.video._common as common  # noqa: E402
from xeval.data.video.ubnormal import read_ubnormal  # noqa: E402
from xeval.data.video.writers import tiny_frames, write_ubnormal  # noqa: E402
from xeval.errors import DatasetError  # noqa: E402
from xeval.registry import VIDEO_DATASETS  # noqa: E402

T, H, W = 6, 24, 32
AB, NO, TR = "abnormal_scene_1_scenario_1", "normal_scene_1_scenario_2", "normal_scene_1_scenario_3"


def _ids():
    ids = np.zeros((T, H, W), np.uint8)
    ids[1:4, 2:5, 3:9] = 2  # object 2 in frames 1..3
    ids[3, 10:12, 20:21] = 2  # ... split in two pieces in frame 3
    ids[3:5, 15:20, 25:30] = 5  # object 5 in frames 3..4
    return ids


@pytest.fixture
def ub(tmp_path):
    frames = {AB: tiny_frames(T, channels=3, seed=1), NO: tiny_frames(4, channels=3, seed=2)}
    frames[TR] = tiny_frames(3, channels=3, seed=3)
    root = write_ubnormal(tmp_path / "UBnormal", videos=frames, id_masks={AB: _ids()})
    return root, frames


def _hand_boxes():
    # (frame, track, x1, y1, x2, y2): all pixels of the id, x2 = last column + 1
    return np.array(
        [
            [1, 2, 3, 2, 9, 5],
            [2, 2, 3, 2, 9, 5],
            [3, 2, 3, 2, 21, 12],
            [3, 5, 25, 15, 30, 20],
            [4, 5, 25, 15, 30, 20],
        ],
        dtype=np.float64,
    )


def test_reads_layout_exactly(ub):
    root, frames = ub
    assert VIDEO_DATASETS._entries["ubnormal"] is read_ubnormal
    tracks = (root / "Scene1" / f"{AB}_annotations" / f"{AB}_tracks.txt").read_text()
    assert tracks == "2,1,3\n5,3,4\n"  # object_id, start_frame, end_frame (inclusive)
    ds = read_ubnormal(path=str(root), train_videos=[TR])
    assert [v.video_id for v in ds.train] == [TR]
    assert [v.video_id for v in ds.test] == [AB, NO]
    v = ds.test[0]
    np.testing.assert_array_equal(v.frames(), frames[AB])  # lossless x264 RGB
    np.testing.assert_array_equal(v.labels, [False, True, True, True, True, False])
    np.testing.assert_array_equal(v.masks(), _ids() > 0)
    np.testing.assert_array_equal(v.regions, _hand_boxes())
    n = ds.test[1]
    assert not n.labels.any() and n.regions.shape == (0, 6)
    np.testing.assert_array_equal(n.masks(), np.zeros((4, H, W), bool))
    assert ds.train[0].masks() is None and not ds.train[0].labels.any()
    assert "inclusive" in ds.conventions["frame_labels"]


def test_video_list_from_file_and_errors(ub, tmp_path):
    root = ub[0]
    f = tmp_path / "test_names.txt"
    f.write_text(f"{NO}\n\n")
    ds = read_ubnormal(path=str(root), videos=str(f))
    assert [v.video_id for v in ds.test] == [NO] and ds.train == []
    with pytest.raises(DatasetError, match=r"video 'abnormal_scene_9' is not in"):
        read_ubnormal(path=str(root), videos=["abnormal_scene_9"])
    with pytest.raises(DatasetError, match=rf"training video .*{AB}\.mp4 has annotations"):
        read_ubnormal(path=str(root), train_videos=[AB])
    with pytest.raises(DatasetError, match=r"holds no Scene<k> folder"):
        read_ubnormal(path=str(tmp_path))
    with pytest.raises(DatasetError, match=r"nope does not exist.*Scene<k>/<video>\.mp4"):
        read_ubnormal(path=str(tmp_path / "nope"))


def test_construction_is_lazy(ub, monkeypatch):
    root = ub[0]
    decoded, masks = [], []
    real_dec, real_ids = common.decode_frames, common.read_id_mask
    monkeypatch.setattr(common, "decode_frames", lambda c, s: decoded.append(1) or real_dec(c, s))
    import xeval.data.video.ubnormal as ubn

    monkeypatch.setattr(
        ubn, "read_id_mask", lambda p, **k: masks.append(p.name) or real_ids(p, **k)
    )
    ds = read_ubnormal(path=str(root), regions=False)
    assert decoded == [] and masks == [] and ds.test[0].regions is None
    read_ubnormal(path=str(root))  # regions: the masks of frames in tracks only
    assert decoded == [] and sorted(set(masks)) == [f"{AB}_{t:04d}_gt.png" for t in (1, 2, 3, 4)]


def _tracks(root, text):
    (root / "Scene1" / f"{AB}_annotations" / f"{AB}_tracks.txt").write_text(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2,1,3\n5,3,9\n", r"line 2: object 5 ends at frame 9, but the video has 6 frames"),
        ("2,1\n", r"line 1: 2 fields"),
        ("2,x,3\n", r"line 1: start_frame 'x' is not a number"),
        ("2,3,1\n", r"line 1: frames 3\.\.1 are not a range"),
        ("0,1,3\n", r"line 1: object_id 0"),
    ],
)
def test_bad_tracks_lines(ub, text, message):
    root = ub[0]
    _tracks(root, text)
    with pytest.raises(DatasetError, match=rf"tracks file .*_tracks\.txt, {message}"):
        read_ubnormal(path=str(root))


def test_track_on_frame_without_the_object(ub):
    root = ub[0]
    _tracks(root, "2,0,3\n")
    with pytest.raises(DatasetError, match=r"_0000_gt\.png \(frame 0\) holds no pixel of object 2"):
        read_ubnormal(path=str(root))


def test_mask_files_missing_or_out_of_range_or_resized(ub):
    root = ub[0]
    ann = root / "Scene1" / f"{AB}_annotations"
    (ann / f"{AB}_0005_gt.png").unlink()  # outside every track: an all-normal frame
    (ann / f"{AB}_0002_gt.png").unlink()  # inside a track
    with pytest.raises(DatasetError, match=r"mask file .*_0002_gt\.png of frame 2 is missing"):
        read_ubnormal(path=str(root))
    v = read_ubnormal(path=str(root), regions=False).test[0]
    assert not v.masks(5, 6).any()
    Image.fromarray(np.zeros((H, W), np.uint8)).save(ann / f"{AB}_0002_gt.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(ann / f"{AB}_0006_gt.png")
    with pytest.raises(DatasetError, match=r"_0006_gt\.png names frame 6, but video .* has 6"):
        read_ubnormal(path=str(root), regions=False)
    (ann / f"{AB}_0006_gt.png").unlink()
    Image.fromarray(np.zeros((H + 2, W), np.uint8)).save(ann / f"{AB}_0004_gt.png")
    v = read_ubnormal(path=str(root), regions=False).test[0]
    with pytest.raises(DatasetError, match=r"id mask .*_0004_gt\.png \(frame 4\) is 26x32"):
        v.masks()


def test_new_tracks_file_takes_precedence_and_missing_tracks(ub):
    root = ub[0]
    ann = root / "Scene1" / f"{AB}_annotations"
    (ann / f"{AB}_new_tracks.txt").write_text("5,3,4\n")
    ds = read_ubnormal(path=str(root))
    np.testing.assert_array_equal(ds.test[0].labels, [0, 0, 0, 1, 1, 0])
    assert AB in ds.conventions["tracks_files"]
    (ann / f"{AB}_new_tracks.txt").unlink()
    (ann / f"{AB}_tracks.txt").unlink()
    with pytest.raises(DatasetError, match=r"has no tracks file .*_tracks\.txt"):
        read_ubnormal(path=str(root))
