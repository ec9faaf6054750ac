"""Run an example-importance (contaminated-training) configuration
(:mod:`xeval.protocols.influence`) and write its report.

For each category of the dataset, each seed and each contamination rate:

1. :func:`~xeval.influence.contamination.contaminate` plants ``k`` anomalous test images
   (balanced over defect types) among the normal training images, shuffled; they leave
   the test pool;
2. the detector is trained from scratch on the contaminated set (the seed seeds it);
3. every method ranks the training images by self-influence
   (:func:`xeval.self_influence`, high = suspicious) and every control
   (:data:`~xeval.influence.evaluation.INFLUENCE_BASELINES`: ``random``,
   ``detector_score``, ``knn_distance``) by its own score; the ranking of the planted
   images is scored (AUROC, AP, precision@k, quanda's cumulative-detection area);
4. per-test attribution: test anomalies of the planted types and a few normal test
   images are explained (:func:`xeval.influence`); AP that the planted images of the
   test anomaly's own type rank first, similarity rate and top-k cardinality;
5. wall time per training image (self-influence) and per test image (influence) and the
   peak resident memory of each call are recorded.

Values are aggregated over seeds (mean, 95 % t-interval over seeds, standard deviation
and range in the note) into the long results table (:mod:`xeval.results`); every seed's
value is kept in ``per_seed.csv``. Nothing of an earlier run is reused: a run recomputes
everything (``resume`` is accepted for the common interface and recorded).
"""

from __future__ import annotations

import copy
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xeval.engine.load import load_dataset
from xeval.engine.output import OutputLock, claim_output, resolve_output
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.influence.contamination import NORMAL, ContaminatedSet, contaminate
from xeval.influence.evaluation import (
    INFLUENCE_BASELINES,
    attribution_auprc,
    cumulative_detection_curve,
    detection_metrics,
    similarity_rate,
    top_k_cardinality,
)
from xeval.rng import derived_seed
from xeval.rng import rng as make_rng

__all__ = ["METRICS", "InfluenceRunResult", "run_influence", "seed_summary"]

CONFIDENCE = 0.95
_RANKING = ("auroc", "auprc", "precision_at_k", "cdc_auc")


@dataclass(frozen=True)
class _Metric:
    name: str
    higher_is_better: bool
    family: str
    description: str
    per_rate: bool = True
    headline: int = 0
    bounds: tuple[float, float] = (0.0, 1.0)
    """The metric's range: the interval over seeds is intersected with it (the mean lies
    in it, so the intersection keeps the interval's coverage)."""


#: The protocol's metrics: name -> direction, family and definition (the report's legend).
METRICS: dict[str, _Metric] = {
    m.name: m
    for m in (
        _Metric(
            "planted_auroc",
            True,
            "influence",
            "AUROC of the training-image ranking for the planted images (ties 1/2; chance 0.5)",
            headline=1,
        ),
        _Metric(
            "planted_auprc",
            True,
            "influence",
            "average precision of the ranking for the planted images (chance = planted fraction)",
            headline=1,
        ),
        _Metric(
            "planted_precision_at_k",
            True,
            "influence",
            "fraction of planted images among the k most suspicious, k = number planted",
        ),
        _Metric(
            "planted_cdc_auc",
            True,
            "influence",
            "normalised area under the cumulative-detection curve (quanda "
            "MislabelingDetectionMetric; random about 0.5)",
            headline=2,
        ),
        _Metric(
            "attribution_auprc",
            True,
            "influence",
            "per test anomaly of a planted type: AP that the planted training images of its "
            "own type rank first by influence; mean over test anomalies",
        ),
        _Metric(
            "similarity_rate",
            True,
            "influence",
            "per test anomaly of a planted type: fraction of its top-k training images of "
            "the same defect type (planted); mean over test anomalies; its ceiling is "
            "min(k, planted images of the type) / k (0.2 with one planted image and k = 5)",
        ),
        _Metric(
            "top_k_cardinality",
            True,
            "influence",
            "distinct training images over the top-k lists of all explained test images "
            "(k when every list is the same)",
            bounds=(0.0, float("inf")),
        ),
        _Metric(
            "seconds_per_train_image",
            False,
            "cost",
            "wall seconds of self-influence per training image",
            per_rate=False,
            bounds=(0.0, float("inf")),
        ),
        _Metric(
            "seconds_per_test_image",
            False,
            "cost",
            "wall seconds of influence (a row of the matrix) per test image",
            per_rate=False,
            headline=1,
            bounds=(0.0, float("inf")),
        ),
        _Metric(
            "peak_memory_mb",
            False,
            "cost",
            "peak resident memory above its value at the start of the call (MiB): the "
            "larger of a repetition's self-influence and influence calls, mean over "
            "repetitions",
            per_rate=False,
            bounds=(0.0, float("inf")),
        ),
    )
}


