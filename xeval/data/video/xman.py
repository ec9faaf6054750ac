"""X-MAN reason labels: why each anomalous frame is anomalous.

X-MAN (Szymanowicz, Charles & Cipolla, "X-MAN: Explaining multiple sources of anomalies
in video", CVPR Workshops 2021; "Discrete neural representations for explainable
anomaly detection", WACV 2022) annotates the anomalous frames of UCSD Ped2, CUHK Avenue
and ShanghaiTech with reasons. One JSON file per base dataset: an object whose keys name
an anomalous video folder and a frame number, and whose values list the frame's reasons
as ``[coarse, fine]`` pairs::

    {"01_0014/120": [["action", "run / jog"]],
     "01_0014/121": [["action", "run / jog"], ["object", "bicycle"]]}

Only anomalous frames are listed. The reason vocabulary is read from the file (every
pair that occurs, sorted), never hard-coded.

Key formats (detected; every key of a file must use the same one, recorded as
:attr:`XmanLabels.key_format` and in the dataset's conventions):

- ``"<video>/<frame>"``, e.g. ``"01_0014/120"``, ``"Test004/083"``;
- ``"<video>/<frame>.<ext>"``, e.g. ``"Test004/083.tif"`` (one extension per file);
- ``"<video>_<frame>"``, e.g. ``"01_0014_120"``: the frame number is the last ``_``
  field, the video everything before it (no ``/``).

Frame numbers are those written in the dataset's own frame file names (UCSD's
``001.tif`` and ShanghaiTech's ``000.jpg`` are both the first frame of their video), so
:func:`attach_reasons` resolves a key's number against each video's
:attr:`~xeval.data.video.base.Video.frame_names` (the frame whose file-name number, the
last run of digits of its stem, equals the key's number) instead of assuming a base.
Frames of a container (frame names ``"<n>"``) resolve to ``n``.

The file is untrusted input: at most :data:`MAX_BYTES` are read, it is parsed with
``json.loads`` only, and every defect is a :class:`~xeval.errors.DatasetError` naming
the file and the key (and frame).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from xeval.data.video.base import Reason, ReasonVocabulary, Video, VideoDataset
from xeval.errors import DatasetError

__all__ = [
    "KEY_FORMATS",
    "MAX_BYTES",
    "XmanLabels",
    "attach_reasons",
    "frame_number",
    "load_xman",
    "read_json_file",
]

MAX_BYTES = 256 * 2**20
"""Largest label file read (bytes); a larger file is refused."""

KEY_FORMATS = ("<video>/<frame>", "<video>/<frame>.<ext>", "<video>_<frame>")
"""The key formats :func:`load_xman` recognises."""

_PATTERNS = (
    re.compile(r"(?P<video>.+)/(?P<frame>[0-9]+)"),
    re.compile(r"(?P<video>.+)/(?P<frame>[0-9]+)\.(?P<ext>[A-Za-z0-9]+)"),
    re.compile(r"(?P<video>[^/]+)_(?P<frame>[0-9]+)"),
)

_NUMBER = re.compile(r"([0-9]+)$")


def read_json_file(path: str | os.PathLike, *, what: str, max_bytes: int = MAX_BYTES):
    """The JSON value of ``path`` (UTF-8, at most ``max_bytes``), parsed with
    ``json.loads``; an object with a repeated key, invalid JSON or an unreadable file is
    a :class:`DatasetError` naming the file (``what`` says what the file is)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as e:
        raise DatasetError(f"{what} {p}: cannot be read ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise DatasetError(
            f"{what} {p}: larger than {max_bytes} bytes, the most xeval reads from a label file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{what} {p}: not UTF-8 text (byte {e.start})") from None

    def no_repeats(pairs):
        seen: dict = {}
        for k, v in pairs:
            if k in seen:
                raise DatasetError(f"{what} {p}: key {k!r} appears twice in one JSON object")
            seen[k] = v
        return seen

    try:
        return json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{what} {p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except RecursionError:
        raise DatasetError(f"{what} {p}: JSON nested too deeply") from None


@dataclass(frozen=True)
class XmanLabels:
    """The content of an X-MAN label file.

    Attributes
    ----------
    entries:
        ``{(video_id, frame_number): ((coarse, fine), ...)}``: frame numbers as written
        in the keys (file-name numbers, not indices), reasons in file order.
    vocabulary:
        Every reason of the file (:class:`ReasonVocabulary`, sorted).
    key_format:
        One of :data:`KEY_FORMATS`.
    path:
        The file.
    keys:
        ``{(video_id, frame_number): key}``: each entry's key as written (for errors).
    extension:
        The frame-file extension of ``"<video>/<frame>.<ext>"`` keys (else ``""``).
    """

    entries: Mapping[tuple[str, int], tuple[Reason, ...]]
    vocabulary: ReasonVocabulary
    key_format: str
    path: Path
    keys: Mapping[tuple[str, int], str] = field(default_factory=dict)
    extension: str = ""

    @property
    def videos(self) -> list[str]:
        """The videos with labelled frames (sorted)."""
        return sorted({v for v, _ in self.entries})


def _parse_key(key: str) -> tuple[int, re.Match] | None:
    for i, pat in enumerate(_PATTERNS):
        m = pat.fullmatch(key)
        if m:
            return i, m
    return None


def _parse_reasons(value, key: str, where: str) -> tuple[Reason, ...]:
    expected = 'expected a non-empty list of [coarse, fine] string pairs, e.g. [["action", "run"]]'
    if not isinstance(value, list):
        raise DatasetError(f"{where}: key {key!r} holds {type(value).__name__}; {expected}")
    if not value:
        raise DatasetError(
            f"{where}: key {key!r} has an empty reason list; X-MAN lists anomalous frames "
            "with at least one reason (leave a frame out instead)"
        )
    out: list[Reason] = []
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, str) and x.strip() for x in pair)
        ):
            raise DatasetError(f"{where}: key {key!r} holds the reason {pair!r}; {expected}")
        r = (pair[0], pair[1])
        if r in out:
            raise DatasetError(f"{where}: key {key!r} lists the reason {list(r)!r} twice")
        out.append(r)
    return tuple(out)


