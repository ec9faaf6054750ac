"""Street Scene / MERL region-track files.

One region per line::

    <file> <track_id> <x_center> <y_center> <width> <height>

``<file>`` names the frame (``001.jpg``, or a path ending in it); fields are separated
by white space or commas; blank lines and lines starting with ``#`` are skipped. A
region is the box ``x1 = xc - w/2, y1 = yc - h/2, x2 = xc + w/2, y2 = yc + h/2`` in
continuous pixel coordinates (area ``w * h``), the convention of
:mod:`xeval.data.video.base`.

Frame matching: the base name of ``<file>`` must be one of the video's frame names
(exactly, or, when no frame has that exact name, by its stem, so that ``001.jpg``
matches a frame stored as ``001.png``); any other name is an error naming the file,
the line and the frame.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from xeval.errors import DatasetError

__all__ = ["read_merl_tracks", "write_merl_tracks"]

_SPLIT = re.compile(r"[,\s]+")
_FIELDS = ("track_id", "x_center", "y_center", "width", "height")


def _base_name(field: str) -> str:
    """The last component of a POSIX or Windows path."""
    return PureWindowsPath(PurePosixPath(field).name).name


def _frame_lookup(frame_names: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    exact: dict[str, int] = {}
    stems: dict[str, int] = {}
    ambiguous: set[str] = set()
    for i, n in enumerate(frame_names):
        b = _base_name(str(n))
        if b in exact:
            raise DatasetError(f"frame name {b!r} is repeated in the video's frame names")
        exact[b] = i
        st = Path(b).stem
        if st in stems:
            ambiguous.add(st)
        stems[st] = i
    for st in ambiguous:
        stems.pop(st)
    return exact, stems


def read_merl_tracks(path: str | os.PathLike, *, frame_names: Sequence[str]) -> np.ndarray:
    """Read a MERL / Street Scene region-track file.

    Parameters
    ----------
    path:
        The track file (one region per line, see the module docstring).
    frame_names:
        The video's frame names in display order (frame ``i`` is ``frame_names[i]``).

    Returns
    -------
    numpy.ndarray
        float64 ``(n, 6)`` rows ``(frame, track_id, x1, y1, x2, y2)``, frame 0-based,
        sorted by frame then track id (an empty file gives ``(0, 6)``).

    Raises
    ------
    DatasetError
        Missing file; a line without 6 fields; a non-numeric, non-finite or non-integer
        track id; a non-numeric or non-finite coordinate; a width or height that is not
        > 0; a frame not in ``frame_names``; the same track twice in one frame. The
        message names the file and line (and the frame).
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"track file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read track file {p}: {exc}") from exc
    exact, stems = _frame_lookup(frame_names)
    rows: list[tuple[float, ...]] = []
    lines: list[int] = []
    for k, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f for f in _SPLIT.split(line) if f]
        where = f"track file {p}, line {k}"
        if len(fields) != 6:
            raise DatasetError(
                f"{where}: {len(fields)} fields in {line!r} (expected <file> <track_id> "
                "<x_center> <y_center> <width> <height>)"
            )
        name = _base_name(fields[0])
        t = exact.get(name)
        if t is None:
            t = stems.get(Path(name).stem)
        if t is None:
            shown = ", ".join(str(n) for n in list(frame_names)[:3])
            raise DatasetError(
                f"{where}: frame {fields[0]!r} is not a frame of the video ({len(frame_names)} "
                f"frames: {shown}{' ...' if len(frame_names) > 3 else ''})"
            )
        vals = []
        for label, f in zip(_FIELDS, fields[1:], strict=True):
            try:
                v = float(f)
            except ValueError:
                raise DatasetError(f"{where}: {label} {f!r} is not a number") from None
            if not math.isfinite(v):
                raise DatasetError(f"{where}: {label} {f!r} is not finite")
            vals.append(v)
        tid, xc, yc, w, h = vals
        if tid != int(tid):
            raise DatasetError(f"{where}: track_id {fields[1]!r} is not an integer")
        if w <= 0 or h <= 0:
            raise DatasetError(
                f"{where}: region of frame {fields[0]!r} has width {fields[4]} and height "
                f"{fields[5]} (expected both > 0)"
            )
        rows.append((float(t), tid, xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
        lines.append(k)
    if not rows:
        return np.zeros((0, 6), dtype=np.float64)
    arr = np.asarray(rows, dtype=np.float64)
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    arr = arr[order]
    same = np.flatnonzero((np.diff(arr[:, 0]) == 0) & (np.diff(arr[:, 1]) == 0))
    if same.size:
        i = same[0]
        a, b = sorted((lines[order[i]], lines[order[i + 1]]))
        raise DatasetError(
            f"track file {p}, lines {a} and {b}: track {int(arr[i, 1])} has two regions in "
            f"frame {frame_names[int(arr[i, 0])]!r}"
        )
    return arr


def write_merl_tracks(
    path: str | os.PathLike, regions: np.ndarray, *, frame_names: Sequence[str]
) -> Path:
    """Write ``regions`` (rows ``(frame, track_id, x1, y1, x2, y2)``) as a MERL track file
    that :func:`read_merl_tracks` reads back (coordinates written with Python's
    shortest round-trip float repr; centre and size are computed from the corners, so a
    reread box equals the written one up to floating-point rounding, exactly for
    coordinates on a 1/2-pixel grid). Returns the path."""
    r = np.asarray(regions, dtype=np.float64)
    if r.size == 0:
        r = r.reshape(0, 6)
    if r.ndim != 2 or r.shape[1] != 6:
        raise DatasetError(
            f"write_merl_tracks: regions must be (n, 6) rows (frame, track_id, x1, y1, x2, "
            f"y2), got shape {r.shape}"
        )
    if not np.isfinite(r).all():
        raise DatasetError("write_merl_tracks: regions hold non-finite values")
    bad = np.flatnonzero((r[:, 4] <= r[:, 2]) | (r[:, 5] <= r[:, 3]))
    if bad.size:
        raise DatasetError(
            f"write_merl_tracks: region {int(bad[0])} {r[bad[0]].tolist()} has no area "
            "(expected x1 < x2 and y1 < y2)"
        )
    frames = r[:, 0]
    badf = np.flatnonzero(
        (frames < 0) | (frames >= len(frame_names)) | (frames != np.round(frames))
    )
    if badf.size:
        raise DatasetError(
            f"write_merl_tracks: region {int(badf[0])} points at frame {float(frames[badf[0]])!r}, "
            f"but the video has frames 0..{len(frame_names) - 1}"
        )
    used = {frame_names[int(f)] for f in frames.tolist()}
    odd = sorted(n for n in used if _SPLIT.search(str(n)) or not str(n))
    if odd:
        raise DatasetError(
            f"write_merl_tracks: frame name {odd[0]!r} is empty or holds white space or a "
            "comma, which the track format cannot represent"
        )
    out = []
    for f, tid, x1, y1, x2, y2 in r.tolist():
        w, h = x2 - x1, y2 - y1
        out.append(
            f"{frame_names[int(f)]} {int(tid)} {(x1 + x2) / 2!r} {(y1 + y2) / 2!r} {w!r} {h!r}"
        )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(line + "\n" for line in out), encoding="utf-8")
    return p
