"""Run a configuration: dataset x detectors x explainers x metrics -> results and report.

This module only composes the phases, each a module of :mod:`xeval.engine`:

1. :mod:`~xeval.engine.load` -- the dataset's splits; fit / validation images;
2. :mod:`~xeval.engine.fit` -- the detector on normal images; normal references;
3. :mod:`~xeval.engine.calibrate` -- thresholds (and other calibrations) on normal
   validation images, never on the test set;
4. :mod:`~xeval.engine.evaluate` -- one streaming pass over the test set;
5. :mod:`~xeval.engine.probes` -- robustness / randomisation on their subsets
   (:mod:`~xeval.engine.subsets`);
6. :mod:`~xeval.engine.collect` and :mod:`~xeval.engine.gallery` -- result rows,
   per-image rows, curves, gallery;
7. :mod:`~xeval.engine.checkpoint` -- each (category, detector) unit saved atomically
   as it finishes (an interrupted run resumes where it stopped);
8. :mod:`~xeval.engine.manifest` -- versions, configuration, fingerprints, timings.

The engine never names a metric: it loops over the metrics a configuration lists.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from xeval._io import atomic_write_json, atomic_write_text, safe_join
from xeval.adapters.base import Detector
from xeval.data.split import CategorySplit
from xeval.engine import calibrate, checkpoint, collect, evaluate, fit, gallery, load, probes
from xeval.engine.manifest import build_manifest
from xeval.engine.output import OutputLock, claim_output, confined_path, resolve_output
from xeval.engine.subsets import subsets_for
from xeval.errors import InputError, ResumeWarning
from xeval.explainers.base import Explainer
from xeval.explainers.pairing import capabilities, check_pairings
from xeval.metrics.base import Metric, ProbeContext
from xeval.protocols.config import RunConfig, build_metrics
from xeval.results import results_frame

__all__ = ["RunResult", "UnitTask", "compute_unit", "evaluate_unit", "run"]

VERDICT_FAMILIES = ("localisation", "faithfulness", "robustness", "sanity")
"""Families whose per-image metrics get verdicts against the controls."""


@dataclass
class RunResult:
    results: pd.DataFrame
    curves: pd.DataFrame
    per_image: pd.DataFrame
    manifest: dict
    out_dir: Path
    files: dict = field(default_factory=dict)


# ------------------------------------------------------------------------- one unit
def _check_metric_needs(det: Detector, metrics: list[Metric]) -> None:
    can = capabilities(det)
    for m in metrics:
        missing = sorted((set(m.needs) & {"gradients"}) - can)
        if missing:
            raise InputError(
                f"metric {m.label!r} needs {missing}, which detector {det.name!r} does not "
                "provide (a differentiable score)"
            )


def _file_digest(path) -> str:
    if path is None:
        return "-"
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def _with_cache(explainers, det, fit_samples, seed: int, cache_dir: Path) -> list[Explainer]:
    """Wrap attribution explainers in an on-disk cache keyed by the detector's config,
    seed, xeval's code and the **content** of the fitting images (fits are deterministic
    for a seed; each cached map is keyed by its own image's pixels too)."""
    from xeval.explainers.cache import CachedExplainer

    blob = json.dumps(
        {
            "detector": det.config(),
            "seed": seed,
            "fit": [(s.id, _file_digest(s.image_path)) for s in fit_samples],
            "size": list(det.input_size),
            "code": checkpoint.code_fingerprint(),
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()
    return [
        e if (e.control or "map" in e.requires) else CachedExplainer(e, cache_dir, detector_key=key)
        for e in explainers
    ]


def evaluate_unit(
    det: Detector,
    explainers: list[Explainer],
    split: CategorySplit,
    cfg: RunConfig,
    *,
    metrics: list[Metric] | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Fit ``det`` on the category's normal images, explain and score the test set.

    Returns a dict with ``rows`` (results rows), ``curves``, ``per_image`` (rows),
    ``pooled`` (per-image summaries of the pooled metrics, see
    :func:`~xeval.engine.collect.pooled_summaries`), ``gallery`` (candidates),
    ``timings``, ``subsets`` (ids of the costly metrics' images) and ``configs`` (what
    was resolved).
    """
    cat = split.category
    if not split.test:
        raise InputError(f"category {cat!r}: the test set is empty")
    metrics = build_metrics(cfg.metrics) if metrics is None else metrics
    check_pairings(det, explainers)
    _check_metric_needs(det, metrics)
    bs = cfg.batch_size
    fit_s, val_s = load.fit_and_validation(split, cfg)
    timings = {"fit_s": fit.fit_detector(det, fit_s, batch_size=bs, category=cat)}

    needs_reference = any(hasattr(e, "fit_reference") for e in explainers) or any(
        "reference" in m.needs for m in metrics
    )
    reference = None
    if needs_reference:
        reference = fit.reference_images(det, fit_s, seed=cfg.seed, batch_size=bs, category=cat)
        for e in explainers:
            if hasattr(e, "fit_reference"):
                e.fit_reference(reference)
    if cache_dir is not None:
        explainers = _with_cache(explainers, det, fit_s, cfg.seed, cache_dir)

    requests = [r for m in metrics for r in m.calibrations()]
    calibration, timings["validation_s"] = calibrate.calibrate(
        det, explainers, requests, val_s, batch_size=bs, category=cat
    )
    subsets = subsets_for(
        metrics, split.test, strategy=cfg.evaluation.subset, seed=cfg.seed, category=cat
    )

    @functools.cache
    def normal_batches() -> list:
        return list(fit.normal_images(fit_s, det, batch_size=bs, category=cat))

    def probe_for(e: Explainer, ids: list[str] | None = None) -> ProbeContext:
        return ProbeContext(
            detector=det,
            reference=reference,
            normal_batches=normal_batches,
            seed=cfg.seed,
            batch_size=bs,
        )

    states, scores_by_id, timings["test_s"] = evaluate.stream(
        det,
        explainers,
        metrics,
        split.test,
        batch_size=bs,
        category=cat,
        calibration=calibration,
        subsets=subsets,
        probe_for=probe_for,
    )
    timings["probes_s"] = probes.run_probes(
        det,
        explainers,
        metrics,
        split.test,
        states,
        category=cat,
        calibration=calibration,
        subsets=subsets,
        probe_for=probe_for,
    )
    unit = collect.collect_unit(
        detector=det.name,
        explainers=explainers,
        metrics=metrics,
        states=states,
        scores_by_id=scores_by_id,
        split=split,
        dataset=cfg.dataset.name,
        protocol=cfg.name,
        n_boot=cfg.evaluation.bootstrap,
        seed=cfg.seed,
        subsets=subsets,
    )
    t = time.perf_counter()
    unit["pooled"] = collect.pooled_summaries(
        detector=det.name, category=cat, explainers=explainers, states=states
    )
    timings["summaries_s"] = time.perf_counter() - t
    t = time.perf_counter()
    unit["gallery"] = (
        gallery.gallery_candidates(
            det,
            explainers,
            metrics,
            states,
            split,
            wanted=cfg.report.gallery_metric,
            batch_size=bs,
        )
        if cfg.report.gallery
        else []
    )
    timings["gallery_s"] = time.perf_counter() - t
    unit["timings"] = {f"{cat}/{det.name}/{k}": v for k, v in timings.items()}
    unit["subsets"] = subsets
    unit["configs"] = {
        "detector": det.config(),
        "explainers": [e.config() for e in explainers],
        "metrics": [{"name": m.name, "label": m.label, "params": m.params} for m in metrics],
    }
    return unit


#: The 0.1 name of :func:`evaluate_unit`.
evaluate_detector = evaluate_unit


# ------------------------------------------------------------------------------ run
def _verdict_rules(cfg: RunConfig, per_image: pd.DataFrame) -> dict:
    """The verdict rule of every per-image metric of the verdict families (from the
    metrics themselves: what they are compared with, and on which threshold)."""
    from xeval.engine.verdicts import VerdictRule

    rules: dict = {}
    for d in cfg.detectors:
        for m in build_metrics(cfg.metrics_for(d)):
            if m.per_image and m.family in VERDICT_FAMILIES and m.label in per_image.columns:
                rules.setdefault(m.label, VerdictRule.of(m))
    return rules


def _unit_config(cfg: RunConfig, dspec, category: str) -> dict:
    """Everything of ``cfg`` that one (category, detector) unit depends on."""
    return {
        "category": category,
        "dataset": cfg.dataset.to_dict(),
        "detector": dspec.to_dict(),
        "explainers": [e.to_dict() for e in cfg.explainers_for(dspec)],
        "metrics": [m.to_dict() for m in cfg.metrics_for(dspec)],
        "evaluation": asdict(cfg.evaluation),
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "report": asdict(cfg.report),
    }


@dataclass(frozen=True)
class UnitTask:
    """Everything one (category, detector) unit needs, sent to the worker that computes
    it: the checked configuration, the detector's name, the category's split (sample
    references: paths, not pixels), the explanation cache and the modules the caller
    allowed recipes to import (``--allow-import``). The worker builds the detector,
    explainers and metrics from the configuration's specs (fitted models never travel);
    every seed comes from the configuration, never from the worker or the order."""

    cfg: RunConfig
    detector: str
    split: CategorySplit
    cache_dir: Path | None = None
    safe_imports: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.split.category}/{self.detector}"


def compute_unit(task: UnitTask) -> dict:
    """Build the unit's detector, explainers and metrics from the configuration and run
    :func:`evaluate_unit` (a top-level function: Dask sends it to workers by reference).
    Returns the unit's dict; its attribution maps stay where it ran."""
    from xeval.adapters.imports import safe_imports
    from xeval.adapters.registry import build_detector
    from xeval.explainers.registry import build_explainer

    cfg = task.cfg
    dspec = next(d for d in cfg.detectors if d.name == task.detector)
    with safe_imports(*task.safe_imports):
        recipe = dspec.recipe()
        recipe["params"].setdefault("seed", cfg.seed)
        det = build_detector(recipe)
        explainers = [
            build_explainer(e.to_dict(), where=f"detector {dspec.name!r} explainers")
            for e in cfg.explainers_for(dspec)
        ]
        metrics = build_metrics(cfg.metrics_for(dspec))
        print(
            f"[xeval] {task.split.category}: {det.name} (fit + explain {len(explainers)} "
            f"explainers, {len(metrics)} metrics)",
            file=sys.stderr,
        )
        return evaluate_unit(
            det, explainers, task.split, cfg, metrics=metrics, cache_dir=task.cache_dir
        )


def run(
    cfg: RunConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = True,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    threads_per_worker: int | None = None,
) -> RunResult:
    """Run ``cfg`` and write the report into ``out_dir``.

    ``out_dir`` (the caller's choice) is used as given; without it the configuration's
    ``output`` is used, which must stay under the current folder (see
    :mod:`xeval.engine.output`). Likewise ``cache_dir`` overrides the configuration's
    ``cache``. The folder is locked for the duration of the run; saved units of an
    earlier run are reused only when nothing they depend on changed (``resume=False``
    recomputes all of them).

    ``workers`` (a local Dask cluster of that many worker processes) or ``scheduler``
    (the address of an existing Dask cluster) run the units as Dask tasks, with
    ``threads_per_worker`` torch / BLAS threads each (see :mod:`xeval.engine.executor`);
    given here they override the configuration's keys of the same names. The results
    are the same, value for value, for any of these choices. When some units fail on
    Dask, the others are saved and :class:`~xeval.engine.executor.UnitsFailedError`
    lists the failed ones (category and detector).
    """
    if getattr(cfg, "task", "image") == "video":
        if workers is not None or scheduler is not None or threads_per_worker is not None:
            raise InputError(
                "workers / scheduler / threads_per_worker: video runs execute in one "
                f"process (got workers={workers!r}, scheduler={scheduler!r}, "
                f"threads_per_worker={threads_per_worker!r})"
            )
        from xeval.engine.video import run_video

        return run_video(cfg, out_dir=out_dir, resume=resume)
    if getattr(cfg, "task", "image") == "influence":
        if workers is not None or scheduler is not None or threads_per_worker is not None:
            raise InputError(
                "workers / scheduler / threads_per_worker: influence runs execute in one "
                f"process (got workers={workers!r}, scheduler={scheduler!r}, "
                f"threads_per_worker={threads_per_worker!r})"
            )
        from xeval.engine.influence import run_influence

        return run_influence(cfg, out_dir=out_dir, resume=resume)
    if not isinstance(resume, bool):
        raise InputError(f"resume must be True or False, got {resume!r}")
    options = _execution_options(
        cfg, workers=workers, scheduler=scheduler, threads_per_worker=threads_per_worker
    )
    out = resolve_output(cfg, out_dir)
    cache_dir = _cache_dir(cfg, out, cache_dir)  # checked before anything is written
    out = claim_output(out)
    with OutputLock(out):
        return _run(cfg, out, resume=resume, cache_dir=cache_dir, options=options)


def _execution_options(cfg: RunConfig, *, workers, scheduler, threads_per_worker) -> dict:
    """The executor options: the caller's (the command line's) where given, else the
    configuration's; checked before anything is written. Giving ``workers`` or
    ``scheduler`` here replaces both of the configuration's. ``threads_per_worker`` from
    the configuration applies only when the run uses Dask; given here without Dask it
    is an error."""
    from xeval.engine.executor import check_executor_options

    check_executor_options(
        workers=workers,
        scheduler=scheduler,
        threads_per_worker=threads_per_worker,
        threads_need_dask=False,
    )
    if workers is None and scheduler is None:
        workers, scheduler = getattr(cfg, "workers", None), getattr(cfg, "scheduler", None)
    if threads_per_worker is None and (workers is not None or scheduler is not None):
        threads_per_worker = getattr(cfg, "threads_per_worker", None)
    options = {"workers": workers, "scheduler": scheduler, "threads_per_worker": threads_per_worker}
    check_executor_options(**options)
    return options


def _cache_dir(cfg: RunConfig, out: Path, given) -> Path | None:
    if given is not None:
        return Path(given)
    if not cfg.cache:
        return None
    if cfg.cache is True:
        return safe_join(out, ".cache", "explanations")
    return confined_path(cfg.cache, key="cache", where=cfg.source or "config")


def _run(cfg: RunConfig, out: Path, *, resume: bool, cache_dir, options: dict) -> RunResult:
    from xeval.adapters.imports import get_safe_imports
    from xeval.engine.executor import UnitFailure, UnitsFailedError, make_executor
    from xeval.engine.verdicts import pooled_verdicts, rank_table, verdicts
    from xeval.reports import ReportData, write_report

    t_start = time.perf_counter()
    part_dir = safe_join(out, ".partial", cfg.config_hash())
    part_dir.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    t = time.perf_counter()
    splits = load.load_dataset(cfg)
    timings["dataset_s"] = time.perf_counter() - t
    t = time.perf_counter()
    contents = {cat: split.fingerprint(content=True) for cat, split in splits.items()}
    timings["fingerprint_s"] = time.perf_counter() - t
    # 1. which units are saved already (in the run's order: category, then detector)
    units: dict[str, dict] = {}  # "cat/det" -> the unit's dict, in the run's order
    keys: dict[str, dict] = {}
    resumed: dict[str, str] = {}
    todo: list[tuple[UnitTask, Path, str]] = []
    imports = get_safe_imports()
    for cat, split in splits.items():
        for dspec in cfg.detectors:
            name = f"{cat}/{dspec.name}"
            path = checkpoint.unit_path(part_dir, cat, dspec.name)
            keys[name] = checkpoint.unit_key(
                dataset_content=contents[cat], unit_config=_unit_config(cfg, dspec, cat)
            )
            unit, why = checkpoint.load_unit(path, key=keys[name]) if resume else (None, "")
            units[name] = unit
            if unit is None:
                if why.startswith(("damaged", "stale")):
                    warnings.warn(
                        f"unit {name} of an earlier run is recomputed ({why})",
                        ResumeWarning,
                        stacklevel=2,
                    )
                task = UnitTask(cfg, dspec.name, split, cache_dir, imports)
                todo.append((task, path, why))
            else:
                print(f"[xeval] {cat}: {dspec.name} (resumed from {path.parent})", file=sys.stderr)
                resumed[name] = "reused (key matched)"
    # 2. compute the others on the executor; each is saved here, by the client, as it
    #    arrives (in the run's order), so an interrupted run resumes exactly as before
    failures: list[UnitFailure] = []
    executor_info: dict = {"kind": "none (every unit was resumed)", **options}
    if todo:
        t = time.perf_counter()
        with make_executor(**options) as executor:
            timings["executor_start_s"] = time.perf_counter() - t
            tasks = [task for task, _, _ in todo]
            results = executor.map_units(compute_unit, tasks, keys=[x.key for x in tasks])
            for (_, path, why), (name, unit) in zip(todo, results, strict=True):
                if isinstance(unit, UnitFailure):
                    print(f"[xeval] {name}: FAILED ({unit.error_type})", file=sys.stderr)
                    failures.append(unit)
                    continue
                checkpoint.save_unit(path, unit, key=keys[name])
                units[name] = unit
                resumed[name] = "computed" if why in ("", "not saved") else f"recomputed ({why})"
            executor_info = {**executor.describe(), "overhead": executor.overhead()}
    if failures:
        saved = sum(u is not None for u in units.values())
        raise UnitsFailedError(failures, saved=saved) from failures[0].error
    # 3. assemble, in the run's order whatever the executor
    resumed = {name: resumed[name] for name in units}
    rows, curves, per_image, items, resolved = [], [], [], [], {}
    for name, unit in units.items():
        rows += unit["rows"]
        curves += unit["curves"]
        per_image += unit["per_image"]
        items += unit["gallery"]
        timings.update(unit["timings"])
        resolved[name] = {
            **unit.get("configs", {}),
            "subsets": unit.get("subsets", {}),
            "key": keys[name],
        }
    rows += collect.mean_rows(rows)
    results = results_frame(rows)
    curves_df = pd.DataFrame(
        curves, columns=["detector", "explainer", "category", "curve", "x", "y", "y_low", "y_high"]
    )
    per_image_df = pd.DataFrame(per_image)
    timings["total_s"] = time.perf_counter() - t_start
    manifest = build_manifest(
        cfg,
        splits,
        timings=timings,
        units=resolved,
        contents=contents,
        resume=resumed,
        executor=executor_info,
    )
    verdict_df = verdicts(
        per_image_df,
        metrics=_verdict_rules(cfg, per_image_df),
        n_boot=cfg.evaluation.bootstrap,
        seed=cfg.seed,
    )
    pooled_df = pooled_verdicts(  # pooled metrics: paired image bootstrap
        {(c, d.name): units[f"{c}/{d.name}"].get("pooled") for c in splits for d in cfg.detectors},
        metrics={
            d.name: [m for m in build_metrics(cfg.metrics_for(d)) if m.family in VERDICT_FAMILIES]
            for d in cfg.detectors
        },
        n_boot=cfg.evaluation.bootstrap,
        seed=cfg.seed,
    )
    if len(pooled_df):
        verdict_df = (
            pooled_df if verdict_df.empty else pd.concat([verdict_df, pooled_df], ignore_index=True)
        )
    headline = results[(results["headline"].astype(int) > 0) & (results["family"] != "detection")]
    ranks_df = rank_table(results, metrics=list(dict.fromkeys(headline["label"])))
    report = ReportData(
        verdicts=verdict_df,
        ranks=ranks_df,
        results=results,
        curves=curves_df,
        gallery=gallery.gallery_items(items) if cfg.report.gallery else [],
        manifest=manifest,
        title=f"xeval report: {cfg.name}",
        per_image=per_image_df,
    )
    from xeval.reports.rebuild import save_report_inputs

    inputs = save_report_inputs(report, out)  # what `xeval report` rebuilds from
    files = write_report(report, out, figures=cfg.report.figures)
    files.update(inputs)
    atomic_write_text(out / "per_image.csv", per_image_df.to_csv(index=False))
    files["per_image.csv"] = out / "per_image.csv"
    manifest["timings"]["report_s"] = time.perf_counter() - t_start - timings["total_s"]
    atomic_write_json(out / "manifest.json", manifest)
    return RunResult(results, curves_df, per_image_df, manifest, out, files)
