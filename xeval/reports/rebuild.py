"""Rebuild the report of a finished run from its files, without recomputing anything.

A finished run folder holds the tables of the run (``results.csv``, ``per_image.csv`` or
``per_frame.csv``, ``verdicts.csv``, ``ranks.csv``, ``manifest.json``) and, since this
module exists, everything else its report was drawn from:

- image runs: ``curves.csv`` (the downsampled ROC / PRO / faithfulness curves) and
  ``gallery.npz`` (the gallery's images, masks and maps);
- video runs: ``curves.csv`` (RBDC / TBDC curves, x and y as JSON lists) and
  ``video_report.npz`` (jackknife replicates behind the verdicts, reason scores, and
  the filmstrip's frames, masks, tracks and maps).

Both ``.npz`` files are written with :func:`numpy.savez_compressed` and read with
``allow_pickle=False``; their metadata is a JSON document stored inside, as a
unicode array named ``meta``. Every file of a run folder is treated as untrusted
input: its size is bounded (:data:`MAX_BYTES`), its columns, keys, dtypes and shapes
are checked, and anything unexpected is an :class:`~xeval.errors.InputError` naming the
file and what was expected.

:func:`rebuild_report` writes the report again from these files: the HTML report
(``index.html``, ``figures/``, ``results.md`` and whatever else the report writer
makes), the Markdown alone, or the LaTeX tables (``tables.tex``). The run's tables are
never rewritten: in place, only report files are replaced (atomically); into another
folder, the tables are copied byte for byte next to the report that links them.
A run written before these files existed is rebuilt as far as possible, with an
:class:`~xeval.errors.MissingDataWarning` naming what is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from xeval._io import atomic_write_bytes, atomic_write_text
from xeval.errors import InputError, MissingDataWarning

__all__ = [
    "FORMATS",
    "StoredVideoRun",
    "load_run",
    "load_video_run",
    "rebuild_report",
    "save_report_inputs",
    "save_video_inputs",
]

CURVES_FILE = "curves.csv"
GALLERY_FILE = "gallery.npz"
VIDEO_FILE = "video_report.npz"
STORE_VERSION = 1
"""Version of the layout of :data:`GALLERY_FILE` and :data:`VIDEO_FILE`."""

MAX_BYTES = {
    ".csv": 1 << 30,
    ".json": 64 << 20,
    ".npz": 1 << 30,
}
"""Largest file read, by suffix (bytes): a larger file is refused, never loaded."""
MAX_NPZ_UNCOMPRESSED = 4 << 30
"""Largest total uncompressed size of the arrays of an ``.npz`` file (bytes)."""

IMAGE_TABLES = ("results.csv", "manifest.json", "per_image.csv", "verdicts.csv", "ranks.csv")
VIDEO_TABLES = ("results.csv", "manifest.json", "per_frame.csv", "verdicts.csv")
DATA_FILES = frozenset({*IMAGE_TABLES, *VIDEO_TABLES, CURVES_FILE, GALLERY_FILE, VIDEO_FILE})
"""Files of a run that a rebuild never rewrites (copied byte for byte to ``out_dir``)."""

PER_FRAME_COLUMNS = (
    "detector", "explainer", "control", "video", "frame", "frame_name", "label", "score"
)  # fmt: skip
STAGING_PREFIX = ".xeval-rebuild-"
"""The report is written into a hidden folder of this prefix inside the output folder,
then each file is moved into place (atomically, same file system)."""
REPORT_TASKS = ("image", "video")
"""The kinds of run (``manifest.json`` ``task``; none = image) whose report is rebuilt."""
FORMATS = ("html", "md", "latex")
"""What :func:`rebuild_report` can write: the full HTML report (index.html, figures,
results.md and the other report files), ``results.md`` alone, or ``tables.tex``."""


# ================================================================== reading, checked
def _checked_size(path: Path) -> int:
    """The size of ``path``, after refusing a symbolic link (a run's files are written
    by xeval, never linked) and a file larger than :data:`MAX_BYTES` allows."""
    if path.is_symlink():
        raise InputError(
            f"{path}: a symbolic link; a run's files are regular files written by xeval "
            "(refusing to follow it)"
        )
    limit = MAX_BYTES.get(path.suffix, 64 << 20)
    size = path.stat().st_size
    if size > limit:
        raise InputError(
            f"{path}: {size} bytes, larger than the {limit} bytes a run's {path.suffix} file "
            "may have; refusing to read it"
        )
    return size


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: missing; expected {what}")
    _checked_size(path)
    return path


def read_manifest(path: Path) -> dict:
    """``manifest.json`` as a dict (an :class:`InputError` naming the file otherwise)."""
    _require_file(path, "the run's manifest (a JSON object written by xeval)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc}); expected the run's manifest") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise InputError(
            f"{path}: expected a JSON object with a 'config' object (a manifest written by "
            f"xeval), got {type(manifest).__name__}"
        )
    return manifest


_INT = re.compile(r"[+-]?\d+")


def read_table(path: Path, *, strings: tuple[str, ...] = (), required: tuple[str, ...] = ()):
    """A CSV table written by xeval, read exactly: the ``strings`` columns (and columns
    ending in ``" excluded"``) stay text (``""`` included); columns of only ``True`` /
    ``False`` become bool; columns of integers int64; other columns that parse as
    numbers float64 (``""`` -> NaN), converted with Python's correctly rounded
    ``float`` so every value equals the one written. ``required`` columns must exist
    (an empty file is an empty table with those columns)."""
    _checked_size(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:  # an empty table is written as an empty line
        return pd.DataFrame(columns=list(required))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({exc})") from exc
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(
            f"{path}: lacks columns {missing}; expected at least {list(required)} "
            f"(found {list(raw.columns)})"
        )
    out = {}
    for col in raw.columns:
        values = raw[col]
        if col in strings or str(col).endswith(" excluded"):
            out[col] = values.astype(object)
        elif len(values) and values.isin(["True", "False"]).all():
            out[col] = values == "True"
        elif len(values) and values.map(lambda s: bool(_INT.fullmatch(s))).all():
            out[col] = values.astype(np.int64)
        else:
            try:
                out[col] = values.replace("", "nan").astype(np.float64)
            except ValueError:
                out[col] = values.astype(object)
    return pd.DataFrame(out, index=raw.index, columns=raw.columns)


def _open_npz(path: Path):
    """``np.load(path, allow_pickle=False)`` after checking the archive's size, members
    and uncompressed size; an :class:`InputError` naming the file otherwise."""
    _checked_size(path)
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a numpy .npz archive ({exc})") from exc
    total = sum(i.file_size for i in infos)
    if total > MAX_NPZ_UNCOMPRESSED:
        raise InputError(
            f"{path}: {total} bytes of arrays once decompressed, more than the "
            f"{MAX_NPZ_UNCOMPRESSED} allowed; refusing to read it"
        )
    bad = [i.filename for i in infos if not i.filename.endswith(".npy")]
    if bad or "meta.npy" not in {i.filename for i in infos}:
        raise InputError(
            f"{path}: expected .npy members including 'meta' (written by xeval), got "
            f"{[i.filename for i in infos][:10]}"
        )
    return np.load(path, allow_pickle=False)


class _Arrays:
    """Checked access to the arrays of an open ``.npz`` (errors name the file)."""

    def __init__(self, path: Path, npz, kind: str) -> None:
        self.path, self.npz = path, npz
        meta = self.get("meta", kinds="U", ndim=0)
        try:
            self.meta = json.loads(str(meta[()]))
        except (ValueError, RecursionError) as exc:
            raise InputError(f"{path}: its 'meta' entry is not JSON ({exc})") from exc
        if not isinstance(self.meta, dict) or self.meta.get("format") != kind:
            raise InputError(f"{path}: expected an xeval {kind!r} file (meta.format)")
        if self.meta.get("version") != STORE_VERSION:
            raise InputError(
                f"{path}: layout version {self.meta.get('version')!r}; this xeval reads "
                f"version {STORE_VERSION}"
            )

    def get(self, name: str, *, kinds: str, ndim: int | tuple[int, ...]) -> np.ndarray:
        try:
            a = self.npz[name]
        except KeyError:
            raise InputError(f"{self.path}: entry {name!r} is missing") from None
        except ValueError as exc:  # object arrays need pickle: refused
            raise InputError(f"{self.path}: entry {name!r} cannot be read ({exc})") from exc
        ndims = (ndim,) if isinstance(ndim, int) else ndim
        if a.dtype.kind not in kinds or a.ndim not in ndims:
            raise InputError(
                f"{self.path}: entry {name!r} has dtype {a.dtype} and {a.ndim} dimensions; "
                f"expected dtype kind in {kinds!r} and {ndims} dimensions"
            )
        return a

    def field(self, entry: dict, key: str, kind: type | tuple, where: str):
        if not isinstance(entry, dict) or not isinstance(entry.get(key), kind):
            raise InputError(f"{self.path}: {where}: {key!r} missing or not {kind}")
        return entry[key]


def _items(arrays: _Arrays, key: str) -> list:
    items = arrays.meta.get(key)
    if not isinstance(items, list):
        raise InputError(f"{arrays.path}: meta.{key} must be a list")
    return items


# ============================================================= writing (engine side)
def _npz_bytes(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return buf.getvalue()


def _compact(a: np.ndarray) -> np.ndarray:
    """``a`` as float32 when that loses nothing (values read back are identical)."""
    a = np.asarray(a)
    if a.dtype == np.float64:
        a32 = a.astype(np.float32)
        if np.array_equal(a32.astype(np.float64), a, equal_nan=True):
            return a32
    return a


#: Integer encodings of images read from 8- and 16-bit files (as
#: :func:`xeval.data.io.read_image` makes them: ``float32(pixel) / float32(max)``).
_PIXEL_CODES = {"u8": (np.uint8, 255.0), "u16": (np.uint16, 65535.0)}


def _decode_pixels(a: np.ndarray, code: str) -> np.ndarray:
    _, top = _PIXEL_CODES[code]
    return a.astype(np.float32) / np.float32(top)


def _encode_image(image: np.ndarray) -> tuple[np.ndarray, str]:
    """``(stored array, code)``: the image as 8- or 16-bit integers when decoding them
    gives back exactly the same values (code ``"u8"`` / ``"u16"``), else as float
    (:func:`_compact`, code ``""``). A gallery image is 4 to 8 times smaller this way."""
    image = np.asarray(image)
    if image.dtype.kind == "f" and image.size and np.isfinite(image).all():
        for code, (dtype, top) in _PIXEL_CODES.items():
            if image.min() < 0 or image.max() > 1:
                break
            ints = np.rint(image * top).astype(dtype)
            if np.array_equal(_decode_pixels(ints, code).astype(image.dtype), image):
                return ints, code
    return _compact(image), ""


def curves_csv(curves: pd.DataFrame) -> str:
    """A curves table as CSV text (every float written with its shortest exact repr)."""
    return curves.to_csv(index=False, lineterminator="\n")


def save_report_inputs(report, out: str | os.PathLike) -> dict[str, Path]:
    """Write what an image report is drawn from and the run's tables do not hold:
    ``curves.csv`` and ``gallery.npz`` (atomically). Returns name -> path."""
    out = Path(out)
    items, arrays = [], {}
    values = np.array([g.value for g in report.gallery], dtype=np.float64)
    for i, g in enumerate(report.gallery):
        items.append(
            {
                "detector": str(g.detector),
                "explainer": str(g.explainer),
                "category": str(g.category),
                "sample_id": str(g.sample_id),
                "rank": str(g.rank),
                "metric": str(g.metric),
            }
        )
        arrays[f"image_{i}"], items[-1]["pixels"] = _encode_image(g.image)
        arrays[f"mask_{i}"] = np.asarray(g.mask, dtype=bool)
        arrays[f"amap_{i}"] = _compact(g.amap)
    meta = {"format": "gallery", "version": STORE_VERSION, "items": items}
    return {
        CURVES_FILE: atomic_write_text(out / CURVES_FILE, curves_csv(report.curves)),
        GALLERY_FILE: atomic_write_bytes(
            out / GALLERY_FILE, _npz_bytes(meta, {"value": values, **arrays})
        ),
    }


def save_video_inputs(res, ds, out: str | os.PathLike) -> dict[str, Path]:
    """Write what a video report is drawn from and the run's tables do not hold:
    ``curves.csv`` and ``video_report.npz`` (the jackknife replicates, the reason
    scores, the vocabulary and, for the filmstrip, the chosen frames with their masks,
    tracks, true reasons and every explainer's map). Returns name -> path."""
    out = Path(out)
    extras = res.extras
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"format": "video report", "version": STORE_VERSION}
    meta["replicates"] = []
    for i, ((det, exp, label), reps) in enumerate(extras.get("replicates", {}).items()):
        meta["replicates"].append([det, exp, label])
        arrays[f"rep_{i}"] = np.asarray(reps, dtype=np.float64)
    meta["reason_scores"] = []
    for i, ((det, exp), (yt, ys, lab)) in enumerate(extras.get("reason_scores", {}).items()):
        meta["reason_scores"].append([det, exp])
        arrays[f"rs_true_{i}"] = np.asarray(yt, dtype=bool)
        arrays[f"rs_score_{i}"] = np.asarray(ys)
        arrays[f"rs_label_{i}"] = np.asarray(lab, dtype=bool)
    picks = {str(v): [int(f) for f in fs] for v, fs in extras.get("filmstrip_frames", {}).items()}
    meta["filmstrip_frames"] = [[v, fs] for v, fs in picks.items()]  # in the run's order
    meta["filmstrip"] = []
    k = 0
    for (det, exp), film in extras.get("filmstrip", {}).items():
        for (vid, f), item in film.items():
            meta["filmstrip"].append(
                {
                    "detector": det,
                    "explainer": exp,
                    "video": vid,
                    "frame": int(f),
                    "score": float(item["score"]),
                    "boxes": item["boxes"] is not None,
                    "reasons": item["reasons"] is not None,
                }
            )
            arrays[f"film_map_{k}"] = np.asarray(item["map"])
            if item["boxes"] is not None:
                arrays[f"film_boxes_{k}"] = np.asarray(item["boxes"], dtype=np.float64)
            if item["reasons"] is not None:
                arrays[f"film_reasons_{k}"] = np.asarray(item["reasons"], dtype=np.float64)
            k += 1
    meta["vocabulary"] = [list(r) for r in ds.vocabulary.fine] if ds.vocabulary else None
    videos = []
    by_id = {v.video_id: v for v in ds.test}
    for j, (vid, frames) in enumerate(picks.items()):
        v = by_id[vid]
        info = {
            "video": vid,
            "n_frames": int(v.n_frames),
            "frame_size": [int(x) for x in v.frame_size],
            "frames": frames,
            "reasons": {str(f): [list(r) for r in (v.reasons or {}).get(f, ())] for f in frames},
            "masks": v.read_masks is not None,
        }
        for f in frames:
            arrays[f"frame_{j}_{f}"] = np.asarray(v.frames(f, f + 1)[0])
            if v.read_masks is not None:
                arrays[f"mask_{j}_{f}"] = np.asarray(v.masks(f, f + 1)[0], dtype=bool)
        if v.regions is not None and len(v.regions):
            r = np.asarray(v.regions, dtype=np.float64)
            arrays[f"regions_{j}"] = r[np.isin(r[:, 0], frames)]
        videos.append(info)
    meta["videos"] = videos
    return {
        CURVES_FILE: atomic_write_text(out / CURVES_FILE, curves_csv(res.curves)),
        VIDEO_FILE: atomic_write_bytes(out / VIDEO_FILE, _npz_bytes(meta, arrays)),
    }


