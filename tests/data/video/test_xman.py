"""X-MAN reason labels: fixtures in each key format written to tmp_path, frame numbers
resolved against the frame file names (UCSD 001-based, ShanghaiTech 000-based), the
vocabulary read from the file, and every malformed-file case an error naming the file,
the key and the frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xeval.data.video.base import ReasonVocabulary, Video, VideoDataset
from xeval.data.video.xman import (
    KEY_FORMATS,
    XmanLabels,
    attach_reasons,
    frame_number,
    load_xman,
)
from xeval.errors import DatasetError

RUN = ["action", "run / jog"]
BIKE = ["object", "bicycle"]
LAWN = ["location", "lawn"]


def video(vid, names, anomalous=(), *, labels=True):
    n = len(names)
    lab = np.zeros(n, bool)
    lab[list(anomalous)] = True

    def read(a, b):
        return np.zeros((b - a, 4, 4, 1), np.uint8)

    return Video(
        video_id=vid,
        n_frames=n,
        frame_size=(4, 4),
        read=read,
        frame_names=list(names),
        labels=lab if labels else None,
        source=f"/data/{vid}",
    )


def ucsd():
    """Frames named 001.tif..010.tif (001 = frame 0); frames 3..7 anomalous."""
    names = [f"{i:03d}.tif" for i in range(1, 11)]
    test = [video("Test004", names, range(3, 8)), video("Test005", names, [0])]
    train = [video("Train001", names)]
    return VideoDataset("ucsd_ped2", None, train, test, conventions={"frames": "0-based"})


def shanghaitech():
    """Frames named 000.jpg..011.jpg (000 = frame 0)."""
    names = [f"{i:03d}.jpg" for i in range(12)]
    return VideoDataset(
        "shanghaitech", None, [], [video("01_0014", names, range(5, 12)), video("02_0001", names)]
    )


def write(tmp_path, obj, name="xman.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


# ------------------------------------------------------------------ key formats
@pytest.mark.parametrize(
    "keys, fmt",
    [
        (["Test004/004", "Test004/005", "Test005/001"], "<video>/<frame>"),
        (["Test004/004.tif", "Test004/005.tif", "Test005/001.tif"], "<video>/<frame>.<ext>"),
        (["Test004_004", "Test004_5", "Test005_1"], "<video>_<frame>"),
    ],
)
def test_each_key_format_is_detected_and_resolved_against_file_names(tmp_path, keys, fmt):
    p = write(tmp_path, {keys[0]: [RUN], keys[1]: [RUN, BIKE], keys[2]: [LAWN]})
    lab = load_xman(p)
    assert isinstance(lab, XmanLabels) and lab.key_format == fmt and fmt in KEY_FORMATS
    assert lab.path == p
    assert lab.entries == {
        ("Test004", 4): (tuple(RUN),),
        ("Test004", 5): (tuple(RUN), tuple(BIKE)),
        ("Test005", 1): (tuple(LAWN),),
    }
    # the vocabulary comes from the file, sorted
    assert lab.vocabulary == ReasonVocabulary(
        (("action", "run / jog"), ("location", "lawn"), ("object", "bicycle"))
    )
    ds = ucsd()
    out = attach_reasons(ds, lab)
    # UCSD 004.tif is frame index 3, 001.tif frame 0
    assert out.test[0].reasons == {3: (tuple(RUN),), 4: (tuple(RUN), tuple(BIKE))}
    assert out.test[1].reasons == {0: (tuple(LAWN),)}
    assert out.vocabulary == lab.vocabulary
    assert fmt in out.conventions["reason_labels"]
    assert "3 frames with reasons of 6 anomalous test frames" in out.conventions["reason_labels"]
    assert out.conventions["frames"] == "0-based"
    out.validate()
    # the input is left as it was
    assert (
        ds.test[0].reasons is None
        and ds.vocabulary is None
        and "reason_labels" not in (ds.conventions)
    )


def test_shanghaitech_numbers_start_at_zero(tmp_path):
    p = write(tmp_path, {"01_0014_005": [RUN], "01_0014_011": [BIKE]})
    lab = load_xman(p)
    assert lab.key_format == "<video>_<frame>"
    assert lab.videos == ["01_0014"]
    out = attach_reasons(shanghaitech(), lab)
    assert out.test[0].reasons == {5: (tuple(RUN),), 11: (tuple(BIKE),)}
    assert out.test[1].reasons == {}  # a test video without labelled frames


def test_slash_keys_with_underscored_video_names(tmp_path):
    lab = load_xman(write(tmp_path, {"01_0014/120": [RUN], "01_0014/0121": [RUN]}))
    assert lab.key_format == "<video>/<frame>"
    assert set(lab.entries) == {("01_0014", 120), ("01_0014", 121)}
    assert lab.keys[("01_0014", 121)] == "01_0014/0121"


def test_extension_is_recorded(tmp_path):
    lab = load_xman(write(tmp_path, {"Test004/083.tif": [RUN]}))
    assert lab.extension == "tif"
    out = attach_reasons(
        VideoDataset(
            "d", None, [], [video("Test004", [f"{i:03d}.tif" for i in range(1, 90)], [82])]
        ),
        lab,
    )
    assert out.test[0].reasons == {82: (tuple(RUN),)}
    assert "(tif)" in out.conventions["reason_labels"]


def test_frames_of_a_container_resolve_to_their_number(tmp_path):
    v = video("05", [str(t) for t in range(6)], [2])
    v.frame_names = []  # no names: frame t is called "t"
    lab = load_xman(write(tmp_path, {"05/2": [RUN]}))
    out = attach_reasons(VideoDataset("avenue", None, [], [v]), lab)
    assert out.test[0].reasons == {2: (tuple(RUN),)}


def test_videos_without_frame_labels_are_not_checked_for_normal_frames(tmp_path):
    v = video("Test004", [f"{i:03d}.tif" for i in range(1, 5)], labels=False)
    out = attach_reasons(
        VideoDataset("d", None, [], [v]), load_xman(write(tmp_path, {"Test004/2": [RUN]}))
    )
    assert out.test[0].reasons == {1: (tuple(RUN),)}


@pytest.mark.parametrize(
    "name, number",
    [("083.tif", 83), ("img_0007.jpg", 7), ("12", 12), ("frame.png", None), ("a1b22.bmp", 22)],
)
def test_frame_number(name, number):
    assert frame_number(name) == number


# ------------------------------------------------------------------ file errors
@pytest.mark.parametrize(
    "content, match",
    [
        ('[["a", "b"]]', "top level is a JSON list"),
        ("{}", "holds no labelled frame"),
        ('{"Test004/004": [["action", "run"]],', "not valid JSON"),
        ('{"Test004/004": [["a", "b"]], "Test004/004": [["a", "c"]]}', "appears twice"),
        ({"Test004/004": [RUN], "Test004_005": [RUN]}, "keys mix formats"),
        ({"Test004/004": [RUN], "Test004/005.tif": [RUN]}, "keys mix formats"),
        ({"Test004/004.tif": [RUN], "Test004/005.jpg": [RUN]}, "mix frame extensions"),
        ({"Test004": [RUN]}, "key 'Test004' is in none of the formats"),
        ({"Test004/4a": [RUN]}, "none of the formats"),
        ({"Test004/004": "action"}, "holds str"),
        ({"Test004/004": {"action": "run"}}, "holds dict"),
        ({"Test004/004": []}, "empty reason list"),
        ({"Test004/004": [["action"]]}, r"holds the reason \['action'\]"),
        ({"Test004/004": [["action", "run", "x"]]}, "holds the reason"),
        ({"Test004/004": [["action", 3]]}, "holds the reason"),
        ({"Test004/004": [["action", " "]]}, "holds the reason"),
        ({"Test004/004": ["action"]}, "holds the reason 'action'"),
        ({"Test004/004": [RUN, RUN]}, "lists the reason .* twice"),
        (
            {"01_0014/7": [RUN], "01_0014/007": [RUN]},
            "'01_0014/7' and '01_0014/007' both name frame 7",
        ),
        ({"Test004/" + "1" * 20: [RUN]}, "frame number of 20 digits"),
    ],
)
def test_malformed_files_are_errors_naming_the_file_and_key(tmp_path, content, match):
    p = write(tmp_path, content)
    with pytest.raises(DatasetError, match=match) as e:
        load_xman(p)
    assert str(p) in str(e.value)


def test_not_utf8_missing_and_oversized_files(tmp_path):
    p = tmp_path / "bad.json"
    p.write_bytes(b'{"a/1": [["\xff", "b"]]}')
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_xman(p)
    with pytest.raises(DatasetError, match="cannot be read"):
        load_xman(tmp_path / "missing.json")
    big = write(tmp_path, {"Test004/004": [RUN] * 50})
    with pytest.raises(DatasetError, match="larger than 100 bytes"):
        load_xman(big, max_bytes=100)
    deep = write(tmp_path, "[" * 100_000 + "]" * 100_000, "deep.json")
    with pytest.raises(DatasetError, match=str(deep)):
        load_xman(deep)


# ------------------------------------------------------------- dataset errors
@pytest.mark.parametrize(
    "content, match",
    [
        (
            {"Test009/004": [RUN]},
            r"key 'Test009/004' names video 'Test009', which is unknown; "
            r"the test videos of 'ucsd_ped2' are \['Test004', 'Test005'\]",
        ),
        ({"Train001/004": [RUN]}, "which is a training video"),
        (
            {"Test004/011": [RUN]},
            r"key 'Test004/011': video 'Test004' \(/data/Test004\) has no "
            r"frame numbered 11 \(its 10 frame files are numbered 1..10\)",
        ),
        ({"Test004/000": [RUN]}, "no frame numbered 0"),  # UCSD has no 000.tif
        (
            {"Test004/002": [RUN]},
            r"key 'Test004/002': frame 1 \(002.tif\) of video 'Test004' is "
            "labelled normal",
        ),
    ],
)
def test_labels_that_disagree_with_the_dataset(tmp_path, content, match):
    p = write(tmp_path, content)
    with pytest.raises(DatasetError, match=match) as e:
        attach_reasons(ucsd(), load_xman(p))
    assert str(p) in str(e.value)


def test_a_frame_number_carried_by_two_frames_is_ambiguous(tmp_path):
    v = video("v", ["a_001.png", "b_001.png", "a_002.png"], [0, 1, 2])
    with pytest.raises(DatasetError, match=r"frame number 1 is carried by several frames"):
        attach_reasons(VideoDataset("d", None, [], [v]), load_xman(write(tmp_path, {"v/1": [RUN]})))
    out = attach_reasons(
        VideoDataset("d", None, [], [v]), load_xman(write(tmp_path, {"v/2": [RUN]}))
    )
    assert out.test[0].reasons == {2: (tuple(RUN),)}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "Test004/004",
        "Test004/4",
        "Test004/004.tif",
        "Test004_004",
        "Test005/1",
        "Test004/099",
        "Test004/002",
        "x",
        "Test004/",
    ]
) | st.text(max_size=10)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        keys,
        st.lists(
            st.lists(st.sampled_from(["action", "run", "", 1]), min_size=1, max_size=3), max_size=3
        )
        | json_values,
        max_size=4,
    )
)
def test_any_json_gives_labels_or_a_dataset_error(tmp_path, data):
    p = write(tmp_path, data, "fuzz.json")
    try:
        out = attach_reasons(ucsd(), load_xman(p))
    except DatasetError as e:
        assert str(p) in str(e)
        return
    out.validate()
    for v in out.test:
        for t, rs in v.reasons.items():
            assert v.labels[t] and rs and all(r in out.vocabulary.fine for r in rs)
