"""Recording a finished run in the run registry (:func:`record_run`), and reading a
finished run folder (:func:`read_run_folder`).

What is recorded
----------------
From a run folder of ``xeval run`` / ``xeval demo`` (image or video): ``manifest.json``,
``results.csv`` and the per-image metric values of ``per_image.csv`` (a video folder's
``per_frame.csv`` holds frame scores, not per-frame metric values, so a video run has
none). The per-image metric columns are those whose name is a metric label of
``results.csv``; the other columns (id, label, defect, image score...) are not metrics.

``xeval score`` has no run folder: it passes its table (one row per category plus
``mean``, one column per metric; :func:`score_results_long` turns it into the long
table, detector ``maps``, explainer ``native``) and :func:`score_manifest`.

Recording never makes a finished run fail: whatever goes wrong (a registry that cannot
be written, locked longer than :data:`~xeval.runs.store.BUSY_TIMEOUT_S`, corrupt, of a
newer schema) is one :class:`RegistryWarning` and :func:`record_run` returns ``None``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from xeval.errors import InputError, RegistryWarning
from xeval.runs import store
from xeval.runs.store import add_registry_argument  # noqa: F401 (re-exported)

SCORE_DETECTOR = "maps"
"""Detector name of ``xeval score`` rows (the maps were made elsewhere)."""
SCORE_EXPLAINER = "native"

SCORE_METRICS: dict[str, tuple[str, str, bool]] = {
    "image_auroc": ("image_auroc", "detection", True),
    "image_aupr": ("image_aupr", "detection", True),
    "image_f1_max": ("image_f1_max", "detection", True),
    "image_fpr@95tpr": ("image_fpr_at_tpr", "detection", False),
    "pixel_auroc": ("pixel_auroc", "localisation", True),
    "pixel_aupr": ("pixel_aupr", "localisation", True),
    "iou_oracle": ("iou_oracle", "localisation", True),
    "pro@t": ("pro", "localisation", True),
    "iou@t": ("iou", "localisation", True),
    "dice@t": ("dice", "localisation", True),
    "iou_per_image@t": ("iou_per_image", "localisation", True),
}
"""The metric columns of ``xeval score``'s table: label -> (metric, family, higher is
better); ``aupro@L`` columns are AUPRO (localisation, higher is better). A column not
listed here (nor ``error_bound/...``, kept in the note) is refused, so that a new column
is never recorded without its direction."""


@dataclass
class RunRecord:
    """One run as the registry holds it: ``run`` (the ``runs`` columns but ``id``),
    ``results`` (long table, :data:`~xeval.runs.store.RESULT_FIELDS`), ``per_image``
    (long, :data:`~xeval.runs.store.PER_IMAGE_FIELDS`). ``id`` is set once recorded
    (``None`` for a folder read directly)."""

    run: dict
    results: pd.DataFrame
    per_image: pd.DataFrame
    id: str | None = None

    @property
    def name(self) -> str:
        """How messages name the run: its id, else its folder."""
        return self.id or str(self.run.get("run_dir") or "?")


# ---------------------------------------------------------------------------- reading
def read_run_folder(folder: str | os.PathLike, *, command: str = "") -> RunRecord:
    """The record of a finished run folder (``manifest.json`` and ``results.csv``
    required; ``per_image.csv`` used when present); ``finished`` is the time
    ``manifest.json`` was written. Not a finished run: an
    :class:`~xeval.errors.InputError` naming what is missing."""
    folder = Path(folder)
    manifest, results, per_image = read_folder_tables(folder)
    finished = datetime.fromtimestamp((folder / "manifest.json").stat().st_mtime, tz=timezone.utc)
    return build_record(
        command=command,
        run_dir=folder,
        manifest=manifest,
        results=results,
        per_image=per_image,
        finished=finished,
    )


def read_folder_tables(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """``(manifest, results, per_image)`` of a finished run folder (``per_image`` is
    ``None`` without ``per_image.csv``)."""
    if not folder.is_dir():
        raise InputError(f"run folder {folder} does not exist or is not a folder")
    missing = [f for f in ("manifest.json", "results.csv") if not (folder / f).is_file()]
    if missing:
        raise InputError(
            f"{folder} is not a finished xeval run folder: {' and '.join(missing)} missing "
            "(expected the output folder of xeval run or xeval demo)"
        )
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{folder / 'manifest.json'} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"{folder / 'manifest.json'} is not a JSON object")
    from xeval.reports.writer import read_results_csv

    results = read_results_csv(folder / "results.csv")
    return manifest, results, read_per_image_csv(folder)


def read_per_image_csv(folder: Path) -> pd.DataFrame | None:
    """``per_image.csv`` of a run folder (key columns as text), ``None`` when absent."""
    path = folder / "per_image.csv"
    if not path.is_file():
        return None
    keys = dict.fromkeys(("category", "detector", "explainer", "id"), str)
    return pd.read_csv(path, dtype=keys, keep_default_na=False, na_values=[""])


def per_image_long(per_image: pd.DataFrame | None, labels) -> pd.DataFrame:
    """The per-image metric values of a wide ``per_image.csv`` table as long rows
    (:data:`~xeval.runs.store.PER_IMAGE_FIELDS`), NaN dropped. Metric columns are the
    columns named by a metric label of the run (``labels``)."""
    cols = list(store.PER_IMAGE_FIELDS)
    keys = ["category", "detector", "explainer", "id"]
    if per_image is None or per_image.empty or not set(keys) <= set(per_image.columns):
        return pd.DataFrame(columns=cols)
    metric_cols = [c for c in per_image.columns if c in set(labels) and c not in keys]
    if not metric_cols:
        return pd.DataFrame(columns=cols)
    wide = per_image[keys + metric_cols].copy()
    for c in keys:
        wide[c] = wide[c].astype(str)
    for c in metric_cols:
        wide[c] = pd.to_numeric(wide[c], errors="coerce").astype(float)
    long = wide.melt(id_vars=keys, value_vars=metric_cols, var_name="label", value_name="value")
    return long[long["value"].notna()][cols].reset_index(drop=True)


def score_results_long(table: pd.DataFrame, *, dataset: str = "") -> pd.DataFrame:
    """``xeval score``'s table (one row per category and ``mean``, one column per metric,
    ``n_images``, ``note``, ``error_bound/<label>``) as the long results table: detector
    :data:`SCORE_DETECTOR`, explainer :data:`SCORE_EXPLAINER`, one row per category and
    metric, ``n`` = the category's number of test images; a metric's binned-mode error
    bound goes into its note."""
    if "category" not in table.columns:
        raise InputError(f"score table: no 'category' column (got columns {list(table.columns)})")
    skip = {"category", "n_images", "note"}
    labels = [c for c in table.columns if c not in skip and not c.startswith("error_bound/")]
    unknown = [c for c in labels if c not in SCORE_METRICS and not c.startswith("aupro@")]
    if unknown:
        raise InputError(
            f"score table: unknown metric column(s) {unknown} (known: "
            f"{sorted(SCORE_METRICS)} and aupro@<limit>)"
        )
    rows = []
    for rec in table.to_dict(orient="records"):
        n = rec.get("n_images")
        for label in labels:
            if label.startswith("aupro@"):
                metric, family, hib = "aupro", "localisation", True
                params = json.dumps({"fpr_limit": float(label.split("@", 1)[1])})
            else:
                metric, family, hib = SCORE_METRICS[label]
                params = "{}"
            bound = rec.get(f"error_bound/{label}")
            note = str(rec.get("note") or "") if rec["category"] == "mean" else ""
            if bound is not None and not (isinstance(bound, float) and math.isnan(bound)):
                note = "; ".join(x for x in (note, f"binned, error <= {bound:.2g}") if x)
            rows.append(
                {
                    "detector": SCORE_DETECTOR,
                    "explainer": SCORE_EXPLAINER,
                    "dataset": dataset,
                    "category": str(rec["category"]),
                    "protocol": "score",
                    "metric": metric,
                    "label": label,
                    "family": family,
                    "params": params,
                    "value": float(rec[label]),
                    "ci_low": math.nan,
                    "ci_high": math.nan,
                    "n": 0 if n is None or n != n else int(n),
                    "higher_is_better": hib,
                    "control": False,
                    "headline": 1,
                    "threshold": math.nan,
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=list(store.RESULT_FIELDS))


def _tree_fingerprint(root: Path, categories) -> str:
    """sha256 (first 16 hex digits) of the relative path and size of every file under
    ``root/<category>`` for the given categories (paths and sizes, not contents)."""
    h = hashlib.sha256()
    for cat in sorted(categories):
        base = root / cat
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def score_manifest(
    *,
    maps: str | os.PathLike,
    gt: str | os.PathLike,
    table: pd.DataFrame,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    allow_missing: bool = False,
    duration_s: float | None = None,
) -> dict:
    """The manifest of an ``xeval score`` call: its options as ``config`` (name
    ``score``; ``config_hash`` = sha256 of their canonical JSON, without the paths), the
    dataset (``gt`` folder; fingerprint of the paths and sizes of the scored categories'
    files) and ``timings.total_s`` = ``duration_s``."""
    import platform

    import xeval
    from xeval.engine.manifest import package_versions

    gt, maps = Path(gt), Path(maps)
    cats = [str(c) for c in table["category"] if str(c) != "mean"]
    options = {
        "categories": cats,
        "fpr_limits": [float(x) for x in fpr_limits],
        "mode": mode,
        "threshold": None if threshold is None else float(threshold),
        "allow_missing": bool(allow_missing),
    }
    canonical = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return {
        "task": "score",
        "xeval_version": xeval.__version__,
        "versions": package_versions(),
        "platform": platform.platform(),
        "config": {"name": "score", **options, "maps": str(maps), "gt": str(gt)},
        "config_hash": hashlib.sha256(canonical.encode()).hexdigest()[:16],
        "config_source": None,
        "dataset": {"name": gt.resolve().name, "root": str(gt.resolve())},
        "dataset_fingerprint": _tree_fingerprint(gt, cats),
        "dataset_fingerprint_kind": "paths and sizes",
        "timings": {} if duration_s is None else {"total_s": float(duration_s)},
    }


def _duration(manifest: dict) -> float | None:
    t = manifest.get("timings") or {}
    total = t.get("total_s")
    if not isinstance(total, (int, float)):
        return None
    report = t.get("report_s")
    return float(total) + (float(report) if isinstance(report, (int, float)) else 0.0)


def _unique(series) -> list[str]:
    return [str(x) for x in dict.fromkeys(series.tolist())] if series is not None else []


def build_record(
    *,
    command: str,
    run_dir: str | os.PathLike | None,
    manifest: dict | None,
    results: pd.DataFrame | None,
    per_image: pd.DataFrame | None = None,
    argv: list[str] | None = None,
    finished: datetime | None = None,
) -> RunRecord:
    """A :class:`RunRecord` from a manifest and the results (long table, or ``xeval
    score``'s table) and the wide per-image table."""
    manifest = dict(manifest or {})
    if results is None:
        raise InputError("no results to record (give results, or a run folder holding them)")
    if "label" not in results.columns:
        dataset = (manifest.get("dataset") or {}).get("name", "")
        results = score_results_long(results, dataset=dataset)
    missing = [c for c in store.RESULT_FIELDS if c not in results.columns]
    if missing:
        raise InputError(f"results: missing column(s) {missing} (expected {store.RESULT_FIELDS})")
    results = results[list(store.RESULT_FIELDS)].reset_index(drop=True)
    per_img = per_image_long(per_image, results["label"].unique())
    config = manifest.get("config") or {}
    ds = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    mds = manifest.get("dataset") if isinstance(manifest.get("dataset"), dict) else {}
    finished = finished or store.utc_now()
    duration = _duration(manifest)
    started = finished - timedelta(seconds=duration) if duration is not None else None
    task = manifest.get("task") or "image"
    categories = [c for c in _unique(results["category"]) if c != "mean"]
    run = {
        "recorded": store.iso(store.utc_now()),
        "started": store.iso(started) if started else None,
        "finished": store.iso(finished),
        "command": command,
        "argv": list(argv) if argv is not None else None,
        "task": task,
        "config_name": config.get("name"),
        "config_hash": manifest.get("config_hash"),
        "config_source": manifest.get("config_source"),
        "seed": manifest.get("seed"),
        "dataset_name": ds.get("name") or mds.get("name"),
        "dataset_fingerprint": manifest.get("dataset_fingerprint"),
        "dataset_fingerprint_kind": manifest.get("dataset_fingerprint_kind"),
        "detectors": _unique(results["detector"]),
        "explainers": _unique(results["explainer"]),
        "categories": categories,
        "duration_s": duration,
        "xeval_version": manifest.get("xeval_version"),
        "run_dir": None if run_dir is None else str(run_dir),
        "run_dir_resolved": None if run_dir is None else str(Path(run_dir).resolve()),
        "manifest": manifest,
    }
    return RunRecord(run=run, results=results, per_image=per_img)


# ---------------------------------------------------------------------------- record
def save_record(record: RunRecord, *, registry: str | os.PathLike | None = None, **hooks) -> str:
    """Insert ``record`` into the registry (created when missing) and return its id;
    errors are raised (:class:`~xeval.runs.store.RegistryError`). ``hooks``: the test
    hooks of :func:`~xeval.runs.store.insert_run`."""
    results = list(record.results.itertuples(index=False, name=None))
    per_image = list(record.per_image.itertuples(index=False, name=None))
    with store.connect(registry, write=True) as (conn, _):
        record.id = store.insert_run(conn, record.run, results, per_image, **hooks)
    return record.id


def record_run(
    *,
    command: str,
    run_dir: Path | None,
    manifest: dict | None = None,
    results: pd.DataFrame | None = None,
    per_image: pd.DataFrame | None = None,
    registry: str | Path | None = None,
    argv: list[str] | None = None,
) -> str | None:
    """Record a finished run in the run registry and return its id (``None`` when the
    registry is disabled or the run could not be recorded).

    ``run_dir``: the run's folder; ``manifest``, ``results`` and ``per_image`` not given
    are read from it (``manifest.json``, ``results.csv``, ``per_image.csv``). ``xeval
    score`` gives ``run_dir=None``, ``results`` = its table and ``manifest`` =
    :func:`score_manifest` (or calls :func:`record_score`, which builds both).
    ``registry``: the ``--registry`` option (``None``: see
    :func:`~xeval.runs.store.registry_path`; ``"none"``/``"off"`` disables). ``argv``:
    the command line, kept for ``xeval runs``.

    Never raises: whatever fails (the registry cannot be written, is locked, corrupt,
    of a newer schema; the folder cannot be read) is one :class:`RegistryWarning`, the
    result is ``None`` and the run keeps its exit code.
    """

    def make() -> RunRecord:
        nonlocal manifest, results, per_image
        if run_dir is not None and (manifest is None or results is None):
            m, r, p = read_folder_tables(Path(run_dir))
            manifest = m if manifest is None else manifest
            results = r if results is None else results
            per_image = p if per_image is None else per_image
        elif run_dir is not None and per_image is None:
            per_image = read_per_image_csv(Path(run_dir))
        return build_record(
            command=command,
            run_dir=run_dir,
            manifest=manifest,
            results=results,
            per_image=per_image,
            argv=argv,
        )

    return _record_guarded(make, registry=registry)


def record_score(
    table: pd.DataFrame,
    *,
    maps: str | os.PathLike,
    gt: str | os.PathLike,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    allow_missing: bool = False,
    duration_s: float | None = None,
    registry: str | Path | None = None,
    argv: list[str] | None = None,
) -> str | None:
    """Record an ``xeval score`` result: ``table`` as :func:`score_folder
    <xeval.engine.score.score_folder>` returns it and the call's options (see
    :func:`score_manifest`); :func:`record_run` with ``run_dir=None``. Never raises for a
    registry problem (one :class:`RegistryWarning`, ``None``)."""

    def make() -> RunRecord:
        manifest = score_manifest(
            maps=maps,
            gt=gt,
            table=table,
            fpr_limits=fpr_limits,
            mode=mode,
            threshold=threshold,
            allow_missing=allow_missing,
            duration_s=duration_s,
        )
        return build_record(
            command="score", run_dir=None, manifest=manifest, results=table, argv=argv
        )

    return _record_guarded(make, registry=registry)


def _record_guarded(make, *, registry) -> str | None:
    """Save ``make()`` in the registry; any failure is one :class:`RegistryWarning`."""
    path = None
    try:
        path = store.registry_path(registry)
        if path is None:
            return None
        return save_record(make(), registry=registry)
    except Exception as exc:  # noqa: BLE001 - recording must never fail a finished run
        named = isinstance(exc, store.RegistryError) or path is None  # the message names it
        where = "" if named else f" {path}"
        warnings.warn(
            f"the run was not recorded in the run registry{where}: {exc} "
            f"({type(exc).__name__}; the run itself is complete; set --registry none or "
            f"{store.REGISTRY_ENV}=off to stop recording)",
            RegistryWarning,
            stacklevel=3,
        )
        return None