# ===================================================================== image runs
def _warn_missing(path: Path, what: str) -> None:
    warnings.warn(
        f"{path} is missing (a run written by an older xeval?): the rebuilt report has no {what}",
        MissingDataWarning,
        stacklevel=3,
    )


def _check_finished(run: Path) -> None:
    if not run.exists():
        raise InputError(f"run folder {str(run)!r} does not exist")
    if not run.is_dir():
        raise InputError(f"run folder {str(run)!r} is not a folder")
    if not (run / "results.csv").is_file():
        hint = (
            " (it holds saved units of an unfinished run: finish it with `xeval run` "
            "on the same configuration and --out)"
            if (run / ".partial").is_dir()
            else ""
        )
        raise InputError(
            f"{run}: not a finished xeval run: results.csv is missing{hint}; expected a "
            "folder written by `xeval run` / `xeval demo` (results.csv, manifest.json, ...)"
        )


def run_kind(run_dir: str | os.PathLike) -> str:
    """``"image"`` or ``"video"``: which kind of finished run ``run_dir`` holds."""
    run = Path(run_dir)
    _check_finished(run)
    task = read_manifest(run / "manifest.json").get("task", "image")
    if task not in REPORT_TASKS:
        raise InputError(
            f"{run / 'manifest.json'}: a run of task {task!r}; xeval report rebuilds the "
            f"reports of {list(REPORT_TASKS)} runs"
        )
    return task


