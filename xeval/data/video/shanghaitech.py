"""Reader for ShanghaiTech Campus (Luo, Liu and Gao, ICCV 2017), also the layout of the
built-in synthetic video benchmark (:mod:`xeval.data.video.synthetic`).

Layout::

    <path>/training/videos/SS_VVV.avi          training videos, or
    <path>/training/frames/SS_VVV/*.jpg        training videos as frame folders
    <path>/testing/frames/SS_VVVV/*.jpg        test videos (.jpg, .png, .tif... frames)
    <path>/testing/test_frame_mask/SS_VVVV.npy    (T,) 0/1 frame labels
    <path>/testing/test_pixel_mask/SS_VVVV.npy    (T, H, W) 0/1 pixel masks (optional)

Frames of a folder are its files in natural order (``000.jpg`` is frame 0; names carry
consecutive numbers); training containers are decoded with PyAV. Frame labels are read
from ``test_frame_mask`` (not derived from the pixel masks, as the dataset's own
evaluation does); pixel masks are memory-mapped (``mmap_mode="r"``,
``allow_pickle=False``) and read per frame on demand: their shape is checked at load
time, their values (0/1) when read. Without a ``test_pixel_mask`` folder, test videos
have no masks.

Options used by the synthetic benchmark: ``tracks``, a folder of MERL region-track
files, one ``<video_id>.txt`` per test video (:func:`xeval.data.video.tracks.
read_merl_tracks`) -> :attr:`Video.regions`; a video without a file has no region,
which is an error when it has anomalous frames; a region on a frame labelled normal is
an error naming the file and the frame. ``reasons``, an X-MAN label file
(:mod:`xeval.data.video.xman`).

Video ids are the folder (or file) names: ``01_001`` (train), ``01_0014`` (test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from xeval.data.video._common import (
    ContainerReader,
    FrameFileReader,
    attach_reasons_file,
    check_mask_array,
    check_range,
    list_frame_files,
    list_videos,
    natural_sorted,
    require_dir,
    video_info,
)
from xeval.data.video.base import Video, VideoDataset
from xeval.data.video.tracks import read_merl_tracks
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

__all__ = ["read_shanghaitech"]

_LAYOUT = (
    "<path>/training/frames/SS_VVV/*.jpg (or <path>/training/videos/SS_VVV.avi), "
    "<path>/testing/frames/SS_VVVV/*.jpg, <path>/testing/test_frame_mask/SS_VVVV.npy, "
    "<path>/testing/test_pixel_mask/SS_VVVV.npy"
)


def _load_npy(path: Path, *, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(
            f"cannot read {path}: {type(exc).__name__}: {exc} (expected a .npy array of "
            "numbers, no pickled objects)"
        ) from exc


class _NpyMasks:
    """``read_masks(start, stop)`` from a memory-mapped ``(T, H, W)`` 0/1 ``.npy`` file
    (opened on first use; pickling drops the map)."""

    def __init__(self, path: Path, *, n_frames: int, size: tuple[int, int]) -> None:
        self.path, self.n_frames, self.size = Path(path), n_frames, tuple(size)
        self._map = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, self.n_frames, str(self.path))
        if self._map is None:
            self._map = _load_npy(self.path, mmap=True)
        out = np.zeros((e - s, *self.size), dtype=bool)
        for i, t in enumerate(range(s, e)):
            out[i] = check_mask_array(self._map[t], size=self.size, where=str(self.path), t=t)
        return out


def _folder_video(folder: Path, *, normal: bool) -> Video:
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


def _container_video(file: Path) -> Video:
    n, size = video_info(file)
    return Video(
        video_id=file.stem,
        n_frames=n,
        frame_size=size,
        read=ContainerReader(file, n_frames=n, size=size, where=str(file)),
        frame_names=[str(t) for t in range(n)],
        labels=np.zeros(n, dtype=bool),
        source=str(file),
    )


def _subfolders(folder: Path) -> list[Path]:
    return natural_sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_known(folder: Path, suffix: str, known: set[str], what: str) -> None:
    for f in natural_sorted(folder.iterdir()):
        if f.suffix.lower() == suffix and f.stem not in known and not f.name.startswith("."):
            raise DatasetError(
                f"{what} file {f} names video {f.stem!r}, which has no frame folder in "
                f"the test set (unknown video)"
            )


def _frame_labels(file: Path, video: Video) -> np.ndarray:
    if not file.is_file():
        raise DatasetError(f"test video {video.source} has no frame label file {file} ({_LAYOUT})")
    lab = _load_npy(file)
    if lab.ndim != 1:
        raise DatasetError(f"frame label file {file} has shape {lab.shape} (expected (T,))")
    if lab.shape[0] != video.n_frames:
        raise DatasetError(
            f"frame label file {file} holds {lab.shape[0]} labels, but video folder "
            f"{video.source} holds {video.n_frames} frames"
        )
    if lab.dtype != bool:
        if lab.dtype.kind not in "iuf":
            raise DatasetError(f"frame label file {file} holds values of type {lab.dtype}")
        bad = np.flatnonzero((lab != 0) & (lab != 1))
        if bad.size:
            t = int(bad[0])
            raise DatasetError(
                f"frame label file {file}: frame {t} ({video.frame_name(t)}) has label "
                f"{lab[t].item()!r} (expected 0 or 1)"
            )
    return lab.astype(bool)


def _pixel_masks(file: Path, video: Video) -> _NpyMasks:
    if not file.is_file():
        raise DatasetError(f"test video {video.source} has no pixel mask file {file} ({_LAYOUT})")
    m = _load_npy(file, mmap=True)
    h, w = video.frame_size
    if m.ndim != 3:
        raise DatasetError(f"pixel mask file {file} has shape {m.shape} (expected (T, H, W))")
    if m.shape[0] != video.n_frames:
        raise DatasetError(
            f"pixel mask file {file} holds {m.shape[0]} masks, but video folder "
            f"{video.source} holds {video.n_frames} frames"
        )
    if m.shape[1:] != (h, w):
        raise DatasetError(
            f"pixel mask file {file}: masks are {m.shape[1]}x{m.shape[2]} pixels, but the "
            f"frames of {video.source} are {h}x{w} (frame 0: {video.frame_name(0)})"
        )
    del m
    return _NpyMasks(file, n_frames=video.n_frames, size=video.frame_size)


def _regions(file: Path, video: Video) -> np.ndarray:
    if not file.is_file():
        if video.labels is not None and video.labels.any():
            raise DatasetError(
                f"test video {video.video_id} has {int(video.labels.sum())} anomalous frames but "
                f"no track file {file}"
            )
        return np.zeros((0, 6), dtype=np.float64)
    r = read_merl_tracks(file, frame_names=video.frame_names)
    if len(r) and video.labels is not None:
        normal = np.flatnonzero(~video.labels[r[:, 0].astype(int)])
        if normal.size:
            t = int(r[normal[0], 0])
            raise DatasetError(
                f"track file {file}: track {int(r[normal[0], 1])} has a region on frame {t} "
                f"({video.frame_name(t)}), which the frame labels say is normal"
            )
    return r


@VIDEO_DATASETS.register(name="shanghaitech")
def read_shanghaitech(
    *,
    path: str,
    seed: int = 0,
    train_layout: Literal["auto", "frames", "videos"] = "auto",
    tracks: str | None = None,
    reasons: str | None = None,
) -> VideoDataset:
    """Load ShanghaiTech Campus (or the synthetic benchmark) from ``path``.

    Parameters
    ----------
    path:
        Dataset folder holding ``training`` and ``testing`` (a str, or any path-like
        object; so are ``tracks`` and ``reasons``).
    seed:
        Unused (the reader is deterministic).
    train_layout:
        ``"frames"`` (``training/frames/<id>/``), ``"videos"`` (``training/videos/<id>.avi``)
        or ``"auto"`` (default: frames when that folder exists, else videos).
    tracks:
        Folder of MERL region-track files ``<video_id>.txt`` (see the module docstring).
    reasons:
        X-MAN reason label file.

    Raises
    ------
    DatasetError
        Missing folders (named with the expected layout), empty videos, gaps in frame
        numbers, frame label or pixel mask files missing, unreadable, of the wrong
        length (file and counts named) or size, non-0/1 labels (file and frame named),
        label, mask or track files naming unknown videos, tracks on unknown or normal
        frames.
    """
    root = Path(path)
    require_dir(root, expected=_LAYOUT)
    training = require_dir(root / "training", expected=_LAYOUT)
    testing = require_dir(root / "testing", expected=_LAYOUT)
    layout = train_layout
    if layout == "auto":
        layout = "frames" if (training / "frames").is_dir() else "videos"
        if not (training / layout).is_dir():
            raise DatasetError(
                f"folder {training} holds neither frames/ nor videos/ (expected layout: {_LAYOUT})"
            )
    if layout == "frames":
        folders = _subfolders(require_dir(training / "frames", expected=_LAYOUT))
        train = [_folder_video(f, normal=True) for f in folders]
    elif layout == "videos":
        train = [
            _container_video(f)
            for f in list_videos(require_dir(training / "videos", expected=_LAYOUT))
        ]
    else:
        raise DatasetError(
            f"train_layout must be 'auto', 'frames' or 'videos', got {train_layout!r}"
        )
    if not train:
        raise DatasetError(f"folder {training / layout} holds no training video ({_LAYOUT})")

    test_frames = require_dir(testing / "frames", expected=_LAYOUT)
    label_dir = require_dir(testing / "test_frame_mask", expected=_LAYOUT)
    test = [_folder_video(f, normal=False) for f in _subfolders(test_frames)]
    if not test:
        raise DatasetError(f"folder {test_frames} holds no test video folder ({_LAYOUT})")
    known = {v.video_id for v in test}
    _check_known(label_dir, ".npy", known, "frame label")
    mask_dir = testing / "test_pixel_mask"
    if mask_dir.is_dir():
        _check_known(mask_dir, ".npy", known, "pixel mask")
    track_dir = None
    if tracks is not None:
        track_dir = require_dir(Path(tracks), expected="<tracks>/<video_id>.txt MERL track files")
        _check_known(track_dir, ".txt", known, "track")
    for v in test:
        v.labels = _frame_labels(label_dir / f"{v.video_id}.npy", v)
        if mask_dir.is_dir():
            v.read_masks = _pixel_masks(mask_dir / f"{v.video_id}.npy", v)
        if track_dir is not None:
            v.regions = _regions(track_dir / f"{v.video_id}.txt", v)
    conventions = {
        "layout": "ShanghaiTech: " + _LAYOUT,
        "frames": "frame i = i-th frame file in natural order (000.jpg is frame 0)"
        + ("; training videos decoded with PyAV" if layout == "videos" else ""),
        "frame_labels": "testing/test_frame_mask/<id>.npy (0/1 per frame)",
        "pixel_masks": "testing/test_pixel_mask/<id>.npy (T, H, W) 0/1, memory-mapped"
        if mask_dir.is_dir()
        else "none (no test_pixel_mask folder)",
    }
    if track_dir is not None:
        conventions["regions"] = (
            f"MERL track files in {track_dir} (x1 = xc - w/2 ..., continuous coordinates)"
        )
    ds = VideoDataset(
        name="shanghaitech", root=root, train=train, test=test, conventions=conventions
    )
    if reasons is not None:
        ds = attach_reasons_file(ds, str(reasons))
    ds.validate()
    return ds
