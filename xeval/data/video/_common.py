"""Helpers shared by the video readers: frame files (natural sort, frame numbers, lazy
reading), video containers (PyAV, lazy decoding) and the checks whose errors name the
file and the frame.

Every reader object here is a small picklable class (no closure, no open file kept
across pickling), so that a :class:`~xeval.data.video.base.Video` can be sent to worker
processes. Nothing is read when a reader is built: frame files are opened by
:func:`read_frame_file` and containers decoded by :func:`decode_frames`, only when
frames are asked for (tests count the calls of these two functions).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from xeval.data.io import _raw_array, _single_channel, image_size, read_mask
from xeval.errors import DatasetError

__all__ = [
    "FRAME_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ContainerReader",
    "FrameFileReader",
    "MaskFileReader",
    "check_range",
    "decode_frames",
    "frame_number",
    "list_frame_files",
    "list_videos",
    "natural_key",
    "natural_sorted",
    "read_frame_file",
    "require_av",
    "require_dir",
    "video_info",
]

#: Frame file extensions (lower case) accepted in frame folders.
FRAME_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
#: Video container extensions (lower case) accepted where a layout holds videos.
VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v")

_DIGITS = re.compile(r"(\d+)")


# ------------------------------------------------------------------------ names
def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: ``"2.jpg" < "10.jpg"``,
    ``"frame_9" < "frame_10"`` (ties broken by the plain name)."""
    parts = _DIGITS.split(name)
    key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts if p)
    return (key, name)


def natural_sorted(items: Iterable, *, key=None) -> list:
    """``items`` sorted by :func:`natural_key` of ``key(item)`` (default: the file name of
    a path, or the string itself)."""
    get = key or (lambda x: x.name if isinstance(x, Path) else str(x))
    return sorted(items, key=lambda x: natural_key(get(x)))


def frame_number(name: str) -> int | None:
    """The frame number written in a file name: the last run of digits of its stem
    (``"001.tif"`` -> 1, ``"frame_0042.jpg"`` -> 42, ``"01_0014_0007_gt.png"`` -> 7
    only if the caller strips the suffix first); None when the stem holds no digit."""
    stem = Path(name).stem
    runs = _DIGITS.findall(stem)
    return int(runs[-1]) if runs else None


def require_dir(path: Path, *, expected: str) -> Path:
    """``path`` if it is a folder, else :class:`DatasetError` naming it and the layout
    that was expected."""
    if not path.is_dir():
        raise DatasetError(f"folder {path} does not exist (expected layout: {expected})")
    return path