def _read_results(path: Path) -> pd.DataFrame:
    from xeval.reports.data import _OPTIONAL, check_results
    from xeval.reports.writer import read_results_csv
    from xeval.results import RESULT_COLUMNS

    _require_file(path, "the run's long results table")
    try:
        header = list(pd.read_csv(path, nrows=0, encoding="utf-8").columns)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path}: not a readable CSV table ({exc})") from exc
    required = [c for c in RESULT_COLUMNS if c not in _OPTIONAL]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path}: lacks columns {missing}; a results table written by xeval has "
            f"{required} (found {header})"
        )
    try:
        df = read_results_csv(path)
        check_results(df)
    except (ValueError, KeyError, TypeError, pd.errors.ParserError, InputError) as exc:
        raise InputError(f"{path}: not a results table written by xeval ({exc})") from exc
    return df


def _optional_table(path: Path, what: str, *, strings, required, warn: bool = True):
    if not path.is_file():
        if warn:
            _warn_missing(path, what)
        return None
    return read_table(path, strings=strings, required=required)


def _read_gallery(path: Path) -> list:
    from xeval.reports.data import GalleryItem

    with _open_npz(path) as npz:
        arrays = _Arrays(path, npz, "gallery")
        items = _items(arrays, "items")
        values = arrays.get("value", kinds="f", ndim=1)
        if values.shape != (len(items),):
            raise InputError(f"{path}: {values.size} values for {len(items)} gallery items")
        out = []
        for i, entry in enumerate(items):
            where = f"gallery item {i}"
            fields = {
                k: arrays.field(entry, k, str, where)
                for k in ("detector", "explainer", "category", "sample_id", "rank", "metric")
            }
            code = entry.get("pixels", "")
            if code not in ("", *_PIXEL_CODES):
                raise InputError(
                    f"{path}: {where}: pixels {code!r}; expected one of {['', *_PIXEL_CODES]}"
                )
            image = arrays.get(f"image_{i}", kinds="u" if code else "f", ndim=(2, 3))
            if code:
                if image.dtype != _PIXEL_CODES[code][0]:
                    raise InputError(f"{path}: {where}: pixels {code!r} stored as {image.dtype}")
                image = _decode_pixels(image, code)
            try:
                out.append(
                    GalleryItem(
                        **fields,
                        value=float(values[i]),
                        image=image,
                        mask=arrays.get(f"mask_{i}", kinds="b", ndim=2),
                        amap=arrays.get(f"amap_{i}", kinds="fiu", ndim=2),
                    )
                )
            except InputError as exc:
                if str(path) in str(exc):
                    raise
                raise InputError(f"{path}: {where}: {exc}") from exc
    return out


