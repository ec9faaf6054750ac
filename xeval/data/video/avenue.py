"""Reader for CUHK Avenue (Lu, Shi and Jia, ICCV 2013).

Layout::

    <path>/training_videos/NN.avi        normal training videos
    <path>/testing_videos/NN.avi         test videos
    <path>/testing_label_mask/N_label.mat   pixel masks of test video N (no zero padding)

(``<path>/ground_truth_demo/testing_label_mask`` is used when ``testing_label_mask`` is
not directly under ``<path>``, as in the original archive.) Each ``.mat`` file holds
``volLabel``, a 1 x T MATLAB cell array of H x W masks (0/1), read with
:func:`scipy.io.loadmat`. MATLAB v7.3 (HDF5) files are **not supported** (h5py is not a
dependency): re-save them in MATLAB with ``save(f, 'volLabel', '-v7')``.

Videos are decoded with PyAV (``pip install 'xeval[video]'``), frame ``t`` being the
``t``-th decoded frame in display order from 0; the frame count comes from the container
header. Frame labels: a frame is anomalous when its mask has any anomalous pixel. The
``.mat`` files are read once at load time (frame counts, sizes, binary values, labels)
and dropped; :meth:`Video.masks` rereads the file on demand (the last file read is
kept).

Video ids: test videos keep their file stem (``"01"``, the name label files use);
training videos are ``"train_01"`` (ids must be unique across the dataset).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xeval.data.video._common import (
    ContainerReader,
    attach_reasons_file,
    check_mask_array,
    check_range,
    list_videos,
    require_dir,
    video_info,
)
from xeval.data.video.base import Video, VideoDataset
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

__all__ = ["read_avenue", "read_vol_label"]

_LAYOUT = (
    "<path>/training_videos/NN.avi, <path>/testing_videos/NN.avi, "
    "<path>/testing_label_mask/N_label.mat (volLabel)"
)
_MAT = re.compile(r"^(\d+)_label\.mat$", re.IGNORECASE)


def read_vol_label(path: str | Path) -> list[np.ndarray]:
    """The masks of an Avenue label file: ``volLabel`` (a 1 x T cell array) as a list of
    T 2-D arrays. Errors name the file (missing variable, v7.3 files, not a cell array
    of 2-D arrays)."""
    from scipy.io import loadmat

    p = Path(path)
    try:
        mat = loadmat(p, variable_names=["volLabel"])
    except NotImplementedError as exc:  # scipy's message for v7.3 files
        raise DatasetError(
            f"label file {p} is a MATLAB v7.3 (HDF5) file, which xeval does not read: "
            "re-save it in MATLAB with save(f, 'volLabel', '-v7')"
        ) from exc
    except Exception as exc:
        raise DatasetError(f"cannot read label file {p}: {type(exc).__name__}: {exc}") from exc
    if "volLabel" not in mat:
        raise DatasetError(f"label file {p} holds no variable 'volLabel' (expected Avenue masks)")
    vol = mat["volLabel"]
    if vol.dtype != object:
        if vol.ndim == 3:  # a plain H x W x T array
            return [vol[:, :, t] for t in range(vol.shape[2])]
        raise DatasetError(
            f"label file {p}: volLabel is a {vol.dtype} array of shape {vol.shape} (expected "
            "a 1 x T cell array of H x W masks)"
        )
    cells = vol.reshape(-1)
    return [np.asarray(c) for c in cells]


class _MatMasks:
    """``read_masks(start, stop)`` rereading one ``.mat`` file (the last one is cached)."""

    _cache: tuple[Path, list[np.ndarray]] | None = None

    def __init__(self, path: Path, *, n_frames: int, size: tuple[int, int], where: str):
        self.path, self.n_frames, self.size, self.where = path, n_frames, tuple(size), where

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, self.n_frames, self.where)
        cached = type(self)._cache
        if cached is None or cached[0] != self.path:
            cached = (self.path, read_vol_label(self.path))
            type(self)._cache = cached
        masks = cached[1]
        if len(masks) != self.n_frames:
            raise DatasetError(
                f"label file {self.path} now holds {len(masks)} masks, {self.n_frames} expected"
            )
        out = np.zeros((e - s, *self.size), dtype=bool)
        for i, t in enumerate(range(s, e)):
            out[i] = check_mask_array(masks[t], size=self.size, where=str(self.path), t=t)
        return out


def _container_video(file: Path, video_id: str, *, normal: bool) -> Video:
    n, size = video_info(file)
    return Video(
        video_id=video_id,
        n_frames=n,
        frame_size=size,
        read=ContainerReader(file, n_frames=n, size=size, where=str(file)),
        frame_names=[str(t) for t in range(n)],
        labels=np.zeros(n, dtype=bool) if normal else None,
        source=str(file),
    )


@VIDEO_DATASETS.register(name="avenue")
def read_avenue(*, path: str, seed: int = 0, reasons: str | None = None) -> VideoDataset:
    """Load CUHK Avenue from ``path`` (the folder holding ``training_videos``,
    ``testing_videos`` and ``testing_label_mask``).

    Parameters
    ----------
    path:
        Dataset folder.
    seed:
        Unused (the reader is deterministic).
    reasons:
        Optional X-MAN reason file (:mod:`xeval.data.video.xman`).

    Raises
    ------
    DatasetError
        Missing folders or videos; a test video without its label file, or a label file
        without its video; a label file whose mask count differs from the video's frame
        count (both files and counts named); masks of another size than the frames or
        not binary (file and frame named); empty or unreadable videos; PyAV missing.
    """
    root = Path(path)
    require_dir(root, expected=_LAYOUT)
    train_dir = require_dir(root / "training_videos", expected=_LAYOUT)
    test_dir = require_dir(root / "testing_videos", expected=_LAYOUT)
    label_dir = root / "testing_label_mask"
    if not label_dir.is_dir() and (root / "ground_truth_demo" / "testing_label_mask").is_dir():
        label_dir = root / "ground_truth_demo" / "testing_label_mask"
    require_dir(label_dir, expected=_LAYOUT)
    train_files, test_files = list_videos(train_dir), list_videos(test_dir)
    if not train_files:
        raise DatasetError(f"folder {train_dir} holds no video file ({_LAYOUT})")
    if not test_files:
        raise DatasetError(f"folder {test_dir} holds no video file ({_LAYOUT})")
    mats = {}
    for m in label_dir.iterdir():
        hit = _MAT.match(m.name)
        if hit:
            mats[int(hit.group(1))] = m
    numbers = {}
    for f in test_files:
        if not f.stem.isdigit():
            raise DatasetError(
                f"test video {f} has no number as its name (expected NN.avi, labelled by "
                f"{label_dir}/N_label.mat)"
            )
        numbers[int(f.stem)] = f
    orphans = sorted(set(mats) - set(numbers))
    if orphans:
        raise DatasetError(
            f"label file {mats[orphans[0]]} has no test video {orphans[0]:02d}.avi in {test_dir}"
        )

    train = [_container_video(f, f"train_{f.stem}", normal=True) for f in train_files]
    test = []
    for num, f in sorted(numbers.items()):
        v = _container_video(f, f.stem, normal=False)
        mat = mats.get(num)
        if mat is None:
            raise DatasetError(
                f"test video {f} has no label file {label_dir / f'{num}_label.mat'} ({_LAYOUT})"
            )
        masks = read_vol_label(mat)
        if len(masks) != v.n_frames:
            raise DatasetError(
                f"label file {mat} holds {len(masks)} masks (volLabel), but video file {f} "
                f"has {v.n_frames} frames"
            )
        v.labels = np.array(
            [
                check_mask_array(m, size=v.frame_size, where=str(mat), t=t).any()
                for t, m in enumerate(masks)
            ]
        )
        v.read_masks = _MatMasks(mat, n_frames=v.n_frames, size=v.frame_size, where=str(mat))
        test.append(v)
    conventions = {
        "layout": "CUHK Avenue: " + _LAYOUT,
        "frames": "frame t = t-th decoded frame in display order (PyAV), count from the header",
        "frame_labels": "anomalous = any anomalous pixel in volLabel{t+1}",
        "pixel_masks": "testing_label_mask/N_label.mat volLabel (1 x T cell array)",
        "video_ids": "test: file stem ('01'); train: 'train_' + stem",
    }
    ds = VideoDataset(name="avenue", root=root, train=train, test=test, conventions=conventions)
    if reasons is not None:
        ds = attach_reasons_file(ds, reasons)
    ds.validate()
    return ds