def _list(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise DatasetError(
            f"cannot list folder {folder}: {type(exc).__name__}: {exc.strerror or exc}"
        ) from exc


def list_frame_files(
    folder: Path,
    *,
    extensions: Sequence[str] = FRAME_EXTENSIONS,
    consecutive: bool = True,
) -> list[Path]:
    """The frame files of ``folder`` in natural order (hidden files skipped).

    With ``consecutive`` (default), the frame numbers written in the names
    (:func:`frame_number`) must exist, be distinct and follow each other by 1: a gap
    (``004.tif`` then ``006.tif``) or a repeated number (``1.jpg`` and ``001.jpg``) is a
    :class:`DatasetError` naming the folder and the files, since frame indices would
    otherwise silently shift. An empty folder is an error too.
    """
    exts = tuple(e.lower() for e in extensions)
    files = [
        p
        for p in _list(folder)
        if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise DatasetError(
            f"video folder {folder} holds no frame file (expected {', '.join(exts)} files); "
            "an empty video cannot be read"
        )
    files = natural_sorted(files)
    if consecutive:
        nums = [frame_number(p.name) for p in files]
        for p, n in zip(files, nums, strict=True):
            if n is None:
                raise DatasetError(
                    f"frame file {p} has no frame number in its name (expected names such "
                    "as 001.tif or 000123.jpg)"
                )
        for a, b, na, nb in zip(files, files[1:], nums, nums[1:], strict=False):
            if nb == na:
                raise DatasetError(
                    f"frame files {a.name} and {b.name} in {folder} have the same frame number {na}"
                )
            if nb != na + 1:
                gap = f"number {na + 1}" if nb == na + 2 else f"numbers {na + 1}..{nb - 1}"
                raise DatasetError(
                    f"folder {folder} skips frame {gap} between {a.name} and {b.name} "
                    "(expected consecutive frame numbers)"
                )
    return files


def list_videos(folder: Path, *, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video container files of ``folder`` in natural order (hidden files skipped)."""
    exts = tuple(e.lower() for e in extensions)
    return natural_sorted(
        p
        for p in _list(folder)
        if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file()
    )


def check_range(start: int, stop: int, n: int, where: str) -> tuple[int, int]:
    """``(start, stop)`` as ints with ``0 <= start <= stop <= n``, else
    :class:`DatasetError` (an :class:`~xeval.errors.InputError`) naming ``where``."""
    try:
        s, e = int(start), int(stop)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: frame range [{start!r}, {stop!r}) is not integer") from None
    if not 0 <= s <= e <= n:
        raise DatasetError(
            f"{where}: frame range [{s}, {e}) is outside the video's frames 0..{n - 1}"
        )
    return s, e


# ------------------------------------------------------------------ frame files
def _to_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise DatasetError(
        f"frame file {path} holds pixels of type {arr.dtype} (expected 8-bit or 16-bit images)"
    )


def read_frame_file(path: Path) -> np.ndarray:
    """One frame file as ``(H, W, C)`` uint8, ``C`` = 1 (gray) or 3 (colour); alpha is
    dropped, 16-bit pixels are rounded to 8 bits (``v / 257``). Errors name the file."""
    arr = _raw_array(Path(path), what="frame")
    if arr.ndim == 3 and arr.shape[-1] in (2, 4):
        arr = arr[..., : arr.shape[-1] - 1]
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise DatasetError(
            f"frame file {path} has pixel array shape {arr.shape} (expected (H, W) gray or "
            "(H, W, 3) colour)"
        )
    return _to_uint8(arr, Path(path))


def _channels(path: Path) -> int:
    """1 or 3: the channels :func:`read_frame_file` gives for ``path`` (header only)."""
    from PIL import Image

    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
                axes = tif.series[0].axes
        except Exception as exc:
            raise DatasetError(f"cannot read the header of frame file {path}: {exc}") from exc
        return 3 if "S" in axes and shape[axes.index("S")] >= 3 else 1
    try:
        with Image.open(path) as img:
            mode = img.mode
    except Exception as exc:
        raise DatasetError(f"cannot read the header of frame file {path}: {exc}") from exc
    return 1 if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


class FrameFileReader:
    """``read(start, stop) -> (n, H, W, C)`` uint8 from a list of frame files, one file
    per frame, read on demand. The size ``(H, W)`` and channels ``C`` come from the
    first file's header (:meth:`probe`); a frame of another size is a
    :class:`DatasetError` naming the file and the frame index. A gray frame in a colour
    video is replicated to 3 channels; a colour frame in a gray video is an error."""

    def __init__(self, files: Sequence[Path], *, where: str) -> None:
        self.files = [Path(f) for f in files]
        self.where = where
        self.size, self.channels = self.probe()

    def probe(self) -> tuple[tuple[int, int], int]:
        first = self.files[0]
        return image_size(first), _channels(first)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, len(self.files), self.where)
        h, w = self.size
        out = np.empty((e - s, h, w, self.channels), dtype=np.uint8)
        for i, t in enumerate(range(s, e)):
            arr = read_frame_file(self.files[t])
            if arr.shape[:2] != (h, w):
                raise DatasetError(
                    f"{self.where}: frame {t} ({self.files[t]}) is {arr.shape[0]}x"
                    f"{arr.shape[1]} pixels, but the video's frames are {h}x{w} "
                    f"(size of {self.files[0].name})"
                )
            if arr.shape[2] != self.channels:
                if arr.shape[2] == 1:
                    arr = np.repeat(arr, 3, axis=2)
                else:
                    raise DatasetError(
                        f"{self.where}: frame {t} ({self.files[t]}) is a colour image in a "
                        f"gray video (first frame {self.files[0].name} is gray)"
                    )
            out[i] = arr
        return out


def check_mask_array(arr: np.ndarray, *, size: tuple[int, int], where: str, t: int) -> np.ndarray:
    """One frame's mask as bool ``(H, W)``: 2-D, of the video's frame size, holding only
    0/1 (or 0/255, or booleans); errors name ``where`` and frame ``t``."""
    a = np.asarray(arr)
    if a.ndim != 2:
        raise DatasetError(f"{where}: the mask of frame {t} has shape {a.shape} (expected (H, W))")
    if a.shape != tuple(size):
        raise DatasetError(
            f"{where}: the mask of frame {t} is {a.shape[0]}x{a.shape[1]} pixels, but the "
            f"video's frames are {size[0]}x{size[1]}"
        )
    if a.dtype == bool:
        return a
    if a.dtype.kind not in "iuf":
        raise DatasetError(f"{where}: the mask of frame {t} holds values of type {a.dtype}")
    vals = np.unique(a)
    vset = {v.item() for v in vals}
    if not (vset <= {0, 1} or vset <= {0, 255}):
        shown = ", ".join(str(v) for v in vals[:8].tolist()) + (" ..." if vals.size > 8 else "")
        raise DatasetError(
            f"{where}: the mask of frame {t} is not binary: it holds {vals.size} distinct "
            f"values [{shown}] (expected only 0/1 or 0/255)"
        )
    return a > 0


class MaskFileReader:
    """``read_masks(start, stop) -> (n, H, W)`` bool from one mask image per frame
    (``None`` entries: an all-normal frame), read on demand with
    :func:`xeval.data.io.read_mask` (binary check); a mask of another size than the
    frames is a :class:`DatasetError` naming the file and the frame."""

    def __init__(self, files: Sequence[Path | None], *, size: tuple[int, int], where: str):
        self.files = [None if f is None else Path(f) for f in files]
        self.size = tuple(size)
        self.where = where

    def read_one(self, t: int) -> np.ndarray:
        f = self.files[t]
        if f is None:
            return np.zeros(self.size, dtype=bool)
        m = read_mask(f)
        if m.shape != self.size:
            raise DatasetError(
                f"{self.where}: mask file {f} (frame {t}) is {m.shape[0]}x{m.shape[1]} pixels, "
                f"but the video's frames are {self.size[0]}x{self.size[1]}"
            )
        return m

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, len(self.files), self.where)
        out = np.zeros((e - s, *self.size), dtype=bool)
        for i, t in enumerate(range(s, e)):
            out[i] = self.read_one(t)
        return out


def read_id_mask(path: Path, *, size: tuple[int, int], where: str, t: int) -> np.ndarray:
    """An id mask (each pixel the id of an object, 0 = background) as an integer
    ``(H, W)`` array; errors name the file and frame ``t``."""
    arr = _single_channel(_raw_array(Path(path), what="mask", palette="indices"), path, "mask")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise DatasetError(
            f"{where}: id mask {path} (frame {t}) holds values of type {arr.dtype} "
            "(expected integer object ids, 0 = background)"
        )
    if arr.shape != tuple(size):
        raise DatasetError(
            f"{where}: id mask {path} (frame {t}) is {arr.shape[0]}x{arr.shape[1]} pixels, "
            f"but the video's frames are {size[0]}x{size[1]}"
        )
    return arr


# -------------------------------------------------------------------- containers
def require_av():
    """The ``av`` module (PyAV), or :class:`DatasetError` telling how to install it."""
    try:
        import av
    except ImportError:
        raise DatasetError(
            "reading video files needs PyAV, which is not installed: "
            "pip install 'xeval[video]' (or pip install av)"
        ) from None
    return av


def video_info(path: Path) -> tuple[int, tuple[int, int]]:
    """``(n_frames, (H, W))`` of a video file, from the container header without decoding
    a frame: the stream's frame count, or, when the container does not store it, the
    number of non-empty packets of the video stream (demuxed, not decoded)."""
    av = require_av()
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise DatasetError(f"video file {path} holds no video stream")
            s = c.streams.video[0]
            h, w = int(s.codec_context.height), int(s.codec_context.width)
            n = int(s.frames or 0)
            if n <= 0:
                n = sum(1 for p in c.demux(s) if p.size)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"cannot read video file {path}: {type(exc).__name__}: {exc}") from exc
    if n <= 0 or h <= 0 or w <= 0:
        raise DatasetError(
            f"video file {path} is empty: {n} frames of {h}x{w} pixels (expected at least "
            "one frame)"
        )
    return n, (h, w)


def decode_frames(container, stream):
    """Iterator over the decoded frames of ``stream`` as ``(H, W, 3)`` uint8 RGB, in
    display order (the one place where xeval decodes video)."""
    for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")


#: Readers holding an open container, oldest first (at most _MAX_OPEN stay open).
_OPEN: OrderedDict[int, ContainerReader] = OrderedDict()
_MAX_OPEN = 4


class ContainerReader:
    """``read(start, stop) -> (n, H, W, 3)`` uint8 RGB frames of a video file, decoded on
    demand with PyAV. Decoding goes forward from the last frame read (a sequential read
    of clips decodes each frame once); a read before that position reopens the file. At
    most a few files stay open at a time (least recently used closed first). Frame
    indices count decoded frames in display order from 0; a file that decodes to fewer
    frames than its header says is a :class:`DatasetError` naming it and the frame.
    Not thread-safe; pickling drops the open file."""

    def __init__(self, path: Path, *, n_frames: int, size: tuple[int, int], where: str) -> None:
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.size = tuple(size)
        self.where = where
        self._container = None
        self._frames = None
        self._pos = 0

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_container=None, _frames=None, _pos=0)
        return state

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None
                self._frames = None
                self._pos = 0
        _OPEN.pop(id(self), None)

    def _open(self) -> None:
        self.close()
        av = require_av()
        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        except Exception as exc:
            self._container = None
            raise DatasetError(
                f"cannot read video file {self.path}: {type(exc).__name__}: {exc}"
            ) from exc
        self._frames = decode_frames(self._container, stream)
        self._pos = 0
        _OPEN[id(self)] = self
        while len(_OPEN) > _MAX_OPEN:
            _, oldest = _OPEN.popitem(last=False)
            oldest.close()

    def __call__(self, start: int, stop: int) -> np.ndarray:
        s, e = check_range(start, stop, self.n_frames, self.where)
        h, w = self.size
        out = np.empty((e - s, h, w, 3), dtype=np.uint8)
        if e == s:
            return out
        if self._container is None or s < self._pos:
            self._open()
        _OPEN.move_to_end(id(self))
        while self._pos < e:
            try:
                frame = next(self._frames)
            except StopIteration:
                t = self._pos
                self.close()
                raise DatasetError(
                    f"{self.where}: video file {self.path} decodes to {t} frames, but its "
                    f"header says {self.n_frames} (frame {t} is missing)"
                ) from None
            except Exception as exc:
                t = self._pos
                self.close()
                raise DatasetError(
                    f"{self.where}: cannot decode frame {t} of video file {self.path}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if self._pos >= s:
                if frame.shape[:2] != (h, w):
                    raise DatasetError(
                        f"{self.where}: frame {self._pos} of video file {self.path} is "
                        f"{frame.shape[0]}x{frame.shape[1]} pixels, header says {h}x{w}"
                    )
                out[self._pos - s] = frame
            self._pos += 1
        return out


# ---------------------------------------------------------------------- labels
def attach_reasons_file(dataset, path: str):
    """Attach the X-MAN reason labels of ``path`` to ``dataset`` (through
    :func:`xeval.data.video.xman.load_xman` and ``attach_reasons``); returns the
    dataset."""
    from xeval.data.video.xman import attach_reasons, load_xman

    out = attach_reasons(dataset, load_xman(path))
    return dataset if out is None else out


def interval_labels(path: str, videos: dict, *, what: str) -> dict[str, np.ndarray]:
    """Frame labels of an interval annotation file (:func:`xeval.data.video.intervals.
    load_intervals`) for the videos ``{video_id: n_frames}``: a video of the file that
    is not in ``videos``, or whose length differs, is an error naming the file."""
    from xeval.data.video.intervals import load_intervals

    loaded = load_intervals(path)
    out: dict[str, np.ndarray] = {}
    for vid, ann in loaded.items():
        if vid not in videos:
            raise DatasetError(
                f"interval file {path} names video {vid!r}, which is not a {what} video "
                f"(known: {', '.join(sorted(videos)[:10])}{' ...' if len(videos) > 10 else ''})"
            )
        lab = np.asarray(ann.labels, dtype=bool)
        if lab.shape != (videos[vid],):
            raise DatasetError(
                f"interval file {path}: video {vid!r} has labels for {lab.size} frames, but "
                f"the video has {videos[vid]} frames"
            )
        out[vid] = lab
    return out