def _report_settings(manifest: dict, path: Path, keys: tuple[str, ...]) -> dict:
    report = manifest["config"].get("report", {})
    if not isinstance(report, dict):
        raise InputError(f"{path}: config.report must be an object, got {report!r}")
    out = {}
    for k in keys:
        v = report.get(k, True)
        if not isinstance(v, bool):
            raise InputError(f"{path}: config.report.{k} must be true or false, got {v!r}")
        out[k] = v
    return out


def load_run(run_dir: str | os.PathLike):
    """The :class:`~xeval.reports.ReportData` of a finished image run, read from its
    files (nothing is recomputed). Missing optional inputs (``curves.csv``,
    ``gallery.npz``, ``per_image.csv`` of runs written by an older xeval) give a
    :class:`~xeval.errors.MissingDataWarning` and an empty part; a missing or malformed
    required file (``results.csv``, ``manifest.json``) is an :class:`InputError` naming
    it."""
    from xeval.reports.data import CURVE_COLUMNS, ReportData

    run = Path(run_dir)
    _check_finished(run)
    manifest = read_manifest(run / "manifest.json")
    if manifest.get("task", "image") != "image":
        raise InputError(
            f"{run}: a {manifest.get('task')!r} run, not an image run (a video run is read "
            "with load_video_run)"
        )
    results = _read_results(run / "results.csv")
    names = ("detector", "explainer")
    verdicts = _optional_table(
        run / "verdicts.csv",
        "verdicts",
        strings=(*names, "metric", "control", "verdict", "meaning"),
        required=(*names, "metric", "control", "verdict"),
        warn=False,
    )
    ranks = _optional_table(run / "ranks.csv", "ranks", strings=names, required=names, warn=False)
    per_image = _optional_table(
        run / "per_image.csv",
        "subset section (per-image table)",
        strings=("category", *names, "id", "defect", "subsets"),
        required=("category", *names, "id"),
    )
    curves = None
    if (run / CURVES_FILE).is_file():
        curves = read_table(
            run / CURVES_FILE,
            strings=("detector", "explainer", "category", "curve"),
            required=tuple(CURVE_COLUMNS),
        )
        for col in ("x", "y", "y_low", "y_high"):
            if col in curves and curves[col].dtype.kind not in "fi":
                raise InputError(f"{run / CURVES_FILE}: column {col!r} must hold numbers")
    else:
        _warn_missing(run / CURVES_FILE, "ROC / PRO / faithfulness curves")
    settings = _report_settings(manifest, run / "manifest.json", ("gallery",))
    gallery = []
    if (run / GALLERY_FILE).is_file():
        gallery = _read_gallery(run / GALLERY_FILE)
    elif settings["gallery"]:
        _warn_missing(run / GALLERY_FILE, "image gallery")
    name = manifest["config"].get("name", "")
    return ReportData(
        results=results,
        curves=curves,
        gallery=gallery,
        manifest=manifest,
        title=f"xeval report: {name}",
        verdicts=verdicts,
        ranks=ranks,
        per_image=per_image,
    )


