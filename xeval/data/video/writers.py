"""Tiny fixture writers for each video layout (tests, examples, the synthetic benchmark).

Each writer takes frames as ``(T, H, W)`` or ``(T, H, W, C)`` uint8 arrays keyed by
video id and writes them in the exact layout its reader expects:

- :func:`write_ucsd` -- ``Train/TrainNNN/001.tif``, ``Test/TestNNN/001.tif``,
  ``Test/TestNNN_gt/001.bmp``;
- :func:`write_avenue` -- ``training_videos/NN.avi``, ``testing_videos/NN.avi``,
  ``testing_label_mask/N_label.mat`` (``volLabel``, a 1 x T cell array);
- :func:`write_shanghaitech` -- ``training/frames/SS_VVV/000.jpg`` (or
  ``training/videos/SS_VVV.avi``), ``testing/frames/SS_VVVV/000.jpg``,
  ``testing/test_frame_mask/SS_VVVV.npy``, ``testing/test_pixel_mask/SS_VVVV.npy``;
- :func:`write_ubnormal` -- ``Scene<k>/<video>.mp4``,
  ``Scene<k>/<video>_annotations/<video>_<frame:04d>_gt.png`` and ``<video>_tracks.txt``.

Videos are written losslessly (FFV1 in ``.avi``/``.mkv``, x264 RGB with ``qp=0`` in
``.mp4``), so a reader must give back the exact pixels (JPEG frames excepted).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xeval.data.video._common import require_av

__all__ = [
    "tiny_frames",
    "write_avenue",
    "write_frame_files",
    "write_mask_files",
    "write_shanghaitech",
    "write_ubnormal",
    "write_ucsd",
    "write_video_file",
]


def tiny_frames(
    n: int, *, size: tuple[int, int] = (24, 32), channels: int = 1, seed: int = 0
) -> np.ndarray:
    """``(n, H, W, channels)`` uint8 random frames (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *size, channels), dtype=np.uint8)


def _as_thwc(frames: np.ndarray) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W[, 1|3]) uint8, got {a.shape} {a.dtype}")
    return a


def _save_image(path: Path, arr: np.ndarray, **kw) -> None:
    from PIL import Image

    a = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
    Image.fromarray(a).save(path, **kw)


def write_frame_files(
    folder: str | os.PathLike,
    frames: np.ndarray,
    *,
    ext: str = ".tif",
    start: int = 1,
    digits: int = 3,
) -> list[Path]:
    """One file per frame, ``folder/<start + t:0{digits}d><ext>``; returns the paths."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    kw = {"quality": 95} if ext.lower() in (".jpg", ".jpeg") else {}
    for t, f in enumerate(_as_thwc(frames)):
        p = d / f"{start + t:0{digits}d}{ext}"
        _save_image(p, f, **kw)
        out.append(p)
    return out


def write_mask_files(
    folder: str | os.PathLike,
    masks: np.ndarray,
    *,
    ext: str = ".bmp",
    start: int = 1,
    digits: int = 3,
) -> list[Path]:
    """One 0/255 mask image per frame, ``folder/<start + t:0{digits}d><ext>``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for t, m in enumerate(np.asarray(masks)):
        p = d / f"{start + t:0{digits}d}{ext}"
        _save_image(p, (np.asarray(m) > 0).astype(np.uint8) * np.uint8(255))
        out.append(p)
    return out


