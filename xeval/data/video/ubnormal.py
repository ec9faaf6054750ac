"""Reader for UBnormal (Acsintoae et al., CVPR 2022).

Layout::

    <path>/Scene<k>/<video>.mp4
    <path>/Scene<k>/<video>_annotations/<video>_<frame:04d>_gt.png   per-frame id masks
    <path>/Scene<k>/<video>_annotations/<video>_tracks.txt           anomalous objects

Conventions (those of the dataset's own scripts, ``write_frame_level_ground_truth.py``
and ``create_tracks_for_tbdc_rbdc.py``, read from their behaviour, not copied):

- frames are 0-based in display order; frame ``t``'s id mask is
  ``<video>_<t:04d>_gt.png`` (each pixel = the id of the anomalous object there,
  0 = background);
- each line of ``<video>_tracks.txt`` is ``object_id, start_frame, end_frame``
  (comma-separated, 0-based, end **inclusive**); ``<video>_new_tracks.txt``, when
  present, replaces it (the corrected tracks, as the official script prefers);
- a frame is anomalous when it lies in some track's ``[start, end]`` (frame labels come
  from the tracks file, as in the official frame-level ground truth);
- pixel masks are ``id > 0`` (read on demand; a missing mask file of a frame outside
  every track is an all-normal frame, of a frame inside a track an error);
- regions: for every track and frame, the box of **all** pixels holding the object's id
  (``x2 = last column + 1``, continuous coordinates), track id = object id. (The
  official script boxes only the largest contour of the object; ours keeps every pixel,
  which differs for an object split in several pieces.) Building them reads the id
  masks of the frames inside tracks at load time (``regions=True``, default); an object
  absent from the mask of a frame its track covers is an error naming the file and
  frame. With ``regions=False`` nothing but the tracks file is read at load time.

Videos without an ``_annotations`` folder are normal throughout. Videos are decoded with
PyAV (``pip install 'xeval[video]'``); the frame count comes from the container header.

Split: ``videos`` (test) and ``train_videos`` (training, must be normal) are lists of
video names or the path of a text file with one name per line (the official
``abnormal_test_video_names.txt`` + ``normal_test_video_names.txt`` style). Default:
every video found is a test video and there is no training video (UBnormal's own
training set holds anomalous videos, which this data model's training split, normal
throughout, cannot hold: choose its normal videos with ``train_videos``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xeval.data.video._common import (
    ContainerReader,
    check_range,
    list_videos,
    natural_sorted,
    read_id_mask,
    require_dir,
    video_info,
)
from xeval.data.video.base import Video, VideoDataset
from xeval.errors import DatasetError
from xeval.registry import VIDEO_DATASETS

__all__ = ["read_ubnormal", "read_ubnormal_tracks"]

_LAYOUT = (
    "<path>/Scene<k>/<video>.mp4, <path>/Scene<k>/<video>_annotations/<video>_<frame:04d>_gt.png "
    "and <video>_tracks.txt"
)
_SCENE = re.compile(r"^Scene(\d+)$", re.IGNORECASE)
_SPLIT = re.compile(r"[,\s]+")


def read_ubnormal_tracks(path: Path, *, n_frames: int) -> np.ndarray:
    """``(n, 3)`` int64 rows ``(object_id, start, end)`` (0-based, end inclusive) of a
    UBnormal tracks file; errors name the file, the line and the frame."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read tracks file {p}: {exc}") from exc
    rows = []
    for k, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"tracks file {p}, line {k}"
        fields = [f for f in _SPLIT.split(line) if f]
        if len(fields) != 3:
            raise DatasetError(
                f"{where}: {len(fields)} fields in {line!r} (expected object_id, start_frame, "
                "end_frame)"
            )
        vals = []
        for label, f in zip(("object_id", "start_frame", "end_frame"), fields, strict=True):
            try:
                v = float(f)
            except ValueError:
                raise DatasetError(f"{where}: {label} {f!r} is not a number") from None
            if not np.isfinite(v) or v != int(v):
                raise DatasetError(f"{where}: {label} {f!r} is not an integer")
            vals.append(int(v))
        obj, start, end = vals
        if obj <= 0:
            raise DatasetError(f"{where}: object_id {obj} (expected > 0; 0 is the background)")
        if start < 0 or start > end:
            raise DatasetError(
                f"{where}: frames {start}..{end} are not a range (expected 0 <= start <= end)"
            )
        if end >= n_frames:
            raise DatasetError(
                f"{where}: object {obj} ends at frame {end}, but the video has {n_frames} "
                f"frames (0..{n_frames - 1})"
            )
        rows.append(vals)
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class _IdMasks:
    """``read_masks(start, stop)``: ``id > 0`` of the per-frame id masks, on demand."""

    def __init__(self, folder: Path, name: str, *, n_frames: int, size, in_track: np.ndarray):
        self.folder, self.name, self.n_frames = Path(folder), name, n_frames
        self.size, self.in_track = tuple(size), np.asarray(in_track, dtype=bool)

    def file(self, t: int) -> Path:
        return self.folder / f"{self.name}_{t:04d}_gt.png"

    def ids(self, t: int) -> np.ndarray | None:
        f = self.file(t)
        if not f.is_file():
            if self.in_track[t]:
                raise DatasetError(
                    f"{self.folder}: mask file {f.name} of frame {t} is missing, but the "
                    "tracks file puts an anomalous object in that frame"
                )
            return None
        return read_id_mask(f, size=self.size, where=str(self.folder), t=t)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, self.n_frames, str(self.folder))
        out = np.zeros((e - s, *self.size), dtype=bool)
        for i, t in enumerate(range(s, e)):
            ids = self.ids(t)
            if ids is not None:
                out[i] = ids > 0
        return out