# ===================================================================== video runs
@dataclass
class StoredVideoRun:
    """What a video report is drawn from, read back from a run folder: ``res`` (a
    :class:`~xeval.engine.video.VideoRunResult` with the stored extras), ``ds`` (a
    :class:`~xeval.data.video.base.VideoDataset` whose test videos hold only the
    filmstrip's frames), ``cfg`` (name and report settings), ``verdicts`` (the run's
    verdicts.csv, None when missing) and ``missing`` (inputs the folder lacks)."""

    res: object
    ds: object
    cfg: object
    verdicts: pd.DataFrame | None = None
    missing: list[str] = field(default_factory=list)


def _stored_video(info: dict, frames: dict, masks: dict, regions, path: Path):
    from xeval.data.video.base import Video

    vid = info["video"]

    def read(store):
        def _read(a: int, b: int) -> np.ndarray:
            if b != a + 1 or a not in store:
                raise InputError(f"{path}: frame {a} of video {vid!r} is not stored")
            return store[a][None]

        return _read

    reasons = {int(f): tuple(tuple(r) for r in rs) for f, rs in info["reasons"].items()}
    return Video(
        video_id=vid,
        n_frames=int(info["n_frames"]),
        frame_size=tuple(int(x) for x in info["frame_size"]),
        read=read(frames),
        read_masks=read(masks) if info["masks"] else None,
        regions=regions,
        reasons=reasons,
        source=f"{path} (stored frames)",
    )