def write_video_file(
    path: str | os.PathLike, frames: np.ndarray, *, fps: int = 25, codec: str | None = None
) -> Path:
    """Encode ``frames`` with PyAV (lossless by default: ``ffv1`` for ``.avi``/``.mkv``,
    ``libx264rgb`` at ``qp=0`` for ``.mp4``; ``codec`` overrides, e.g. ``"mpeg4"``)."""
    av = require_av()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    a = _as_thwc(frames)
    if len(a) == 0:
        raise ValueError(f"write_video_file: no frame to write to {p}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    mp4 = p.suffix.lower() in (".mp4", ".m4v", ".mov")
    codec = codec or ("libx264rgb" if mp4 else "ffv1")
    pix = {"ffv1": "bgr0", "libx264rgb": "rgb24"}.get(codec, "yuv420p")
    with av.open(str(p), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = int(a.shape[1]), int(a.shape[2])
        s.pix_fmt = pix
        if codec == "libx264rgb":
            s.options = {"qp": "0"}
        for f in a:
            for pkt in s.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            ):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return p


def write_ucsd(
    root: str | os.PathLike,
    *,
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """UCSD layout: keys ``"Train001"``/``"Test001"``; ``masks[test_id]`` ``(T, H, W)``
    bool becomes ``Test/<id>_gt/001.bmp...`` (videos without an entry get no ``_gt``)."""
    r = Path(root)
    for vid, fr in train.items():
        write_frame_files(r / "Train" / vid, fr)
    for vid, fr in test.items():
        write_frame_files(r / "Test" / vid, fr)
    for vid, m in (masks or {}).items():
        write_mask_files(r / "Test" / f"{vid}_gt", m)
    return r


def write_avenue(
    root: str | os.PathLike,
    *,
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """CUHK Avenue layout: keys ``"01"``...; ``masks[id]`` ``(T, H, W)`` becomes
    ``testing_label_mask/<int(id)>_label.mat`` with ``volLabel`` a 1 x T cell array of
    uint8 0/1 masks (written with :func:`scipy.io.savemat`, MATLAB v5 format)."""
    from scipy.io import savemat

    r = Path(root)
    for vid, fr in train.items():
        write_video_file(r / "training_videos" / f"{vid}.avi", fr)
    for vid, fr in test.items():
        write_video_file(r / "testing_videos" / f"{vid}.avi", fr)
    for vid, m in (masks or {}).items():
        m = np.asarray(m)
        cell = np.empty((1, len(m)), dtype=object)
        for t in range(len(m)):
            cell[0, t] = (m[t] > 0).astype(np.uint8)
        d = r / "testing_label_mask"
        d.mkdir(parents=True, exist_ok=True)
        savemat(d / f"{int(vid)}_label.mat", {"volLabel": cell})
    return r


def write_shanghaitech(
    root: str | os.PathLike,
    *,
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
    pixel_masks: Mapping[str, np.ndarray] | None = None,
    frame_labels: Mapping[str, np.ndarray] | None = None,
    train_layout: str = "frames",
    ext: str = ".jpg",
) -> Path:
    """ShanghaiTech layout: keys ``"01_001"`` (train), ``"01_0014"`` (test). Frames are
    ``000<ext>``... (0-based names); training videos as frame folders
    (``train_layout="frames"``) or ``.avi`` files (``"videos"``). ``frame_labels[id]``
    (default: any pixel of ``pixel_masks[id]``) becomes ``test_frame_mask/<id>.npy``
    (int8 0/1), ``pixel_masks[id]`` ``test_pixel_mask/<id>.npy`` (uint8 0/1,
    ``(T, H, W)``)."""
    r = Path(root)
    for vid, fr in train.items():
        if train_layout == "videos":
            write_video_file(r / "training" / "videos" / f"{vid}.avi", fr)
        else:
            write_frame_files(r / "training" / "frames" / vid, fr, ext=ext, start=0)
    for vid, fr in test.items():
        write_frame_files(r / "testing" / "frames" / vid, fr, ext=ext, start=0)
    labels = dict(frame_labels or {})
    for vid, m in (pixel_masks or {}).items():
        m = (np.asarray(m) > 0).astype(np.uint8)
        d = r / "testing" / "test_pixel_mask"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{vid}.npy", m)
        labels.setdefault(vid, m.reshape(len(m), -1).any(axis=1))
    for vid, lab in labels.items():
        d = r / "testing" / "test_frame_mask"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{vid}.npy", np.asarray(lab).astype(np.int8))
    return r


def _runs(frames: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive integers ``[(start, end)]`` (end inclusive)."""
    if frames.size == 0:
        return []
    cut = np.flatnonzero(np.diff(frames) != 1)
    starts = np.r_[frames[0], frames[cut + 1]]
    ends = np.r_[frames[cut], frames[-1]]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def write_ubnormal(
    root: str | os.PathLike,
    *,
    videos: Mapping[str, np.ndarray],
    id_masks: Mapping[str, np.ndarray] | None = None,
    scene: int = 1,
) -> Path:
    """UBnormal layout in ``Scene<scene>``: ``<video>.mp4`` per video; for each video in
    ``id_masks`` (``(T, H, W)`` integer object ids, 0 = background) a folder
    ``<video>_annotations`` with ``<video>_<t:04d>_gt.png`` for every frame and
    ``<video>_tracks.txt`` holding one line ``object_id,start,end`` (0-based, end
    inclusive) per run of consecutive frames where the object is present."""
    r = Path(root) / f"Scene{scene}"
    for vid, fr in videos.items():
        write_video_file(r / f"{vid}.mp4", fr)
    for vid, ids in (id_masks or {}).items():
        ids = np.asarray(ids)
        d = r / f"{vid}_annotations"
        d.mkdir(parents=True, exist_ok=True)
        for t, m in enumerate(ids):
            _save_image(d / f"{vid}_{t:04d}_gt.png", m.astype(np.uint8))
        lines = []
        for obj in np.unique(ids[ids > 0]).tolist():
            present = np.flatnonzero((ids == obj).reshape(len(ids), -1).any(axis=1))
            lines += [f"{obj},{s},{e}" for s, e in _runs(present)]
        (d / f"{vid}_tracks.txt").write_text("".join(x + "\n" for x in lines))
    return Path(root)