def load_xman(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> XmanLabels:
    """Read an X-MAN label file (see the module docstring): detect and check its key
    format, parse every frame's reasons and build the vocabulary. Errors name the file
    and the key."""
    p = Path(path)
    where = f"X-MAN label file {p}"
    data = read_json_file(p, what="X-MAN label file", max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise DatasetError(
            f"{where}: the top level is a JSON {type(data).__name__}; expected an object "
            'mapping "<video>/<frame>" keys to reason lists'
        )
    if not data:
        raise DatasetError(f"{where}: holds no labelled frame")
    first: dict[int, str] = {}
    entries: dict[tuple[str, int], tuple[Reason, ...]] = {}
    keys: dict[tuple[str, int], str] = {}
    extensions: dict[str, str] = {}
    for key, value in data.items():
        parsed = _parse_key(key)
        if parsed is None:
            raise DatasetError(
                f"{where}: key {key!r} is in none of the formats "
                f"{', '.join(repr(f) for f in KEY_FORMATS)} (e.g. '01_0014/120', "
                "'Test004/083.tif', '01_0014_120')"
            )
        fmt, m = parsed
        first.setdefault(fmt, key)
        if len(first) > 1:
            shown = "; ".join(f"{KEY_FORMATS[f]} (e.g. {k!r})" for f, k in sorted(first.items()))
            raise DatasetError(
                f"{where}: keys mix formats: {shown}; every key of a file must use one format"
            )
        if fmt == 1:
            ext = m.group("ext")
            extensions.setdefault(ext, key)
            if len(extensions) > 1:
                shown = ", ".join(f"{e!r} (e.g. {k!r})" for e, k in extensions.items())
                raise DatasetError(f"{where}: keys mix frame extensions: {shown}")
        digits = m.group("frame")
        if len(digits) > 12:
            raise DatasetError(f"{where}: key {key!r} has a frame number of {len(digits)} digits")
        entry = (m.group("video"), int(digits))
        if entry in entries:
            raise DatasetError(
                f"{where}: keys {keys[entry]!r} and {key!r} both name frame {entry[1]} of "
                f"video {entry[0]!r}"
            )
        entries[entry] = _parse_reasons(value, key, where)
        keys[entry] = key
    (fmt,) = first
    return XmanLabels(
        entries=entries,
        vocabulary=ReasonVocabulary.from_labels(entries.values()),
        key_format=KEY_FORMATS[fmt],
        path=p,
        keys=keys,
        extension=next(iter(extensions), ""),
    )


def frame_number(name: str) -> int | None:
    """The number a frame file name carries: the last run of digits of its stem
    (``"083.tif"`` -> 83, ``"img_0007.jpg"`` -> 7, ``"12"`` -> 12); None without one."""
    stem = name.rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    m = _NUMBER.search(stem)
    return int(m.group(1)) if m else None


def _number_index(video: Video) -> tuple[dict[int, int], dict[int, list[int]]]:
    """``{file-name number: frame index}`` of a video, and the numbers several frames
    share ({number: indices})."""
    names = video.frame_names or [str(t) for t in range(video.n_frames)]
    index: dict[int, int] = {}
    shared: dict[int, list[int]] = {}
    for t, name in enumerate(names):
        num = frame_number(name)
        if num is None:
            continue
        if num in index:
            shared.setdefault(num, [index[num]]).append(t)
        else:
            index[num] = t
    return index, shared


def attach_reasons(dataset: VideoDataset, labels: XmanLabels) -> VideoDataset:
    """``dataset`` with the X-MAN reasons of ``labels``: every test video's
    :attr:`~xeval.data.video.base.Video.reasons` (``{frame index: reasons}``, empty for
    a video without labelled frames), the dataset's ``vocabulary`` and a
    ``"reason_labels"`` convention (file, key format, how frame numbers were resolved,
    coverage of the anomalous frames). The input dataset is not modified.

    Errors (:class:`DatasetError` naming the file, the key and the frame): a key naming
    a video that is not a test video, a frame number that no frame file of the video
    carries (or that several carry), a frame the dataset labels normal."""
    where = f"X-MAN label file {labels.path}"
    tests = {v.video_id: v for v in dataset.test}
    by_video: dict[str, dict[int, tuple[Reason, ...]]] = {v: {} for v in tests}
    numbering: dict[str, tuple[dict[int, int], dict[int, list[int]]]] = {}
    for (vid, num), reasons in labels.entries.items():
        key = labels.keys.get((vid, num), f"{vid}/{num}")
        video = tests.get(vid)
        if video is None:
            train = {v.video_id for v in dataset.train}
            known = sorted(tests)
            shown = known[:5] + (["..."] if len(known) > 5 else [])
            kind = "a training video (normal throughout)" if vid in train else "unknown"
            raise DatasetError(
                f"{where}: key {key!r} names video {vid!r}, which is {kind}; the test videos "
                f"of {dataset.name!r} are {shown}"
            )
        if vid not in numbering:
            numbering[vid] = _number_index(video)
        index, shared = numbering[vid]
        if num in shared:
            names = [video.frame_name(t) for t in shared[num]]
            raise DatasetError(
                f"{where}: key {key!r}: frame number {num} is carried by several frames of "
                f"video {vid!r} ({names}); cannot tell which one is meant"
            )
        t = index.get(num)
        if t is None:
            nums = sorted(index)
            span = f"{nums[0]}..{nums[-1]}" if nums else "none"
            raise DatasetError(
                f"{where}: key {key!r}: video {vid!r} ({video.source or 'no source'}) has no "
                f"frame numbered {num} (its {video.n_frames} frame files are numbered {span})"
            )
        if video.labels is not None and not bool(np.asarray(video.labels)[t]):
            raise DatasetError(
                f"{where}: key {key!r}: frame {t} ({video.frame_name(t)}) of video {vid!r} is "
                "labelled normal in the dataset; X-MAN lists anomalous frames only"
            )
        by_video[vid][t] = reasons
    test = [replace(v, reasons=dict(sorted(by_video[v.video_id].items()))) for v in dataset.test]
    n_anomalous = sum(int(np.count_nonzero(v.labels)) for v in test if v.labels is not None)
    n_labelled = len(labels.entries)
    convention = (
        f"X-MAN {labels.path.name}: keys {labels.key_format!r}"
        + (f" ({labels.extension})" if labels.extension else "")
        + ", frame numbers matched to the numbers in the frame file names; "
        f"{n_labelled} frames with reasons of {n_anomalous} anomalous test frames; "
        f"{len(labels.vocabulary.fine)} fine reasons in {len(labels.vocabulary.coarse)} "
        "coarse classes (read from the file)"
    )
    return replace(
        dataset,
        test=test,
        vocabulary=labels.vocabulary,
        conventions={**dict(dataset.conventions), "reason_labels": convention},
    )