def _read_video_store(path: Path, res):
    from xeval.data.video.base import ReasonVocabulary, VideoDataset

    with _open_npz(path) as npz:
        a = _Arrays(path, npz, "video report")
        try:
            replicates = {
                tuple(str(x) for x in key): a.get(f"rep_{i}", kinds="f", ndim=1)
                for i, key in enumerate(_items(a, "replicates"))
            }
            reason_scores = {
                tuple(str(x) for x in key): (
                    a.get(f"rs_true_{i}", kinds="b", ndim=2),
                    a.get(f"rs_score_{i}", kinds="fi", ndim=2),
                    a.get(f"rs_label_{i}", kinds="b", ndim=1),
                )
                for i, key in enumerate(_items(a, "reason_scores"))
            }
            film: dict = {}
            for k, e in enumerate(_items(a, "filmstrip")):
                where = f"filmstrip item {k}"
                key = (a.field(e, "detector", str, where), a.field(e, "explainer", str, where))
                frame = (a.field(e, "video", str, where), a.field(e, "frame", int, where))
                film.setdefault(key, {})[frame] = {
                    "map": a.get(f"film_map_{k}", kinds="fiu", ndim=2),
                    "score": float(a.field(e, "score", (int, float), where)),
                    "boxes": a.get(f"film_boxes_{k}", kinds="f", ndim=(1, 2))
                    if a.field(e, "boxes", bool, where)
                    else None,
                    "reasons": a.get(f"film_reasons_{k}", kinds="f", ndim=1)
                    if a.field(e, "reasons", bool, where)
                    else None,
                }
            picks = {str(v): [int(f) for f in fs] for v, fs in _items(a, "filmstrip_frames")}
            voc = a.meta.get("vocabulary")
            vocabulary = ReasonVocabulary(tuple((str(c), str(f)) for c, f in voc)) if voc else None
            videos = []
            for j, info in enumerate(_items(a, "videos")):
                where = f"video {j}"
                for key, kind in (
                    ("video", str),
                    ("n_frames", int),
                    ("frame_size", list),
                    ("frames", list),
                    ("reasons", dict),
                    ("masks", bool),
                ):
                    a.field(info, key, kind, where)
                frames = {
                    int(f): a.get(f"frame_{j}_{f}", kinds="u", ndim=3) for f in info["frames"]
                }
                masks = (
                    {int(f): a.get(f"mask_{j}_{f}", kinds="b", ndim=2) for f in info["frames"]}
                    if info["masks"]
                    else {}
                )
                regions = (
                    a.get(f"regions_{j}", kinds="f", ndim=2) if f"regions_{j}" in npz else None
                )
                videos.append(_stored_video(info, frames, masks, regions, path))
        except (TypeError, ValueError, KeyError) as exc:
            raise InputError(f"{path}: malformed ({type(exc).__name__}: {exc})") from exc
    res.extras.update(
        replicates=replicates,
        reason_scores=reason_scores,
        filmstrip=film,
        filmstrip_frames=picks,
    )
    return VideoDataset(name="stored", root=None, train=[], test=videos, vocabulary=vocabulary)