@dataclass
class InfluenceRunResult:
    """What :func:`run_influence` returns (the fields :func:`xeval.cli` prints)."""

    results: pd.DataFrame
    per_seed: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict
    out_dir: Path
    files: dict = field(default_factory=dict)
    gallery: list = field(default_factory=list)


# --------------------------------------------------------------------- memory
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _PeakMemory:
    """``with _PeakMemory() as pm: ...``; ``pm.mib``: the peak resident set size during
    the block above its value at entry, sampled every 2 ms from ``/proc/self/statm``
    (NaN where that file does not exist). Covers torch's allocations, which tracemalloc
    does not see."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.mib = float("nan")

    def __enter__(self) -> _PeakMemory:
        self._start = _rss_bytes()
        self._peak = self._start or 0
        self._stop = threading.Event()
        if self._start is not None:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._start is not None:
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.mib = (self._peak - self._start) / 2**20


# ---------------------------------------------------------------------- images
class _Images:
    """Images of a category at the detector's input size, loaded once per sample id."""

    def __init__(self, size: tuple[int, int], batch_size: int, category: str) -> None:
        self.size, self.batch_size, self.category = tuple(size), batch_size, category
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, samples) -> np.ndarray:
        from xeval.data.loader import iter_batches

        todo = [s for s in samples if s.id not in self._cache]
        if todo:
            for rec in iter_batches(
                todo,
                batch_size=self.batch_size,
                image_size=self.size,
                with_masks=False,
                category=self.category,
            ):
                for sid, img in zip(rec.inputs.ids, rec.inputs.images, strict=True):
                    self._cache[sid] = img
        return np.stack([self._cache[s.id] for s in samples]).astype(np.float32, copy=False)


def _pick_tests(cs: ContaminatedSet, *, max_anomalies: int, n_normal: int, seed: int) -> list:
    """Test images to explain: anomalies of the planted types (seeded, round-robin over
    the types), then ``n_normal`` normal ones (seeded), in that order."""
    gen = make_rng(seed, "per-test")
    planted_types = sorted(set(cs.types[cs.planted]))
    queues = {}
    for t in planted_types:
        items = [s for s in cs.test if s.defect == t]
        queues[t] = [items[i] for i in gen.permutation(len(items))]
    chosen: list = []
    while len(chosen) < max_anomalies and any(queues.values()):
        for t in planted_types:
            if queues[t] and len(chosen) < max_anomalies:
                chosen.append(queues[t].pop(0))
    normal = [s for s in cs.test if s.defect == NORMAL]
    chosen += [normal[i] for i in sorted(gen.permutation(len(normal))[:n_normal])]
    return chosen


# ---------------------------------------------------------------- one repetition
def _method_params(spec, seed: int) -> dict:
    from xeval.influence import INFLUENCE_METHODS
    from xeval.registry import option_spec

    params = copy.deepcopy(spec.params)
    if "seed" in option_spec(INFLUENCE_METHODS.get(spec.name)):
        params.setdefault("seed", seed)
    return params


def _rankers(cfg, seed: int) -> list[tuple[str, bool, object]]:
    """(name, control, ranker) for every method and control of the run, in report order."""
    import xeval.influence as xi

    out: list[tuple[str, bool, object]] = []
    for spec in cfg.methods:
        params = _method_params(spec, seed)

        def self_scores(det, train, _n=spec.name, _p=params):
            return xi.self_influence(det, train, method=_n, l2=cfg.l2, **_p)

        def matrix(det, train, test, _n=spec.name, _p=params):
            return xi.influence(det, train, test, method=_n, l2=cfg.l2, **_p)

        out.append((spec.name, False, (self_scores, matrix)))
    for name in INFLUENCE_BASELINES.names():
        opts = dict(cfg.baselines.get(name, {}))
        cls = INFLUENCE_BASELINES.get(name)
        from xeval.registry import option_spec

        if "seed" in option_spec(cls):
            opts.setdefault("seed", seed)
        b = cls(**opts)
        out.append((name, True, (b.self_scores, b.matrix)))
    return out


