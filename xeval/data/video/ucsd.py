"""Reader for UCSD Ped1 / Ped2 (Mahadevan et al., CVPR 2010).

Layout::

    <path>/Train/TrainNNN/*.tif          normal training videos, one file per frame
    <path>/Test/TestNNN/*.tif            test videos
    <path>/Test/TestNNN_gt/*.bmp         pixel masks (one per frame; only some videos)

Frames are the files of a folder in natural order (``001.tif`` is frame 0); file names
must carry consecutive frame numbers. A mask folder must hold one mask per frame with
the same frame numbers (``001.bmp`` is the mask of ``001.tif``); masks are 0/255 or 0/1
images of the frame's size.

Frame labels of a video with masks: a frame is anomalous when its mask has any anomalous
pixel. The masks are read once at load time to derive these labels (and checked: size,
binary values), then dropped: :meth:`Video.masks` rereads them on demand.

Test videos without a ``TestNNN_gt`` folder (Ped1 gives pixel masks for only some of
them): their frame labels come from ``frame_labels``, an interval file read by
:func:`xeval.data.video.intervals.load_intervals` (keys ``TestNNN``), which also takes
precedence over the masks for the videos it lists. A test video with neither is an
error by default (``missing_masks="error"``, the message says which option to give);
``missing_masks="drop"`` leaves it out with a warning naming it.

Video ids are the folder names (``Train001``, ``Test001``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from xeval.data.video._common import (
    FrameFileReader,
    MaskFileReader,
    attach_reasons_file,
    frame_number,
    interval_labels,
    list_frame_files,
    require_dir,
)
from xeval.data.video.base import Video, VideoDataset
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

__all__ = ["read_ucsd"]

_LAYOUT = "<path>/Train/TrainNNN/*.tif, <path>/Test/TestNNN/*.tif, <path>/Test/TestNNN_gt/*.bmp"


def _video_folders(folder: Path, prefix: str) -> list[Path]:
    pat = re.compile(rf"^{prefix}(\d+)$")
    found = [p for p in folder.iterdir() if p.is_dir() and pat.match(p.name)]
    return sorted(found, key=lambda p: int(pat.match(p.name).group(1)))


def _frames_video(folder: Path, *, normal: bool = True) -> Video:
    """A video of frame files; a training (``normal``) video is labelled normal
    throughout, a test video's labels are left unknown (None) for the caller."""
    files = list_frame_files(folder)
    reader = FrameFileReader(files, where=str(folder))
    return Video(
        video_id=folder.name,
        n_frames=len(files),
        frame_size=reader.size,
        read=reader,
        frame_names=[f.name for f in files],
        labels=np.zeros(len(files), dtype=bool) if normal else None,
        source=str(folder),
    )


def _attach_masks(video: Video, gt: Path) -> None:
    """Pair the mask files of ``gt`` with the video's frames (same count, same frame
    numbers) and derive the frame labels (any anomalous pixel)."""
    masks = list_frame_files(gt)
    if len(masks) != video.n_frames:
        raise DatasetError(
            f"mask folder {gt} holds {len(masks)} masks, but video folder {video.source} holds "
            f"{video.n_frames} frames (expected one mask per frame)"
        )
    for t, (m, f) in enumerate(zip(masks, video.frame_names, strict=True)):
        if frame_number(m.name) != frame_number(f):
            raise DatasetError(
                f"mask file {m} does not match frame {t} ({f}) of {video.source}: expected "
                f"the mask of frame number {frame_number(f)}"
            )
    reader = MaskFileReader(masks, size=video.frame_size, where=str(video.source))
    video.labels = np.array([reader.read_one(t).any() for t in range(video.n_frames)])
    video.read_masks = reader


@VIDEO_DATASETS.register(name="ucsd")
def read_ucsd(
    *,
    path: str,
    seed: int = 0,
    frame_labels: str | None = None,
    missing_masks: Literal["error", "drop"] = "error",
    reasons: str | None = None,
) -> VideoDataset:
    """Load UCSD Ped1 or Ped2 from ``path`` (the folder holding ``Train`` and ``Test``).

    Parameters
    ----------
    path:
        Dataset folder (e.g. ``UCSDped2``).
    seed:
        Unused (the reader is deterministic); accepted like every reader's.
    frame_labels:
        Interval annotation file (JSON, :mod:`xeval.data.video.intervals`) giving the
        frame labels of test videos by id (``TestNNN``); needed for test videos without a
        ``_gt`` folder, and preferred over masks for the videos it lists.
    missing_masks:
        What to do with a test video that has neither masks nor interval labels:
        ``"error"`` (default) or ``"drop"`` (left out, with a warning naming it).
    reasons:
        Optional X-MAN reason file (:mod:`xeval.data.video.xman`).

    Raises
    ------
    DatasetError
        Missing ``Train``/``Test`` folders or videos, empty videos, gaps in frame
        numbers, masks that do not pair with the frames (count, numbers), masks of
        another size than the frames or not binary, a ``_gt`` folder without its video.
    """
    root = Path(path)
    require_dir(root, expected=_LAYOUT)
    train_dir = require_dir(root / "Train", expected=_LAYOUT)
    test_dir = require_dir(root / "Test", expected=_LAYOUT)
    train_folders = _video_folders(train_dir, "Train")
    test_folders = _video_folders(test_dir, "Test")
    if not train_folders:
        raise DatasetError(f"folder {train_dir} holds no TrainNNN video folder ({_LAYOUT})")
    if not test_folders:
        raise DatasetError(f"folder {test_dir} holds no TestNNN video folder ({_LAYOUT})")
    names = {p.name for p in test_folders}
    for gt in test_dir.iterdir():
        if gt.is_dir() and gt.name.endswith("_gt") and gt.name[:-3] not in names:
            raise DatasetError(
                f"mask folder {gt} has no video folder {test_dir / gt.name[:-3]} ({_LAYOUT})"
            )

    train = [_frames_video(f) for f in train_folders]
    test = [_frames_video(f, normal=False) for f in test_folders]
    given: dict[str, np.ndarray] = {}
    if frame_labels is not None:
        given = interval_labels(
            frame_labels, {v.video_id: v.n_frames for v in test}, what="UCSD test"
        )
    kept = []
    for v in test:
        gt = test_dir / f"{v.video_id}_gt"
        if gt.is_dir():
            _attach_masks(v, gt)
        if v.video_id in given:
            v.labels = given[v.video_id]
        if v.labels is None:
            if missing_masks == "drop":
                warnings.warn(
                    f"UCSD: test video {v.video_id} has no {gt.name} folder and no interval "
                    "labels: left out (missing_masks='drop')",
                    stacklevel=2,
                )
                continue
            raise DatasetError(
                f"UCSD: test video {v.source} has no {gt.name} folder: give its frame labels "
                "with frame_labels=<interval JSON file>, or drop such videos with "
                "missing_masks='drop'"
            )
        kept.append(v)
    conventions = {
        "layout": "UCSD Ped1/Ped2: " + _LAYOUT,
        "frames": "frame i = i-th frame file in natural order (001.tif is frame 0)",
        "frame_labels": "anomalous = any anomalous pixel in Test/TestNNN_gt"
        + (f"; interval file {frame_labels} where it lists the video" if frame_labels else ""),
        "pixel_masks": "Test/TestNNN_gt/*.bmp paired by frame number (none for videos without)",
        "missing_masks": missing_masks,
    }
    ds = VideoDataset(name="ucsd", root=root, train=train, test=kept, conventions=conventions)
    if reasons is not None:
        ds = attach_reasons_file(ds, reasons)
    ds.validate()
    return ds
