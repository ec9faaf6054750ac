"""Interval annotations: inclusive ends and overlapping classes against a brute-force
reading, every malformed case an error naming the file and video, lengths checked
against a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xeval.data.video.base import Video, VideoDataset
from xeval.data.video.intervals import IntervalLabels, check_lengths, load_intervals
from xeval.errors import DatasetError


def write(tmp_path, obj, name="intervals.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return p


def test_inclusive_ends_and_overlapping_classes_by_hand(tmp_path):
    p = write(
        tmp_path,
        {
            "v1": {
                "anomalies": [{"fight": [[1, 3], [2, 4]]}, {"run": [[4, 5]], "fall": [[7, 7]]}],
                "length": 9,
            },
            "v2": {"anomalies": [], "length": 3},
        },
    )
    out = load_intervals(p)
    assert list(out) == ["v1", "v2"]
    v1 = out["v1"]
    assert isinstance(v1, IntervalLabels) and v1.length == 9 and v1.source == str(p)
    assert v1.labels.tolist() == [0, 1, 1, 1, 1, 1, 0, 1, 0]
    assert v1.classes == (
        (),
        ("fight",),
        ("fight",),
        ("fight",),
        ("fight", "run"),
        ("run",),
        (),
        ("fall",),
        (),
    )
    assert v1.intervals == (("fight", 1, 3), ("fight", 2, 4), ("run", 4, 5), ("fall", 7, 7))
    assert out["v2"].labels.tolist() == [False] * 3 and out["v2"].classes == ((),) * 3


intervals_st = st.integers(1, 30).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.dictionaries(
                st.sampled_from(["a", "b", "c"]),
                st.lists(
                    st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).map(sorted),
                    max_size=3,
                ),
                max_size=3,
            ),
            max_size=3,
        ),
    )
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(intervals_st)
def test_labels_and_classes_equal_a_frame_by_frame_reading(tmp_path, case):
    n, anomalies = case
    p = write(tmp_path, {"v": {"anomalies": anomalies, "length": n}})
    got = load_intervals(p)["v"]
    for t in range(n):
        cls = sorted(
            {c for g in anomalies for c, spans in g.items() for s, e in spans if s <= t <= e}
        )
        assert got.classes[t] == tuple(cls)
        assert got.labels[t] == bool(cls)


@pytest.mark.parametrize(
    "content, match",
    [
        ("[1, 2]", "top level is a JSON list"),
        ("{}", "holds no video"),
        ('{"v": ', "not valid JSON"),
        ({"v": [1, 2]}, "video 'v' holds a JSON list"),
        ({"v": {"length": 5}}, r"video 'v' lacks \['anomalies'\]"),
        ({"v": {"anomalies": [], "length": 5, "fps": 25}}, r"has unknown keys \['fps'\]"),
        ({"v": {"anomalies": [], "lenght": 5}}, "lacks .*'length'.* and has unknown keys"),
        ({"v": {"anomalies": [], "length": 5.0}}, "length is 5.0; expected a positive integer"),
        ({"v": {"anomalies": [], "length": "5"}}, "length is '5'"),
        ({"v": {"anomalies": [], "length": True}}, "length is True"),
        ({"v": {"anomalies": [], "length": 0}}, "length is 0"),
        ({"v": {"anomalies": {"a": [[1, 2]]}, "length": 5}}, "anomalies is a JSON dict"),
        ({"v": {"anomalies": [[1, 2]], "length": 5}}, r"anomalies\[0\] is \[1, 2\]"),
        ({"v": {"anomalies": [{"": [[1, 2]]}], "length": 5}}, "empty class name"),
        ({"v": {"anomalies": [{"a": [1, 2]}], "length": 5}}, "has the interval 1"),
        ({"v": {"anomalies": [{"a": "1-2"}], "length": 5}}, "class 'a' holds '1-2'"),
        ({"v": {"anomalies": [{"a": [[1, 2, 3]]}], "length": 5}}, r"interval \[1, 2, 3\]"),
        ({"v": {"anomalies": [{"a": [[1.0, 2]]}], "length": 5}}, r"interval \[1.0, 2\]"),
        ({"v": {"anomalies": [{"a": [[1, 2.5]]}], "length": 5}}, "integer frame indices"),
        ({"v": {"anomalies": [{"a": [[False, 2]]}], "length": 5}}, "integer frame indices"),
        ({"v": {"anomalies": [{"a": [[-1, 2]]}], "length": 5}}, "starts at a negative frame"),
        ({"v": {"anomalies": [{"a": [[3, 2]]}], "length": 5}}, r"\[3, 2\] starts after it ends"),
        (
            {"v": {"anomalies": [{"a": [[3, 5]]}], "length": 5}},
            r"class 'a' interval \[3, 5\] ends at frame 5, but the video has 5 frames "
            r"\(0..4; end is inclusive\)",
        ),
        ({"v": {"anomalies": [{"a": [[3, 10**30]]}], "length": 5}}, "ends at frame"),
    ],
)
def test_malformed_annotations_are_errors_naming_file_and_video(tmp_path, content, match):
    p = write(tmp_path, content)
    with pytest.raises(DatasetError, match=match) as e:
        load_intervals(p)
    assert str(p) in str(e.value)


def test_size_cap_and_repeated_keys(tmp_path):
    p = write(tmp_path, {"v": {"anomalies": [], "length": 5}})
    with pytest.raises(DatasetError, match="larger than 10 bytes"):
        load_intervals(p, max_bytes=10)
    q = write(
        tmp_path,
        '{"v": {"anomalies": [], "length": 5}, "v": {"anomalies": [], "length": 6}}',
        "dup.json",
    )
    with pytest.raises(DatasetError, match="key 'v' appears twice"):
        load_intervals(q)


def _video(vid, n):
    return Video(
        video_id=vid,
        n_frames=n,
        frame_size=(2, 2),
        read=lambda a, b: np.zeros((b - a, 2, 2, 1), np.uint8),
        source=f"/data/{vid}.avi",
    )


def test_check_lengths(tmp_path):
    ds = VideoDataset("ubnormal", None, [_video("train_1", 4)], [_video("v", 5), _video("w", 7)])
    p = write(
        tmp_path,
        {"v": {"anomalies": [{"a": [[0, 4]]}], "length": 5}, "w": {"anomalies": [], "length": 7}},
    )
    check_lengths(load_intervals(p), ds)  # agrees: no error
    q = write(tmp_path, {"w": {"anomalies": [], "length": 8}}, "long.json")
    with pytest.raises(
        DatasetError,
        match=r"long.json: video 'w' has length 8 in the annotations but 7 frames in the "
        r"dataset \(/data/w.avi\)",
    ):
        check_lengths(load_intervals(q), ds)
    r = write(tmp_path, {"x": {"anomalies": [], "length": 8}}, "other.json")
    with pytest.raises(DatasetError, match=r"other.json: video 'x' is not a video of 'ubnormal'"):
        check_lengths(load_intervals(r), ds)