def _build_detector(cfg, seed: int, extra: dict | None = None):
    from xeval.adapters.registry import build_detector

    recipe = copy.deepcopy(cfg.detector)
    recipe["params"] = {**recipe["params"], **(extra or {}), "seed": seed}
    return build_detector(recipe)


def _repetition(cfg, split, images, *, seed: int, rate: float, gallery: bool) -> dict:
    """One (category, seed, rate): contaminate, train, rank, explain, score."""
    cat = split.category
    cs = contaminate(
        split.train,
        split.test,
        rate=rate,
        seed=derived_seed(seed, cat, "contaminate"),
        defects=cfg.contamination.defects,
    )
    det = _build_detector(cfg, seed)
    train = images(list(cs.train))
    t = time.perf_counter()
    det.fit([train])
    fit_s = time.perf_counter() - t
    tests = (
        _pick_tests(
            cs,
            max_anomalies=cfg.per_test.max_anomalies,
            n_normal=cfg.per_test.n_normal,
            seed=derived_seed(seed, cat, "tests"),
        )
        if cfg.per_test.enabled
        else []
    )
    test_x = images(tests) if tests else None
    test_types = np.array([s.defect for s in tests], dtype=str)
    anomalous = test_types != NORMAL
    relevant = cs.planted[None, :] & (cs.types[None, :] == test_types[:, None])
    k_top = min(cfg.per_test.top_k, len(cs.train))
    base = {"category": cat, "seed": seed, "rate": rate, "k": cs.k, "n_train": len(cs.train)}
    rows: list[dict] = []
    curves: list[dict] = []
    matrices: dict[str, np.ndarray] = {}
    for name, control, (self_fn, matrix_fn) in _rankers(cfg, seed):
        print(f"[xeval] {cat} seed {seed} rate {rate:g}: {name}", file=sys.stderr)
        note = ""
        with _PeakMemory() as mem_self:
            t = time.perf_counter()
            try:
                scores = np.asarray(self_fn(det, train), dtype=np.float64)
            except InputError as exc:  # e.g. grad_cos: no self-influence (1 for every image)
                if control:
                    raise
                scores, note = None, f"no self-influence ranking: {exc}"
            self_s = time.perf_counter() - t
        cost = {"peak_memory_mb": mem_self.mib}
        if scores is None:
            values = {f"planted_{k}": float("nan") for k in _RANKING}
        else:
            values = {f"planted_{k}": v for k, v in detection_metrics(scores, cs.planted).items()}
            curve = cumulative_detection_curve(scores, cs.planted)
            curves += [
                {**base, "method": name, "control": control, "t": i + 1, "found": float(c)}
                for i, c in enumerate(curve)
            ]
            cost["seconds_per_train_image"] = self_s / len(train)
        if tests:
            with _PeakMemory() as mem_test:
                t = time.perf_counter()
                mat = np.asarray(matrix_fn(det, train, test_x), dtype=np.float64)
                test_s = time.perf_counter() - t
            cost["seconds_per_test_image"] = test_s / len(tests)
            cost["peak_memory_mb"] = float(np.nanmax([mem_self.mib, mem_test.mib]))
            if anomalous.any():
                values["attribution_auprc"] = float(
                    np.nanmean(attribution_auprc(mat[anomalous], relevant[anomalous]))
                )
                values["similarity_rate"] = float(
                    similarity_rate(mat[anomalous], cs.types, test_types[anomalous], k=k_top).mean()
                )
            values["top_k_cardinality"] = float(top_k_cardinality(mat, k=k_top))
            if gallery:
                matrices[name] = mat
        for metric, v in {**values, **cost}.items():
            rows.append(
                {
                    **base,
                    "method": name,
                    "control": control,
                    "metric": metric,
                    "value": v,
                    "note": note if metric.startswith("planted_") else "",
                }
            )
    out = {"rows": rows, "curves": curves, "fit_s": fit_s, "k": cs.k, "n_train": len(cs.train)}
    if gallery and tests:
        out["gallery"] = _gallery_items(cs, train, tests, test_x, matrices, cfg)
    return out


