"""Shared video reader helpers: natural sort, frame numbers, lazy container decoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xeval.data.video._common as common
from xeval.data.video._common import frame_number, natural_sorted
from xeval.errors import DatasetError


@given(st.lists(st.integers(0, 10**6), unique=True, max_size=30), st.sampled_from(["", "frame_"]))
def test_natural_sort_orders_by_number(nums, prefix):
    names = [f"{prefix}{n}.jpg" for n in nums]
    assert natural_sorted(names) == [f"{prefix}{n}.jpg" for n in sorted(nums)]
    assert [frame_number(n) for n in natural_sorted(names)] == sorted(nums)


def test_frame_number_cases():
    assert frame_number("001.tif") == 1
    assert frame_number("frame_0042.jpg") == 42
    assert frame_number("img10_v2.png") == 2
    assert frame_number("cover.jpg") is None


def test_frame_file_without_number(tmp_path):
    from PIL import Image

    for name in ("001.png", "cover.png"):
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / name)
    with pytest.raises(DatasetError, match=r"cover\.png has no frame number"):
        common.list_frame_files(tmp_path)
    (tmp_path / "cover.png").rename(tmp_path / "1.png")
    with pytest.raises(
        DatasetError, match=r"1\.png and 001\.png .* same frame number 1|001\.png and 1\.png"
    ):
        common.list_frame_files(tmp_path)


def test_interleaved_reads_of_more_videos_than_stay_open(tmp_path):
    pytest.importorskip("av")
    from xeval.data.video.writers import tiny_frames, write_video_file

    vids = []
    for k in range(common._MAX_OPEN + 2):
        fr = tiny_frames(4, channels=3, seed=k)
        p = write_video_file(tmp_path / f"{k}.avi", fr)
        n, size = common.video_info(p)
        assert (n, size) == (4, (24, 32))
        vids.append((common.ContainerReader(p, n_frames=n, size=size, where=str(p)), fr))
    for t in range(4):
        for reader, fr in vids:
            np.testing.assert_array_equal(reader(t, t + 1)[0], fr[t])
    assert len(common._OPEN) <= common._MAX_OPEN
    reader, fr = vids[0]
    assert reader(2, 2).shape == (0, 24, 32, 3)
    with pytest.raises(
        DatasetError, match=r"frame range \[3, 5\) is outside the video's frames 0\.\.3"
    ):
        reader(3, 5)
    for r, _ in vids:
        r.close()
