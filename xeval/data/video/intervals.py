"""Interval annotations: anomalous frame ranges of each video, by class (JSON).

Format::

    {"video_01": {"anomalies": [{"fighting": [[10, 19], [40, 45]]},
                                {"running": [[15, 30]]}],
                  "length": 120},
     "video_02": {"anomalies": [], "length": 80}}

- ``length`` is the video's number of frames (an integer >= 1);
- ``anomalies`` is a list of objects ``{class: [[start, end], ...]}``; frame numbers are
  0-based indices and **``end`` is inclusive** (``[10, 19]`` marks frames 10 to 19, ten
  frames), as in the UBnormal / XD-Violence style annotation files;
- intervals may overlap, within a class and across classes: a frame covered by several
  classes carries all of them (its class tuple is sorted, each class once).

Errors (:class:`~xeval.errors.DatasetError` naming the file, the video and the
interval): not a JSON object, a missing or unknown key, a length or a bound that is not
an integer (``10.0``, ``"10"``, ``true`` are refused), a negative start, ``start > end``,
``end >= length``, an empty class name. :func:`check_lengths` compares the lengths with
a dataset's videos. The file is untrusted input: read with a size cap and
``json.loads`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xeval.data.video.base import VideoDataset
from xeval.data.video.xman import MAX_BYTES, read_json_file
from xeval.errors import DatasetError

__all__ = ["IntervalLabels", "check_lengths", "load_intervals"]

_KEYS = {"anomalies", "length"}


@dataclass(frozen=True)
class IntervalLabels:
    """One video's interval annotation.

    Attributes
    ----------
    labels:
        ``(length,)`` bool: the frame lies in some interval (anomalous).
    classes:
        One tuple of class names per frame (sorted, empty for a normal frame).
    intervals:
        ``((class, start, end), ...)`` as in the file (``end`` inclusive).
    source:
        The annotation file (named in errors).
    """

    labels: np.ndarray
    classes: tuple[tuple[str, ...], ...]
    intervals: tuple[tuple[str, int, int], ...] = ()
    source: str = ""

    @property
    def length(self) -> int:
        return len(self.labels)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_video(video: str, entry, where: str) -> tuple[int, list[tuple[str, int, int]]]:
    at = f"{where}: video {video!r}"
    if not isinstance(entry, dict):
        raise DatasetError(
            f"{at} holds a JSON {type(entry).__name__}; expected an object with keys "
            '"anomalies" and "length"'
        )
    missing, unknown = _KEYS - set(entry), set(entry) - _KEYS
    if missing or unknown:
        parts = ([f"lacks {sorted(missing)}"] if missing else []) + (
            [f"has unknown keys {sorted(unknown)}"] if unknown else []
        )
        raise DatasetError(f"{at} {' and '.join(parts)}; expected exactly 'anomalies' and 'length'")
    n = entry["length"]
    if not _is_int(n) or n < 1:
        raise DatasetError(f"{at}: length is {n!r}; expected a positive integer (frames)")
    anomalies = entry["anomalies"]
    if not isinstance(anomalies, list):
        raise DatasetError(
            f"{at}: anomalies is a JSON {type(anomalies).__name__}; expected a list of "
            "{class: [[start, end], ...]} objects"
        )
    out: list[tuple[str, int, int]] = []
    for i, group in enumerate(anomalies):
        if not isinstance(group, dict):
            raise DatasetError(
                f"{at}: anomalies[{i}] is {group!r}; expected an object "
                "{class: [[start, end], ...]}"
            )
        for cls, spans in group.items():
            if not cls.strip():
                raise DatasetError(f"{at}: anomalies[{i}] has an empty class name")
            if not isinstance(spans, list):
                raise DatasetError(
                    f"{at}: class {cls!r} holds {spans!r}; expected a list of [start, end] pairs"
                )
            for span in spans:
                if not (
                    isinstance(span, list) and len(span) == 2 and all(_is_int(x) for x in span)
                ):
                    raise DatasetError(
                        f"{at}: class {cls!r} has the interval {span!r}; expected [start, end] "
                        "with integer frame indices (end inclusive)"
                    )
                s, e = span
                if s < 0:
                    raise DatasetError(
                        f"{at}: class {cls!r} interval {span!r} starts at a negative frame"
                    )
                if s > e:
                    raise DatasetError(
                        f"{at}: class {cls!r} interval {span!r} starts after it ends "
                        "(start > end; end is inclusive)"
                    )
                if e >= n:
                    raise DatasetError(
                        f"{at}: class {cls!r} interval {span!r} ends at frame {e}, but the video "
                        f"has {n} frames (0..{n - 1}; end is inclusive)"
                    )
                out.append((cls, s, e))
    return n, out


def load_intervals(
    path: str | os.PathLike, *, max_bytes: int = MAX_BYTES
) -> dict[str, IntervalLabels]:
    """Read an interval annotation file (see the module docstring): ``{video:
    IntervalLabels}`` in file order. Errors name the file, the video and the interval."""
    p = Path(path)
    where = f"interval annotation file {p}"
    data = read_json_file(p, what="interval annotation file", max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise DatasetError(
            f"{where}: the top level is a JSON {type(data).__name__}; expected an object "
            '{video: {"anomalies": [...], "length": N}}'
        )
    if not data:
        raise DatasetError(f"{where}: holds no video")
    out: dict[str, IntervalLabels] = {}
    for video, entry in data.items():
        n, spans = _parse_video(video, entry, where)
        names = sorted({c for c, _, _ in spans})
        member = np.zeros((len(names), n), dtype=bool)
        for c, s, e in spans:
            member[names.index(c), s : e + 1] = True
        if names:
            # one class tuple per distinct membership pattern, shared by its frames
            patterns, inverse = np.unique(member.T, axis=0, return_inverse=True)
            tuples = [tuple(names[j] for j in np.flatnonzero(row)) for row in patterns]
            classes = tuple(tuples[i] for i in np.asarray(inverse).ravel())
        else:
            classes = ((),) * n
        out[video] = IntervalLabels(
            labels=member.any(axis=0),
            classes=classes,
            intervals=tuple(spans),
            source=str(p),
        )
    return out


def check_lengths(intervals: dict[str, IntervalLabels], dataset: VideoDataset) -> None:
    """Raise a :class:`DatasetError` (naming the file, the video and both frame counts)
    when an annotated video is not a video of ``dataset`` or its ``length`` differs from
    the video's ``n_frames``."""
    videos = {v.video_id: v for v in dataset.train + dataset.test}
    for vid, lab in intervals.items():
        where = f"interval annotation file {lab.source or '?'}"
        video = videos.get(vid)
        if video is None:
            known = sorted(videos)
            shown = known[:5] + (["..."] if len(known) > 5 else [])
            raise DatasetError(
                f"{where}: video {vid!r} is not a video of {dataset.name!r} (videos {shown})"
            )
        if lab.length != video.n_frames:
            raise DatasetError(
                f"{where}: video {vid!r} has length {lab.length} in the annotations but "
                f"{video.n_frames} frames in the dataset ({video.source or dataset.name})"
            )
