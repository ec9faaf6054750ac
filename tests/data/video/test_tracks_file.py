"""Street Scene / MERL region-track files: reading, writing, errors naming file and line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xeval.data.video.tracks import read_merl_tracks, write_merl_tracks
from xeval.errors import DatasetError

NAMES = [f"{i:03d}.jpg" for i in range(1, 11)]  # frame i is NAMES[i]


def _write(tmp_path, text):
    p = tmp_path / "Test001.txt"
    p.write_text(text)
    return p


def test_hand_computed_boxes(tmp_path):
    p = _write(
        tmp_path,
        "# comment\n"
        "003.jpg 7 10 20 4 6\n"
        "\n"
        "Test001/001.jpg 2 5.5 6 3 2\n"
        "C:\\data\\Test001\\003.jpg,2,1,1,2,2\n",
    )
    r = read_merl_tracks(p, frame_names=NAMES)
    # sorted by frame then track; x1 = xc - w/2, y1 = yc - h/2, x2 = xc + w/2, y2 = yc + h/2
    expected = np.array(
        [
            [0, 2, 4.0, 5.0, 7.0, 7.0],
            [2, 2, 0.0, 0.0, 2.0, 2.0],
            [2, 7, 8.0, 17.0, 12.0, 23.0],
        ]
    )
    assert r.dtype == np.float64
    np.testing.assert_array_equal(r, expected)


def test_stem_match_and_empty_file(tmp_path):
    p = _write(tmp_path, "002.png 1 4 4 2 2\n")
    np.testing.assert_array_equal(read_merl_tracks(p, frame_names=NAMES)[:, 0], [1])
    assert read_merl_tracks(_write(tmp_path, "\n# none\n"), frame_names=NAMES).shape == (0, 6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("001.jpg 1 2 3 4\n", r"line 1: 5 fields"),
        ("001.jpg 1 2 3 4 5\n042.jpg 1 2 3 4 5\n", r"line 2: frame '042.jpg' is not a frame"),
        ("001.jpg one 2 3 4 5\n", r"line 1: track_id 'one' is not a number"),
        ("001.jpg 1.5 2 3 4 5\n", r"line 1: track_id '1.5' is not an integer"),
        ("001.jpg 1 2 y 4 5\n", r"line 1: y_center 'y' is not a number"),
        ("001.jpg 1 2 3 nan 5\n", r"line 1: width 'nan' is not finite"),
        ("\n001.jpg 1 2 3 -4 5\n", r"line 2: region of frame '001.jpg' has width -4"),
        ("001.jpg 1 2 3 4 0\n", r"line 1: .*height 0 \(expected both > 0\)"),
        ("001.jpg 1 2 3 4 5\n002.jpg 1 2 3 4 5\n001.jpg 1 9 9 1 1\n", r"lines 1 and 3: track 1"),
    ],
)
def test_errors_name_file_and_line(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(DatasetError, match=rf"track file .*Test001\.txt, {message}"):
        read_merl_tracks(p, frame_names=NAMES)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"track file .*nope\.txt does not exist"):
        read_merl_tracks(tmp_path / "nope.txt", frame_names=NAMES)


def test_write_refuses_bad_regions(tmp_path):
    with pytest.raises(DatasetError, match=r"points at frame 10\.0.*frames 0\.\.9"):
        write_merl_tracks(tmp_path / "t.txt", [[10, 1, 0, 0, 1, 1]], frame_names=NAMES)
    with pytest.raises(DatasetError, match=r"has no area"):
        write_merl_tracks(tmp_path / "t.txt", [[1, 1, 0, 0, 0, 1]], frame_names=NAMES)
    with pytest.raises(DatasetError, match=r"white space"):
        write_merl_tracks(tmp_path / "t.txt", [[0, 1, 0, 0, 1, 1]], frame_names=["a b.jpg"])


_box = st.tuples(
    st.integers(0, 9),
    st.integers(0, 50),
    st.integers(-40, 400),
    st.integers(-40, 400),
    st.integers(1, 60),
    st.integers(1, 60),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(_box, max_size=12, unique_by=lambda b: (b[0], b[1])), st.booleans())
def test_write_then_read_round_trip(tmp_path_factory, boxes, halves):
    # coordinates on a 1/2-pixel grid round-trip exactly through centre/size
    s = 0.5 if halves else 1.0
    rows = np.array(
        [[f, k, x * s, y * s, (x + w) * s, (y + h) * s] for f, k, x, y, w, h in boxes],
        dtype=np.float64,
    ).reshape(-1, 6)
    p = write_merl_tracks(tmp_path_factory.mktemp("t") / "v.txt", rows, frame_names=NAMES)
    back = read_merl_tracks(p, frame_names=NAMES)
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    np.testing.assert_array_equal(back, rows[order])


def test_round_trip_of_arbitrary_floats(tmp_path):
    rng = np.random.default_rng(0)
    x1, y1 = rng.uniform(0, 300, (2, 50))
    w, h = rng.uniform(0.1, 80, (2, 50))
    rows = np.c_[np.arange(50) % 10, np.arange(50) // 10, x1, y1, x1 + w, y1 + h]
    p = write_merl_tracks(tmp_path / "v.txt", rows, frame_names=NAMES)
    back = read_merl_tracks(p, frame_names=NAMES)
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    np.testing.assert_allclose(back, rows[order], rtol=0, atol=1e-12)