def _gallery_items(cs, train, tests, test_x, matrices, cfg) -> list[dict]:
    """The first ``gallery_tests`` explained test anomalies with, per method, their
    ``gallery_k`` most and least influential training images (indices, values)."""
    idx = [i for i, s in enumerate(tests) if s.defect != NORMAL][: cfg.report.gallery_tests]
    k = min(cfg.report.gallery_k, len(train))
    items = []
    for i in idx:
        per = {}
        for name, mat in matrices.items():
            order = np.argsort(-mat[i], kind="stable")
            per[name] = {
                "top": [(int(j), float(mat[i, j])) for j in order[:k]],
                "bottom": [(int(j), float(mat[i, j])) for j in order[::-1][:k]],
            }
        items.append(
            {
                "test_id": tests[i].id,
                "defect": tests[i].defect,
                "image": test_x[i],
                "methods": per,
                "train_ids": [s.id for s in cs.train],
                "train_types": cs.types.tolist(),
                "train": train,
            }
        )
    return items


# ------------------------------------------------------------------ aggregation
def seed_summary(
    values, *, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> dict:
    """Mean, two-sided ``confidence`` Student-t interval of the mean over seeds
    (``mean +- t_{n-1} * sd / sqrt(n)``, scipy.stats.t), sample standard deviation
    (ddof 1), min, max and n of the finite ``values``. Fewer than 2 finite values: no
    interval (NaN). With ``bounds`` (the metric's range) the interval is intersected
    with it: the mean lies in the range, so the intersection has the same coverage and
    never shows an impossible value (an AUROC above 1)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    out = {"mean": float(v.mean()) if n else float("nan"), "n": n}
    out["min"] = float(v.min()) if n else float("nan")
    out["max"] = float(v.max()) if n else float("nan")
    if n >= 2:
        sd = float(v.std(ddof=1))
        if sd == 0.0:
            lo = hi = out["mean"]
        else:
            lo, hi = stats.t.interval(confidence, n - 1, loc=out["mean"], scale=sd / np.sqrt(n))
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        out.update(sd=sd, ci_low=float(lo), ci_high=float(hi))
    else:
        out.update(sd=float("nan"), ci_low=float("nan"), ci_high=float("nan"))
    return out


def _label(metric: str, rate: float | None) -> str:
    return metric if rate is None else f"{metric}@{rate:g}"


def _result_rows(per_seed: pd.DataFrame, cfg, dataset: str) -> list[dict]:
    import json

    from xeval.results import make_row

    det = cfg.detector["name"]
    rows = []
    if per_seed.empty:
        return rows
    keys = ["category", "method", "metric"]
    for (cat, method, metric), g in per_seed.groupby(keys, sort=False):
        m = METRICS[metric]
        groups = [(r, gg) for r, gg in g.groupby("rate", sort=True)] if m.per_rate else [(None, g)]
        for rate, gg in groups:
            s = seed_summary(gg["value"].to_numpy(), bounds=m.bounds)
            spread = (
                f"sd {s['sd']:.4g}, range {s['min']:.4g} to {s['max']:.4g}"
                if s["n"] >= 2
                else "a single value: no spread"
            )
            units = "seeds" if m.per_rate else "(seed, rate) repetitions"
            why = "; ".join(dict.fromkeys(x for x in gg["note"].astype(str) if x))
            params = {"rate": rate} if rate is not None else {}
            if metric in ("similarity_rate", "top_k_cardinality"):
                params["k"] = cfg.per_test.top_k
            rows.append(
                make_row(
                    detector=det,
                    explainer=method,
                    dataset=dataset,
                    category=cat,
                    protocol=cfg.name,
                    metric=metric,
                    label=_label(metric, rate),
                    family=m.family,
                    params=json.dumps(params, sort_keys=True),
                    value=s["mean"],
                    ci_low=s["ci_low"],
                    ci_high=s["ci_high"],
                    n=s["n"],
                    higher_is_better=m.higher_is_better,
                    control=bool(gg["control"].iloc[0]),
                    headline=m.headline,
                    note=why
                    or f"mean over {s['n']} {units}; {CONFIDENCE:.0%} t-interval over "
                    f"{units}; {spread}",
                )
            )
    return rows


def _mean_rows(rows: list[dict]) -> list[dict]:
    """``category == "mean"``: the unweighted mean over categories of each (method,
    label); the interval is kept when there is one category, else NaN (the spread over
    categories is not a confidence interval)."""
    df = pd.DataFrame(rows)
    out = []
    for _, g in df.groupby(["explainer", "label"], sort=False):
        r = dict(g.iloc[0])
        cats = list(g["category"])
        r["category"] = "mean"
        r["value"] = float(np.nanmean(g["value"])) if g["value"].notna().any() else np.nan
        if len(cats) > 1:
            r["ci_low"] = r["ci_high"] = np.nan
            r["note"] = f"unweighted mean over categories {cats}"
            r["n"] = int(g["n"].sum())
        out.append(r)
    return out


# ------------------------------------------------------------------------- run
def run_influence(cfg, *, out_dir=None, resume: bool = True) -> InfluenceRunResult:
    """Run the influence configuration ``cfg`` and write its report into ``out_dir``
    (else ``cfg.output`` under the current folder; see :mod:`xeval.engine.output`):
    ``results.csv``, ``per_seed.csv``, ``curves.csv``, ``results.md``, ``index.html``,
    ``figures/`` and ``manifest.json``. The folder is locked while the run writes.
    Nothing is resumed: ``resume`` must be a bool and is recorded."""
    if not isinstance(resume, bool):
        raise InputError(f"resume must be True or False, got {resume!r}")
    out = claim_output(resolve_output(cfg, out_dir))
    with OutputLock(out):
        return _run(cfg, out, resume=resume)


def _run(cfg, out: Path, *, resume: bool) -> InfluenceRunResult:
    from xeval.engine.manifest import dataset_fingerprint, package_versions
    from xeval.reports.influence import write_influence_report

    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    splits = load_dataset(cfg)
    timings["dataset_s"] = time.perf_counter() - t
    contents = {c: s.fingerprint(content=True) for c, s in splits.items()}
    probe = _build_detector(cfg, cfg.seed)
    size = tuple(probe.input_size)
    per_seed: list[dict] = []
    curves: list[dict] = []
    gallery: list[dict] = []
    planted: dict = {}
    gallery_rate = max(cfg.contamination.rates)
    for cat, split in splits.items():
        images = _Images(size, cfg.batch_size, cat)
        for seed in cfg.seeds:
            for rate in cfg.contamination.rates:
                t = time.perf_counter()
                want_gallery = cfg.report.gallery and seed == cfg.seed and rate == gallery_rate
                rep = _repetition(cfg, split, images, seed=seed, rate=rate, gallery=want_gallery)
                key = f"{cat}/seed{seed}/rate{rate:g}"
                timings[f"{key}/fit_s"] = rep["fit_s"]
                timings[f"{key}/total_s"] = time.perf_counter() - t
                planted[key] = {"k": rep["k"], "n_train": rep["n_train"]}
                per_seed += rep["rows"]
                curves += rep["curves"]
                gallery += rep.get("gallery", [])
    for (name, note), n in (
        pd.DataFrame(per_seed, columns=["method", "note"])
        .query("note != ''")
        .value_counts(sort=False)
        .items()
        if per_seed
        else []
    ):
        warnings.warn(
            f"method {name!r}: {note}; its ranking metrics are NaN ({n} values)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    ps = pd.DataFrame(
        per_seed,
        columns=[
            "category",
            "seed",
            "rate",
            "k",
            "n_train",
            "method",
            "control",
            "metric",
            "value",
            "note",
        ],
    )
    rows = _result_rows(ps, cfg, cfg.dataset.name)
    gt_info: dict = {}
    if cfg.ground_truth.enabled:
        t = time.perf_counter()
        gt_rows, gt_info = _ground_truth(cfg, splits, size)
        rows += gt_rows
        timings["ground_truth_s"] = time.perf_counter() - t
    rows += _mean_rows(rows)
    from xeval.results import results_frame

    results = results_frame(rows)
    curves_df = pd.DataFrame(curves)
    timings["total_s"] = time.perf_counter() - t_all
    import platform

    import xeval

    manifest = {
        "task": "influence",
        "xeval_version": xeval.__version__,
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch_threads(),
        "config": cfg.to_dict(),
        "config_source": cfg.source,
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "seeds": list(cfg.seeds),
        "dataset_fingerprint": dataset_fingerprint(splits, contents),
        "dataset_fingerprint_kind": "content (sha256 of every file)",
        "dataset_categories": {c: s.counts() for c, s in splits.items()},
        "contamination": planted,
        "ground_truth": gt_info,
        "resume": "not supported: every run recomputes everything"
        if resume
        else "off (resume=False)",
        "conventions": _conventions(cfg),
        "metrics": {
            k: {"higher_is_better": m.higher_is_better, "definition": m.description}
            for k, m in METRICS.items()
        },
        "timings": timings,
    }
    res = InfluenceRunResult(
        results=results,
        per_seed=ps,
        curves=curves_df,
        manifest=manifest,
        out_dir=out,
        gallery=gallery,
    )
    res.files = write_influence_report(res, cfg)
    return res


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover
        return None


def _conventions(cfg) -> dict:
    return {
        "contamination": "k = round(rate * n_normal / (1 - rate)) anomalous test images "
        "planted (round-robin over defect types, seeded), shuffled among the normal "
        "training images; planted images leave the test set",
        "retraining": "the detector is trained from scratch on each contaminated set; its "
        "seed (initialisation, batch order, augmentation) is the repetition's seed, which "
        "replaces the recipe's params.seed",
        "ranking": "training images ranked by descending self-influence (methods) or "
        "score (controls); high = suspicious",
        "sign": "influence[i, j] = change of test image i's anomaly score when training "
        "image j is removed; positive = j makes i look normal",
        "ties": "AUROC ties count 1/2; AP by scikit-learn; precision@k and the "
        "cumulative-detection area are exact expectations over random orders of ties; "
        "top-k lists break ties by the lower training index",
        "controls": {
            name: INFLUENCE_BASELINES.get(name).description for name in INFLUENCE_BASELINES.names()
        },
        "per_test": f"up to {cfg.per_test.max_anomalies} test anomalies of the planted types "
        f"(round-robin over types, seeded) and {cfg.per_test.n_normal} normal test images per "
        f"(seed, rate); top-k with k = {cfg.per_test.top_k}; attribution AP and similarity "
        "rate over the anomalies, cardinality over all explained test images",
        "spread": f"mean over seeds, {CONFIDENCE:.0%} Student-t interval over seeds (n - 1 "
        "degrees of freedom; with few seeds it is wide; intersected with the metric's range, "
        "e.g. [0, 1] for an AUROC, which keeps its coverage), standard deviation and range "
        "in the note; per-seed values in per_seed.csv",
        "cost": "wall seconds per training image (self-influence) and per test image "
        "(influence), on this machine's torch threads; peak memory = peak resident set size "
        "above its value at the start of the call, sampled every 2 ms",
    }


def _ground_truth(cfg, splits, size) -> tuple[list[dict], dict]:
    """Exact leave-one-out and LDS on a tiny copy of the detector (first category),
    with the first seed.

    The copy (the run's detector params, then ``ground_truth.detector`` over them;
    ``batch_size`` 4096 and ``augment`` false unless given: full-batch, so that removing
    an image is the only change between retrainings) is trained from the first seed on
    ``n_train`` images: normal training images and anomalies planted at the largest
    rate. Each method's influence on ``n_test`` test images (anomalies of the planted
    types first) is compared with the exact leave-one-out effects (Spearman per test
    image) and with retraining on ``n_subsets`` random subsets (LDS); self-influence
    with the exact leave-one-out effect of each training image on itself."""
    import json

    from xeval.influence.evaluation import planted_auroc
    from xeval.influence.ground_truth import (
        leave_one_out,
        linear_datamodeling_score,
        loo_correlation,
        random_subsets,
        subset_scores,
    )
    from xeval.results import make_row

    gt = cfg.ground_truth
    cat, split = next(iter(splits.items()))
    seed = cfg.seed
    extra = {"batch_size": 4096, "augment": False, **gt.detector}
    probe = _build_detector(cfg, seed, extra)
    images = _Images(tuple(probe.input_size), cfg.batch_size, cat)
    rate = max(cfg.contamination.rates)
    gen = make_rng(seed, "ground-truth")
    n_normal = max(2, int(round(gt.n_train * (1 - rate))))
    if n_normal > len(split.train):
        raise InputError(
            f"ground_truth.n_train={gt.n_train} needs {n_normal} normal training images; "
            f"category {cat!r} has {len(split.train)}"
        )
    normal = [split.train[i] for i in sorted(gen.permutation(len(split.train))[:n_normal])]
    cs = contaminate(
        normal,
        split.test,
        rate=rate,
        seed=derived_seed(seed, cat, "gt"),
        defects=cfg.contamination.defects,
    )
    tests = _pick_tests(cs, max_anomalies=gt.n_test, n_normal=gt.n_test, seed=seed)[: gt.n_test]
    train, test_x = images(list(cs.train)), images(tests)
    n = len(train)
    both = np.concatenate([test_x, train])

    def retrain(keep: np.ndarray) -> np.ndarray:
        det = _build_detector(cfg, seed, extra)
        det.fit([train[keep]])
        return np.asarray(det.score(both), dtype=np.float64)

    t = time.perf_counter()
    loo_all = leave_one_out(retrain, n)
    masks = random_subsets(n, fraction=gt.fraction, n_subsets=gt.n_subsets, seed=seed)
    actual = subset_scores(retrain, masks)[:, : len(tests)]
    retrain_s = time.perf_counter() - t
    loo, loo_self = loo_all[: len(tests)], np.diag(loo_all[len(tests) :])
    det = _build_detector(cfg, seed, extra)
    det.fit([train])
    rows = []
    info = {
        "category": cat,
        "training images": f"{n} ({cs.k} planted at rate {rate:g})",
        "test images": len(tests),
        "retrainings": f"{n + 1} (leave-one-out) + {gt.n_subsets} (subsets of "
        f"{int(masks[0].sum())}), {retrain_s:.1f} s",
        "detector": json.dumps({**cfg.detector["params"], **extra}, sort_keys=True, default=str),
        "exact leave-one-out self-effect, planted AUROC": round(
            planted_auroc(loo_self, cs.planted), 4
        ),
    }
    for name, control, (self_fn, matrix_fn) in _rankers(cfg, seed):
        print(f"[xeval] ground truth: {name}", file=sys.stderr)
        mat = np.asarray(matrix_fn(det, train, test_x), dtype=np.float64)
        per = {
            "loo_spearman": loo_correlation(mat, loo),
            "lds": linear_datamodeling_score(mat, masks, actual),
        }
        try:
            s = np.asarray(self_fn(det, train), dtype=np.float64)
            per["self_loo_spearman"] = loo_correlation(s[None], loo_self[None])
        except InputError:
            if control:
                raise
        for metric, vals in per.items():
            summ = seed_summary(vals, bounds=(-1.0, 1.0))  # rank correlations
            rows.append(
                make_row(
                    detector=cfg.detector["name"],
                    explainer=name,
                    dataset=cfg.dataset.name,
                    category=cat,
                    protocol=cfg.name,
                    metric=metric,
                    label=metric,
                    family="ground_truth",
                    params=json.dumps({"fraction": gt.fraction, "n_subsets": gt.n_subsets}),
                    value=summ["mean"],
                    ci_low=summ["ci_low"],
                    ci_high=summ["ci_high"],
                    n=summ["n"],
                    higher_is_better=True,
                    control=control,
                    note=_GT_NOTES[metric],
                )
            )
    return rows, info


_GT_NOTES = {
    "loo_spearman": "Spearman over training images of influence and exact leave-one-out "
    "effects, mean over test images [95% t-interval over test images]",
    "lds": "linear datamodelling score (TRAK): Spearman over random subsets of the "
    "predicted (sum of influence over the removed images) and retrained scores, mean over "
    "test images [95% t-interval over test images]",
    "self_loo_spearman": "Spearman over training images of self-influence and each image's "
    "exact leave-one-out effect on its own score (one value)",
}