def load_video_run(run_dir: str | os.PathLike) -> StoredVideoRun:
    """What the video report of a finished video run is drawn from, read from its files
    (nothing is recomputed). Without ``curves.csv`` / ``video_report.npz`` (runs written
    by an older xeval) the report is rebuilt without RBDC/TBDC curves, verdict standard
    errors, reason figures and the filmstrip, with a
    :class:`~xeval.errors.MissingDataWarning` each."""
    from xeval.data.video.base import VideoDataset
    from xeval.engine.video import VideoRunResult

    run = Path(run_dir)
    _check_finished(run)
    manifest = read_manifest(run / "manifest.json")
    if manifest.get("task") != "video":
        raise InputError(f"{run}: not a video run (manifest.task is not 'video')")
    if not isinstance(manifest.get("dataset"), dict) or not isinstance(
        manifest.get("conventions"), dict
    ):
        raise InputError(
            f"{run / 'manifest.json'}: a video manifest needs 'dataset' and 'conventions' objects"
        )
    metrics = manifest["conventions"].get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(d, dict) and {"params", "note"} <= set(d) for d in metrics.values()
    ):
        raise InputError(
            f"{run / 'manifest.json'}: conventions.metrics must map each metric label to "
            "an object with 'params' and 'note'"
        )
    need = ("name", "train_videos", "test_videos", "test_frames", "anomalous_test_frames")
    lacking = [k for k in need if k not in manifest["dataset"]]
    if lacking:
        raise InputError(
            f"{run / 'manifest.json'}: dataset lacks {lacking}; a video manifest's dataset "
            f"has {list(need)}"
        )
    results = _read_results(run / "results.csv")
    per_frame = _optional_table(
        run / "per_frame.csv",
        "frame ROC figures",
        strings=("detector", "explainer", "video", "frame_name"),
        required=("detector", "explainer", "video", "label", "score"),
    )
    missing: list[str] = []
    curves = pd.DataFrame()
    if (run / CURVES_FILE).is_file():
        curves = read_table(
            run / CURVES_FILE,
            strings=("detector", "explainer", "metric", "kind", "x", "y"),
            required=("detector", "explainer", "control", "kind", "x", "y"),
        )
    else:
        missing.append(CURVES_FILE)
        _warn_missing(run / CURVES_FILE, "RBDC / TBDC curves")
    verdicts = _optional_table(
        run / "verdicts.csv",
        "verdicts (recomputed from the stored jackknife replicates instead)",
        strings=("detector", "explainer", "metric", "family", "best_control", "verdict"),
        required=("detector", "explainer", "metric", "family", "verdict"),
    )
    if per_frame is None:
        per_frame = pd.DataFrame(columns=list(PER_FRAME_COLUMNS))
    res = VideoRunResult(
        results=results,
        per_frame=per_frame,
        curves=curves,
        manifest=manifest,
        out_dir=run,
        extras={"replicates": {}, "reason_scores": {}, "filmstrip": {}, "filmstrip_frames": {}},
    )
    if (run / VIDEO_FILE).is_file():
        ds = _read_video_store(run / VIDEO_FILE, res)
    else:
        missing.append(VIDEO_FILE)
        _warn_missing(run / VIDEO_FILE, "verdict standard errors, reason figures, filmstrip")
        ds = VideoDataset(name="stored", root=None, train=[], test=[])
    settings = _report_settings(manifest, run / "manifest.json", ("figures", "filmstrip"))
    cfg = SimpleNamespace(
        name=str(manifest["config"].get("name", "")), report=SimpleNamespace(**settings)
    )
    return StoredVideoRun(res=res, ds=ds, cfg=cfg, verdicts=verdicts, missing=missing)


# ======================================================================== rebuild
def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"formats: {bad or formats!r} not known; expected some of {FORMATS}")
    return tuple(dict.fromkeys(formats))