def _regions(masks: _IdMasks, tracks: np.ndarray, tracks_file: Path) -> np.ndarray:
    pairs = sorted({(t, obj) for obj, s, e in tracks.tolist() for t in range(s, e + 1)})
    rows = []
    cache: dict[int, np.ndarray] = {}
    for t, obj in pairs:
        if t not in cache:
            cache = {t: masks.ids(t)}
        ys, xs = np.nonzero(cache[t] == obj)
        if ys.size == 0:
            raise DatasetError(
                f"{masks.file(t)} (frame {t}) holds no pixel of object {obj}, which "
                f"{tracks_file.name} says is in view in that frame"
            )
        rows.append((t, obj, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _names(option, what: str) -> list[str] | None:
    if option is None:
        return None
    if isinstance(option, str):
        p = Path(option)
        if not p.is_file():
            raise DatasetError(f"{what}: list file {p} does not exist (expected one name a line)")
        return [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]
    return [str(v) for v in option]


def _video(file: Path, *, test: bool, regions: bool, conventions_note: list[str]) -> Video:
    n, size = video_info(file)
    v = Video(
        video_id=file.stem,
        n_frames=n,
        frame_size=size,
        read=ContainerReader(file, n_frames=n, size=size, where=str(file)),
        frame_names=[str(t) for t in range(n)],
        labels=np.zeros(n, dtype=bool),
        source=str(file),
    )
    ann = file.parent / f"{file.stem}_annotations"
    if not ann.is_dir():
        if test:
            v.read_masks = _IdMasks(ann, file.stem, n_frames=n, size=size, in_track=v.labels)
            v.regions = np.zeros((0, 6), dtype=np.float64)
        return v
    if not test:
        raise DatasetError(
            f"training video {file} has annotations ({ann}): training videos must be normal"
        )
    tracks_file = ann / f"{file.stem}_new_tracks.txt"
    if not tracks_file.is_file():
        tracks_file = ann / f"{file.stem}_tracks.txt"
    if not tracks_file.is_file():
        raise DatasetError(f"annotation folder {ann} has no tracks file {tracks_file.name}")
    tracks = read_ubnormal_tracks(tracks_file, n_frames=n)
    for _, s, e in tracks.tolist():
        v.labels[s : e + 1] = True
    pat = re.compile(rf"^{re.escape(file.stem)}_(\d+)_gt\.png$")
    for f in natural_sorted(ann.iterdir()):
        hit = pat.match(f.name)
        if hit and int(hit.group(1)) >= n:
            raise DatasetError(
                f"mask file {f} names frame {int(hit.group(1))}, but video {file} has {n} "
                f"frames (0..{n - 1})"
            )
    masks = _IdMasks(ann, file.stem, n_frames=n, size=size, in_track=v.labels)
    v.read_masks = masks
    if regions:
        v.regions = _regions(masks, tracks, tracks_file)
    if tracks_file.name.endswith("_new_tracks.txt"):
        conventions_note.append(file.stem)
    return v


@VIDEO_DATASETS.register(name="ubnormal")
def read_ubnormal(
    *,
    path: str,
    seed: int = 0,
    videos: list[str] | str | None = None,
    train_videos: list[str] | str | None = None,
    regions: bool = True,
) -> VideoDataset:
    """Load UBnormal from ``path`` (the folder holding ``Scene1``, ``Scene2``...).

    Parameters
    ----------
    path:
        Dataset folder.
    seed:
        Unused (the reader is deterministic).
    videos:
        Test videos: names (``"abnormal_scene_1_scenario_1"``) or a text file of names;
        default every video not in ``train_videos``.
    train_videos:
        Training videos (normal: no annotations folder), names or a text file; default none.
    regions:
        Build :attr:`Video.regions` from the id masks (reads the masks of the frames in
        tracks at load time); False leaves them None.

    Raises
    ------
    DatasetError
        Missing folders or videos, a named video that does not exist, a training video
        with annotations, an annotation folder without tracks file, tracks files with
        malformed lines or frames beyond the video (file, line, frame named), mask files
        naming frames beyond the video, masks of another size than the frames or missing
        for a frame inside a track, objects absent from the masks their tracks cover.
    """
    root = Path(path)
    require_dir(root, expected=_LAYOUT)
    scenes = natural_sorted(p for p in root.iterdir() if p.is_dir() and _SCENE.match(p.name))
    if not scenes:
        raise DatasetError(f"folder {root} holds no Scene<k> folder (expected layout: {_LAYOUT})")
    found: dict[str, Path] = {}
    for scene in scenes:
        for f in list_videos(scene):
            if f.stem in found:
                raise DatasetError(f"video name {f.stem!r} is repeated: {found[f.stem]} and {f}")
            found[f.stem] = f
    if not found:
        raise DatasetError(f"no video file in the Scene<k> folders of {root} ({_LAYOUT})")
    train_names = _names(train_videos, "train_videos") or []
    test_names = _names(videos, "videos")
    if test_names is None:
        test_names = [n for n in found if n not in set(train_names)]
    for name in [*train_names, *test_names]:
        if name not in found:
            shown = ", ".join(list(found)[:5]) + (" ..." if len(found) > 5 else "")
            raise DatasetError(f"UBnormal: video {name!r} is not in {root} (found: {shown})")
    both = sorted(set(train_names) & set(test_names))
    if both:
        raise DatasetError(f"UBnormal: video {both[0]!r} is both a training and a test video")
    new_tracks: list[str] = []
    train = [
        _video(found[n], test=False, regions=regions, conventions_note=[]) for n in train_names
    ]
    test = [
        _video(found[n], test=True, regions=regions, conventions_note=new_tracks)
        for n in test_names
    ]
    conventions = {
        "layout": "UBnormal: " + _LAYOUT,
        "frames": "frame t = t-th decoded frame in display order (PyAV), count from the header",
        "frame_labels": "anomalous = inside some [start_frame, end_frame] (inclusive, 0-based) "
        "of <video>_tracks.txt; no annotations folder = normal",
        "pixel_masks": "id mask <video>_<t:04d>_gt.png > 0",
        "regions": "box of all pixels of each object id per frame (x2 = last column + 1), "
        "track id = object id"
        if regions
        else "not built (regions=False)",
        "split": f"test: {'given' if videos is not None else 'all videos not in train_videos'}"
        f"; train: {'given' if train_videos is not None else 'none'}",
    }
    if new_tracks:
        conventions["tracks_files"] = "<video>_new_tracks.txt used for " + ", ".join(new_tracks)
    ds = VideoDataset(name="ubnormal", root=root, train=train, test=test, conventions=conventions)
    ds.validate()
    return ds