def _latex(report) -> str:
    try:
        from xeval.reports.latex import latex_tables
    except ImportError as exc:
        raise InputError(
            "format 'latex': this xeval has no LaTeX table writer (xeval.reports.latex); "
            f"use one of {tuple(f for f in FORMATS if f != 'latex')}"
        ) from exc
    return latex_tables(report)


def _image_report(run: Path, staging: Path, formats: tuple[str, ...]) -> list[str]:
    from xeval.reports import write_report

    report = load_run(run)
    figures = _report_settings(report.manifest, run / "manifest.json", ("figures",))["figures"]
    made: list[str] = []
    if "html" in formats:
        made += write_report(report, staging, figures=figures)
    elif "md" in formats:
        write_report(report, staging / ".md", figures=False)
        os.replace(staging / ".md" / "results.md", staging / "results.md")
        made.append("results.md")
    if "latex" in formats:
        atomic_write_text(staging / "tables.tex", _latex(report))
        made.append("tables.tex")
    return made


def _video_report(run: Path, staging: Path, formats: tuple[str, ...]) -> list[str]:
    from xeval.reports.video import write_video_report

    if "latex" in formats:
        raise InputError(
            f"format 'latex': {run} is a video run; LaTeX tables are made for image runs "
            "(use html or md)"
        )
    stored = load_video_run(run)
    stored.res.out_dir = staging
    files = write_video_report(stored.res, stored.ds, stored.cfg, verdicts=stored.verdicts)
    made = [Path(p).relative_to(staging).as_posix() for p in files.values()]
    if "html" not in formats:
        made = ["results.md"]
    return made


def _copy_tables(run: Path, target: Path) -> list[str]:
    copied = []
    for name in sorted(DATA_FILES):
        src = run / name
        if src.is_file():
            _checked_size(src)
            atomic_write_bytes(target / name, src.read_bytes())
            copied.append(name)
    return copied


def rebuild_report(
    run_dir: str | os.PathLike,
    *,
    formats=("html",),
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write the report of the finished run in ``run_dir`` again, from its files.

    Parameters
    ----------
    run_dir : path
        A folder written by ``xeval run`` / ``xeval demo`` (image or video run).
    formats : sequence of {"html", "md", "latex"}
        ``"html"``: the full report (``index.html``, ``figures/``, ``results.md`` and
        the other report files); ``"md"``: ``results.md`` alone; ``"latex"``:
        ``tables.tex`` (image runs).
    out_dir : path, optional
        Where to write; default ``run_dir`` itself, where only report files are
        replaced (atomically) and the run's tables are left as they are. Another
        folder must be empty, new or written by xeval
        (:func:`xeval.engine.output.claim_output`); with ``"html"`` the run's tables
        (which the page links) are copied there byte for byte.

    Returns
    -------
    dict of str to Path
        Path relative to the output folder -> absolute path of each file written.

    Nothing is recomputed: no detector is fitted, no explanation made, no metric or
    verdict computed from images. Both folders are locked
    (:class:`~xeval.engine.output.OutputLock`) while the report is written, so a run
    still writing into ``run_dir`` is refused.
    """
    from xeval.engine.output import OutputLock, claim_output

    formats = _check_formats(formats)
    run = Path(run_dir)
    kind = run_kind(run)
    in_place = out_dir is None or Path(out_dir).resolve() == run.resolve()
    target = run if in_place else claim_output(Path(out_dir))
    with _locks(run, target, in_place, OutputLock):
        for stale in target.glob(f"{STAGING_PREFIX}*"):  # of a killed rebuild (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
        try:
            build = _video_report if kind == "video" else _image_report
            made = [m for m in build(run, staging, formats) if m not in DATA_FILES]
            written: dict[str, Path] = {}
            if not in_place and "html" in formats:
                for name in _copy_tables(run, target):
                    written[name] = target / name
            for rel in made:
                dest = target.joinpath(*rel.split("/"))
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging.joinpath(*rel.split("/")), dest)
                written[rel] = dest
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return written


class _locks:
    """Lock the output folder and, when it is another folder, the run folder too when
    its lock file is writable (a run still writing there is refused)."""

    def __init__(self, run: Path, target: Path, in_place: bool, lock_cls) -> None:
        self.locks = [lock_cls(target)]
        lock = run / ".xeval.lock"
        if not in_place and lock.is_file() and os.access(lock, os.W_OK):
            self.locks.append(lock_cls(run))

    def __enter__(self):
        taken = []
        try:
            for lk in self.locks:
                lk.__enter__()
                taken.append(lk)
        except BaseException:
            for lk in reversed(taken):
                lk.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for lk in reversed(self.locks):
            lk.__exit__(*exc)
