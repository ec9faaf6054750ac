"""Run a protocol: dataset x detectors x explainers x metrics -> results and report.

One pass over the test set per detector: the detector predicts (score, map) once per
batch, each explainer explains once, every map is upsampled to its mask's native size
and streamed into the metric states; nothing holds all maps in memory (in ``exact``
mode the pixel state keeps the scores themselves, 4 bytes a pixel; ``binned`` mode is
constant-memory).

Thresholds for @t metrics are chosen on **normal validation** images held out from the
training set (never on the test set); oracle values are labelled optimistic.

Each finished (category, detector) unit is written atomically under
``<out>/.partial/<config hash>/`` so that an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import xeval
from xeval._io import atomic_write_bytes, atomic_write_json, atomic_write_text, safe_join
from xeval.adapters.base import Detector
from xeval.batch import Batch, Sample
from xeval.data.io import read_image
from xeval.data.loader import iter_batches
from xeval.data.split import CategorySplit
from xeval.errors import InputError
from xeval.explainers.base import Explainer
from xeval.metrics import ImageMetrics, PixelRanking, ThresholdMetrics, normal_threshold
from xeval.metrics.resize import resize_to
from xeval.protocols.config import RunConfig
from xeval.results import make_row, results_frame
from xeval.stats import bootstrap_auroc_ci, bootstrap_mean_ci

HIGHER_IS_BETTER = {
    "image_auroc": True,
    "image_aupr": True,
    "image_f1_max": True,
    "image_fpr@95tpr": False,
    "pixel_auroc": True,
    "pixel_aupr": True,
    "pro@t": True,
    "iou@t": True,
    "dice@t": True,
    "iou_per_image@t": True,
    "iou_oracle": True,
}


def _progress(iterable, **kw):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, leave=False, disable=None, **kw)


# ------------------------------------------------------------------------- datasets
def load_splits(cfg: RunConfig) -> dict[str, CategorySplit]:
    """The category splits the configuration names (building textures if needed)."""
    from xeval.data import list_categories, load_folder, load_mvtec, load_textures

    ds = cfg.dataset
    fmt = ds["format"]
    wanted = ds.get("categories")
    if fmt == "textures":
        opts = {
            k: v
            for k, v in ds.items()
            if k in ("quick", "tile", "n_train", "n_test_good", "n_test_defect_per_kind", "root")
        }
        splits = load_textures(seed=cfg.seed, categories=wanted, **opts)
    elif fmt == "mvtec":
        root = Path(ds["path"])
        cats = wanted or list_categories(root)
        splits = {c: load_mvtec(root, c) for c in cats}
    else:
        opts = {
            k: v
            for k, v in ds.items()
            if k in ("train_glob", "test_normal_glob", "test_anomalous_glob", "mask_pattern")
        }
        cat = ds.get("category", "default")
        splits = {cat: load_folder(ds["path"], category=cat, **opts)}
    if not splits:
        raise InputError(f"dataset {ds!r} has no categories to evaluate")
    return splits


def holdout(train: list[Sample], *, fraction: float, seed: int) -> tuple[list, list]:
    """Split normal training images into (fit, validation), seeded and stable."""
    if len(train) < 2:
        raise InputError(
            f"need at least 2 normal training images to hold out validation data, got {len(train)}"
        )
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train))
    n_val = min(max(1, round(fraction * len(train))), len(train) - 1)
    val = sorted(idx[:n_val].tolist())
    fit = sorted(idx[n_val:].tolist())
    return [train[i] for i in fit], [train[i] for i in val]


# ---------------------------------------------------------------------- run pieces
@dataclass
class _Unit:
    """Metric states and gallery candidates for one (category, detector, explainer)."""

    explainer: Explainer
    threshold: float
    pixel: PixelRanking
    pixel_state: object
    thr: ThresholdMetrics
    thr_state: object
    image: ImageMetrics
    image_state: object
    best: tuple | None = None
    worst: tuple | None = None
    per_image: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)


def _checked_predict(det: Detector, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, maps = det.predict(images)
    scores = np.asarray(scores)
    maps = np.asarray(maps)
    b = images.shape[0]
    if scores.shape != (b,):
        raise InputError(
            f"detector {det.name!r}: predict returned scores of shape "
            f"{scores.shape}, expected ({b},)"
        )
    if maps.ndim != 3 or maps.shape[0] != b:
        raise InputError(
            f"detector {det.name!r}: predict returned maps of shape {maps.shape}, "
            f"expected ({b}, h, w)"
        )
    if not np.isfinite(scores).all() or not np.isfinite(maps).all():
        raise InputError(f"detector {det.name!r}: predict returned NaN or inf scores/maps")
    return scores, maps


def _explain(expl: Explainer, det: Detector, batch: Batch, maps: np.ndarray) -> np.ndarray:
    a = np.asarray(expl.explain(det, batch, maps=maps))
    if a.ndim != 3 or a.shape[0] != len(batch):
        raise InputError(
            f"explainer {expl.name!r} returned shape {a.shape}, expected ({len(batch)}, h, w)"
        )
    if not np.isfinite(a).all():
        raise InputError(f"explainer {expl.name!r} returned NaN or inf values")
    return a


def _native(a: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each map bilinearly resized to its image's native (mask) size."""
    return [resize_to(a[i], sizes[i]) for i in range(a.shape[0])]


def _capabilities(det: Detector) -> set[str]:
    """What ``det`` can offer explainers, known before fitting (fail fast)."""
    can = {"image", "baseline"}  # the engine passes normal reference images as baselines
    if getattr(det, "has_map", True):
        can.add("map")
    if getattr(det, "differentiable", False):
        can |= {"gradients", "layer"}
    if type(det).encoder is not Detector.encoder:
        can.add("encoder")
    return can


def _check_pairing(det: Detector, explainers: list[Explainer]) -> None:
    can = _capabilities(det)
    for e in explainers:
        missing = set(getattr(e, "requires", frozenset())) - can
        if missing:
            ok = [x.name for x in explainers if not (set(x.requires) - can)]
            raise InputError(
                f"explainer {e.name!r} needs {sorted(missing)}, which detector {det.name!r} "
                f"does not provide; explainers that work with it: {ok}"
            )


def _fit_references(
    det: Detector,
    explainers: list[Explainer],
    samples: list[Sample],
    cfg: RunConfig,
    category: str,
    *,
    max_images: int = 32,
) -> np.ndarray | None:
    """Give explainers that take a baseline the normal reference images (a seeded
    subset of the fitting images, at the detector's input size)."""
    needy = [e for e in explainers if hasattr(e, "fit_reference")]
    if not needy and not cfg.metrics.get("faithfulness"):
        return None
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(rng.permutation(len(samples))[:max_images].tolist())
    ref = np.concatenate(
        [
            b.images
            for b in iter_batches(
                [samples[i] for i in pick],
                batch_size=cfg.batch_size,
                image_size=tuple(det.input_size),
                with_masks=False,
                category=category,
            )
        ]
    )
    for e in needy:
        e.fit_reference(ref)
    return ref


def _fit(det: Detector, samples: list[Sample], cfg: RunConfig, category: str) -> float:
    size = tuple(det.input_size)
    t = time.perf_counter()

    def images():
        for b in iter_batches(
            samples, batch_size=cfg.batch_size, image_size=size, with_masks=False, category=category
        ):
            yield b.images

    det.fit(images())
    return time.perf_counter() - t


def _thresholds(det, explainers, val, cfg, category) -> dict[str, float]:
    q = float(cfg.metrics["threshold"].get("quantile", 0.99))
    maps: dict[str, list] = {e.name: [] for e in explainers}
    for batch in iter_batches(
        val,
        batch_size=cfg.batch_size,
        image_size=tuple(det.input_size),
        with_masks=False,
        category=category,
    ):
        _, dmaps = _checked_predict(det, batch.images)
        for e in explainers:
            maps[e.name].extend(_native(_explain(e, det, batch, dmaps), batch.native_sizes))
    return {name: normal_threshold(m, quantile=q) for name, m in maps.items()}


LOCALISATION = {  # per-image metric -> higher is better
    "pointing_game": True,
    "relevance_mass": True,
    "relevance_rank": True,
    "top_k_intersection": True,
}
COMPLEXITY = {"gini": True, "entropy": False}
FAITHFULNESS = {"deletion_auc": False, "insertion_auc": True}


def _per_image_metric_specs(cfg: RunConfig) -> list[tuple[str, bool, str]]:
    """(metric, higher_is_better, note) of the per-image explanation metrics run."""
    out = []
    if cfg.metrics.get("localisation", True):
        note = "mean over anomalous images (empty masks excluded); maps at mask resolution"
        out += [(m, h, note) for m, h in LOCALISATION.items()]
        out[-1] = ("top_k_intersection", True, note + "; k = 5% of the pixels")
    if cfg.metrics.get("complexity", True):
        out += [
            ("gini", True, "Gini sparseness of |map| (higher = sparser)"),
            ("entropy", False, "entropy of |map| / sum |map| (lower = simpler)"),
        ]
    f = cfg.metrics.get("faithfulness") or {}
    if f:
        sub = f.get("substrate", "normal")
        note = (
            f"removed pixels replaced by '{sub}' substrate; {int(f.get('steps', 10))} "
            f"steps; up to {int(f.get('max_images', 16))} anomalous images"
        )
        out += [("deletion_auc", False, note), ("insertion_auc", True, note)]
    rob = cfg.metrics.get("robustness") or {}
    if rob:
        out.append(
            (
                "max_sensitivity",
                False,
                f"max over {int(rob.get('n_samples', 5))} uniform perturbations of radius "
                f"{rob.get('radius', 0.02)} of ||map change|| / ||map||; first "
                f"{int(rob.get('max_images', 4))} anomalous images",
            )
        )
    san = cfg.metrics.get("sanity") or {}
    if san:
        out.append(
            (
                "mprt_spearman",
                False,
                "Spearman(|map|) between the explanation of the trained detector and of "
                "the fully randomised one (cascading; lower = passes the sanity check); "
                f"first {int(san.get('max_images', 4))} anomalous images",
            )
        )
    return out


ROBUSTNESS = {"max_sensitivity": False, "mprt_spearman": False}


def _robustness_and_sanity(det, units, split, fit_samples, cfg) -> None:
    """Max-sensitivity and the cascading model-parameter randomisation test on the first
    ``max_images`` anomalous test images; per-image values join the per-image rows."""
    import warnings

    from xeval.batch import Batch
    from xeval.errors import UndefinedMetricWarning
    from xeval.metrics.randomisation import model_parameter_randomisation, mprt_summary
    from xeval.metrics.robustness import max_sensitivity

    rob = cfg.metrics.get("robustness") or {}
    san = cfg.metrics.get("sanity") or {}
    if not rob and not san:
        return
    k = int(max(rob.get("max_images", 4) if rob else 0, san.get("max_images", 4) if san else 0))
    picks = [s for s in split.test if s.label == 1][:k]
    if not picks:
        return
    size = tuple(det.input_size)
    batch = next(
        iter_batches(
            picks, batch_size=len(picks), image_size=size, with_masks=False, category=split.category
        )
    )
    ids = list(batch.ids)

    def explain_with(expl):
        def fn(detector, images):
            b = Batch(
                ids=ids[: len(images)]
                if len(images) == len(ids)
                else [f"{ids[i % len(ids)]}#p{i}" for i in range(len(images))],
                category=split.category,
                images=images,
                labels=np.ones(len(images), np.int64),
                masks=None,
            )
            maps = detector.predict(images)[1] if "map" in expl.requires else None
            return np.asarray(expl.explain(detector, b, maps=maps), dtype=np.float32)

        return fn

    refit = None
    for u in units.values():
        fn = explain_with(u.explainer)
        vals: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            if rob:
                vals["max_sensitivity"] = max_sensitivity(
                    lambda x, fn=fn: fn(det, x),
                    batch.images,
                    radius=float(rob.get("radius", 0.02)),
                    n_samples=int(rob.get("n_samples", 5)),
                    seed=cfg.seed,
                    batch_size=cfg.batch_size,
                )
            if san:
                if refit is None:
                    refit = [
                        b.images
                        for b in iter_batches(
                            fit_samples,
                            batch_size=cfg.batch_size,
                            image_size=size,
                            with_masks=False,
                            category=split.category,
                        )
                    ]
                res = model_parameter_randomisation(
                    det, batch.images, fn, refit_batches=refit, seed=cfg.seed
                )
                if res.testable:
                    vals["mprt_spearman"] = res.spearman_abs[:, -1]
                    u.notes["mprt"] = mprt_summary(res).reason
                else:
                    u.notes["mprt"] = res.status
        by_id = {r["id"]: r for r in u.per_image}
        for i, sid in enumerate(ids):
            for key, v in vals.items():
                by_id[sid][key] = float(v[i])


def _faithfulness_budget(cfg: RunConfig, batch: Batch, done: int) -> np.ndarray:
    """Which images of ``batch`` get deletion/insertion curves: anomalous images, up to
    ``faithfulness.max_images`` per (category, detector), in test order."""
    f = cfg.metrics.get("faithfulness") or {}
    take = np.zeros(len(batch), bool)
    if not f:
        return take
    room = int(f.get("max_images", 16)) - done
    for i in np.flatnonzero(batch.labels == 1):
        if room <= 0:
            break
        take[i] = True
        room -= 1
    return take


def _explanation_metrics(det, batch, amaps, ups, cfg, reference, faith) -> dict:
    """Per-image localisation, complexity and (for ``faith`` images) faithfulness."""
    import warnings

    from xeval import metrics as M
    from xeval.errors import UndefinedMetricWarning

    out: dict = {}
    with warnings.catch_warnings():
        # constant maps (e.g. a flat control) are NaN by definition; the report says so
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if cfg.metrics.get("localisation", True):
            masks = batch.masks
            out["pointing_game"] = M.pointing_game_per_image(masks, ups)
            out["relevance_mass"] = M.relevance_mass_per_image(masks, ups)
            out["relevance_rank"] = M.relevance_rank_per_image(masks, ups)
            out["top_k_intersection"] = M.top_k_intersection_per_image(masks, ups, k=0.05)
        if cfg.metrics.get("complexity", True):
            out["gini"] = M.gini_sparseness(ups)
            out["entropy"] = M.entropy_complexity(ups)
        f = cfg.metrics.get("faithfulness") or {}
        if f:
            dele = np.full(len(batch), np.nan)
            ins = np.full(len(batch), np.nan)
            if faith.any():
                idx = np.flatnonzero(faith)
                imgs = batch.images[idx]
                att = amaps[idx]
                if att.shape[-2:] != imgs.shape[-2:]:
                    att = resize_to(att, imgs.shape[-2:])
                kw = dict(
                    substrate=f.get("substrate", "normal"),
                    reference=reference,
                    steps=int(f.get("steps", 10)),
                    batch_size=cfg.batch_size * 4,
                    seed=cfg.seed,
                )
                dele[idx] = M.deletion_auc(det, imgs, att, **kw)
                ins[idx] = M.insertion_auc(det, imgs, att, **kw)
            out["deletion_auc"] = dele
            out["insertion_auc"] = ins
    return out


def _cached(explainers, det, fit_samples, cfg, cache_dir: Path) -> list[Explainer]:
    """Wrap attribution explainers in an on-disk cache keyed by the detector's config,
    seed and the exact fitting images (fits are deterministic for a seed)."""
    import hashlib

    from xeval.explainers.cache import CachedExplainer

    blob = json.dumps(
        {
            "detector": det.config(),
            "seed": cfg.seed,
            "fit": [(s.id, str(s.image_path)) for s in fit_samples],
            "size": list(det.input_size),
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()
    return [
        e if (e.control or "map" in e.requires) else CachedExplainer(e, cache_dir, detector_key=key)
        for e in explainers
    ]


def _candidate(unit: _Unit, value: float, sample: Sample, mask: np.ndarray, amap: np.ndarray):
    item = (value, sample.id, str(sample.image_path), mask, amap.astype(np.float32))
    if unit.best is None or value > unit.best[0]:
        unit.best = item
    if unit.worst is None or value < unit.worst[0]:
        unit.worst = item


def evaluate_detector(
    det: Detector,
    explainers: list[Explainer],
    split: CategorySplit,
    cfg: RunConfig,
    *,
    cache_dir: Path | None = None,
) -> dict:
    """Fit ``det`` on the category's normal images, explain and score the test set.

    Returns a dict with ``rows`` (results rows), ``curves`` (rows for the curves frame),
    ``per_image`` (rows), ``gallery`` (candidates) and ``timings``.
    """
    cat = split.category
    if not split.test:
        raise InputError(f"category {cat!r}: the test set is empty")
    _check_pairing(det, explainers)
    fit_s, val_s = holdout(split.train, fraction=cfg.metrics["validation_fraction"], seed=cfg.seed)
    timings = {"fit_s": _fit(det, fit_s, cfg, cat)}
    reference = _fit_references(det, explainers, fit_s, cfg, cat)
    faith_done = 0
    if cache_dir is not None:
        explainers = _cached(explainers, det, fit_s, cfg, cache_dir)
    t = time.perf_counter()
    thresholds = _thresholds(det, explainers, val_s, cfg, cat)
    timings["validation_s"] = time.perf_counter() - t
    limits = tuple(cfg.metrics["fpr_limits"])
    units = {}
    for e in explainers:
        pix = PixelRanking(
            fpr_limits=limits, mode=cfg.metrics["mode"], curves=True, curve_points=201
        )
        thr = ThresholdMetrics(threshold=thresholds[e.name])
        img = ImageMetrics()
        units[e.name] = _Unit(
            e, thresholds[e.name], pix, pix.init(), thr, thr.init(), img, img.init()
        )
    t = time.perf_counter()
    by_id = {s.id: s for s in split.test}
    batches = iter_batches(
        split.test,
        batch_size=cfg.batch_size,
        image_size=tuple(det.input_size),
        with_masks=True,
        category=cat,
    )
    n_batches = math.ceil(len(split.test) / cfg.batch_size)
    for batch in _progress(batches, total=n_batches, desc=f"{cat}/{det.name}"):
        scores, dmaps = _checked_predict(det, batch.images)
        masks = batch.masks
        expl_maps = {name: _explain(u.explainer, det, batch, dmaps) for name, u in units.items()}
        faith_left = _faithfulness_budget(cfg, batch, faith_done)
        for name, u in units.items():
            ups = _native(expl_maps[name], batch.native_sizes)
            u.pixel.update(u.pixel_state, masks, ups)
            n0 = len(u.thr_state.iou_per_image)
            u.thr.update(u.thr_state, masks, ups)
            ious = u.thr_state.iou_per_image[n0:]
            img_scores = scores if name == "native" else np.array([m.max() for m in ups])
            u.image.update(u.image_state, batch.labels, img_scores, ids=batch.ids)
            extra = _explanation_metrics(
                det, batch, expl_maps[name], ups, cfg, reference, faith_left
            )
            for i, sid in enumerate(batch.ids):
                u.per_image.append(
                    {
                        "category": cat,
                        "detector": det.name,
                        "explainer": name,
                        "id": sid,
                        "label": int(batch.labels[i]),
                        "image_score": float(img_scores[i]),
                        "control": bool(u.explainer.control),
                        "iou@t": ious[i],
                        **{k: float(v[i]) for k, v in extra.items()},
                    }
                )
                if not math.isnan(ious[i]):
                    _candidate(u, ious[i], by_id[sid], masks[i], ups[i])
        faith_done += int(faith_left.sum())
    timings["test_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _robustness_and_sanity(det, units, split, fit_s, cfg)
    timings["robustness_s"] = time.perf_counter() - t
    return _collect(det, units, cat, cfg, timings)


def _collect(det, units, cat, cfg, timings) -> dict:
    rows, curves, per_image, gallery = [], [], [], []
    n_boot = int(cfg.metrics.get("bootstrap", 1000))
    dataset = cfg.dataset["format"]
    for name, u in units.items():
        base = {
            "detector": det.name,
            "explainer": name,
            "dataset": dataset,
            "category": cat,
            "protocol": cfg.name,
        }
        img = u.image.compute(u.image_state)
        y = np.asarray(u.image_state.labels)
        s = np.asarray(u.image_state.scores)
        n_img = int(y.size)
        score_note = (
            "image score = detector score" if name == "native" else "image score = max of map"
        )
        lo, hi = bootstrap_auroc_ci(y, s, n_boot=n_boot, seed=cfg.seed)
        for k, v in img.items():
            ci = (lo, hi) if k == "image_auroc" else (math.nan, math.nan)
            note = score_note + ("; oracle threshold (optimistic)" if k == "image_f1_max" else "")
            rows.append(
                make_row(
                    **base,
                    metric=k,
                    value=v,
                    ci_low=ci[0],
                    ci_high=ci[1],
                    n=n_img,
                    higher_is_better=HIGHER_IS_BETTER[k],
                    note=note,
                )
            )
        pix = u.pixel.compute(u.pixel_state)
        bound = {k.split("/", 1)[1]: v for k, v in pix.items() if k.startswith("error_bound/")}
        for k in ("pixel_auroc", "pixel_aupr", *(f"aupro@{x:g}" for x in u.pixel.fpr_limits)):
            note = f"binned, |error| <= {bound[k]:.1e}" if k in bound else "exact"
            rows.append(
                make_row(**base, metric=k, value=pix[k], n=n_img, higher_is_better=True, note=note)
            )
        rows.append(
            make_row(
                **base,
                metric="iou_oracle",
                value=pix.get("iou_oracle", math.nan),
                n=n_img,
                higher_is_better=True,
                threshold=pix.get("iou_oracle_threshold", math.nan),
                note="threshold tuned on the test set (optimistic)",
            )
        )
        thr = u.thr.compute(u.thr_state)
        q = cfg.metrics["threshold"].get("quantile", 0.99)
        tnote = f"threshold = {q:g} quantile of normal validation pixels"
        for k in ("pro@t", "iou@t", "dice@t"):
            rows.append(
                make_row(
                    **base,
                    metric=k,
                    value=thr[k],
                    n=n_img,
                    higher_is_better=True,
                    threshold=u.threshold,
                    note=tnote,
                )
            )
        ious = thr["iou_per_image"]
        lo, hi = bootstrap_mean_ci(ious, n_boot=n_boot, seed=cfg.seed)
        rows.append(
            make_row(
                **base,
                metric="iou_per_image@t",
                value=thr["iou_per_image@t"],
                ci_low=lo,
                ci_high=hi,
                n=int(np.sum(~np.isnan(ious))),
                higher_is_better=True,
                threshold=u.threshold,
                note=tnote + "; mean over anomalous images",
            )
        )
        for metric, hib, note in _per_image_metric_specs(cfg):
            vals = np.array([r.get(metric, np.nan) for r in u.per_image], dtype=float)
            if np.isnan(vals).all() and metric not in (*FAITHFULNESS, *ROBUSTNESS):
                continue
            if metric == "mprt_spearman" and "mprt" in u.notes:
                note = f"{note}; {u.notes['mprt']}"
            defined = ~np.isnan(vals)
            value = float(vals[defined].mean()) if defined.any() else math.nan
            lo, hi = bootstrap_mean_ci(vals, n_boot=n_boot, seed=cfg.seed)
            rows.append(
                make_row(
                    **base,
                    metric=metric,
                    value=value,
                    ci_low=lo,
                    ci_high=hi,
                    n=int(defined.sum()),
                    higher_is_better=hib,
                    note=note,
                )
            )
        for kind in ("roc", "pro"):
            if f"{kind}_curve" in pix:
                x, yv = pix[f"{kind}_curve"]
                curves += [
                    dict(
                        detector=det.name,
                        explainer=name,
                        category=cat,
                        curve=kind,
                        x=float(a),
                        y=float(b),
                    )
                    for a, b in zip(x, yv, strict=True)
                ]
        if y.any() and not y.all():
            from sklearn.metrics import roc_curve

            fx, tx, _ = roc_curve(y, s)
            curves += [
                dict(
                    detector=det.name,
                    explainer=name,
                    category=cat,
                    curve="image_roc",
                    x=float(a),
                    y=float(b),
                )
                for a, b in zip(fx, tx, strict=True)
            ]
        per_image += u.per_image
        for rank, cand in (("best", u.best), ("worst", u.worst)):
            if cand is not None:
                gallery.append(
                    {
                        "detector": det.name,
                        "explainer": name,
                        "category": cat,
                        "rank": rank,
                        "value": cand[0],
                        "sample_id": cand[1],
                        "image_path": cand[2],
                        "mask": cand[3],
                        "amap": cand[4],
                    }
                )
    return {
        "rows": rows,
        "curves": curves,
        "per_image": per_image,
        "gallery": gallery,
        "timings": {f"{cat}/{det.name}/{k}": v for k, v in timings.items()},
    }


# ------------------------------------------------------------------- partial results
def _unit_path(part_dir: Path, cat: str, det_name: str) -> Path:
    import hashlib

    key = hashlib.sha256(f"{cat}\x00{det_name}".encode()).hexdigest()[:16]
    return part_dir / key


def _save_unit(path: Path, unit: dict) -> None:
    import io

    arrays = {}
    gal = []
    for i, g in enumerate(unit["gallery"]):
        arrays[f"mask{i}"] = g["mask"]
        arrays[f"amap{i}"] = g["amap"]
        gal.append({k: v for k, v in g.items() if k not in ("mask", "amap")})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
    meta = {k: unit[k] for k in ("rows", "curves", "per_image", "timings")}
    meta["gallery"] = gal
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, default=_json_default))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _load_unit(path: Path) -> dict | None:
    j, z = path.with_suffix(".json"), path.with_suffix(".npz")
    if not (j.exists() and z.exists()):
        return None
    meta = json.loads(j.read_text())
    with np.load(z, allow_pickle=False) as arrs:
        for i, g in enumerate(meta["gallery"]):
            g["mask"] = arrs[f"mask{i}"]
            g["amap"] = arrs[f"amap{i}"]
    return meta


# ------------------------------------------------------------------------------ run
@dataclass
class RunResult:
    results: pd.DataFrame
    curves: pd.DataFrame
    per_image: pd.DataFrame
    manifest: dict
    out_dir: Path
    files: dict = field(default_factory=dict)


def _mean_rows(rows: list[dict]) -> list[dict]:
    df = pd.DataFrame(rows)
    out = []
    keys = ["detector", "explainer", "dataset", "protocol", "metric"]
    for key, g in df.groupby(keys, sort=False):
        vals = g["value"].astype(float).to_numpy()
        defined = ~np.isnan(vals)
        note = f"mean over {int(defined.sum())} categories"
        if not defined.all():
            missing = g.loc[~defined, "category"].tolist()
            note += f" (undefined in {missing}, excluded)"
        value = float(vals[defined].mean()) if defined.any() else math.nan
        out.append(
            make_row(
                **dict(zip(keys, key, strict=True)),
                category="mean",
                value=value,
                n=int(g["n"].sum()),
                higher_is_better=bool(g["higher_is_better"].iloc[0]),
                note=note,
            )
        )
    return out


def _manifest(
    cfg: RunConfig, splits: dict[str, CategorySplit], timings: dict, detectors: dict
) -> dict:
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0], "xeval": xeval.__version__}
    for pkg in ("numpy", "scipy", "scikit-learn", "torch", "pandas", "scikit-image"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    import hashlib

    fp = hashlib.sha256("".join(s.fingerprint() for s in splits.values()).encode()).hexdigest()
    return {
        "xeval_version": xeval.__version__,
        "versions": versions,
        "platform": platform.platform(),
        "config": cfg.to_dict(),
        "config_source": cfg.source,
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "dataset_fingerprint": fp[:16],
        "dataset_categories": {c: s.counts() for c, s in splits.items()},
        "detectors": detectors,
        "timings": timings,
        "metric_notes": {
            "pixel metrics": "maps upsampled bilinearly to the mask's native size; no "
            "normalisation, no clamping",
            "thresholds": "chosen on normal validation images held out from training",
        },
    }


def _gallery_items(gallery: list[dict]):
    from xeval.reports import GalleryItem

    items = []
    # one best and one worst per (detector, explainer) over all categories
    best: dict = {}
    for g in gallery:
        k = (g["detector"], g["explainer"], g["rank"])
        cur = best.get(k)
        if (
            cur is None
            or (g["rank"] == "best" and g["value"] > cur["value"])
            or (g["rank"] == "worst" and g["value"] < cur["value"])
        ):
            best[k] = g
    order = {"best": 0, "worst": 1}
    for g in sorted(best.values(), key=lambda g: (g["detector"], g["explainer"], order[g["rank"]])):
        img = read_image(g["image_path"])
        if img.shape[:2] != g["mask"].shape:
            img = np.moveaxis(resize_to(np.moveaxis(img, -1, 0), g["mask"].shape), 0, -1)
        items.append(
            GalleryItem(
                detector=g["detector"],
                explainer=g["explainer"],
                category=g["category"],
                sample_id=g["sample_id"],
                rank=g["rank"],
                metric="iou_per_image@t",
                value=float(g["value"]),
                image=img,
                mask=g["mask"],
                amap=g["amap"],
            )
        )
    return items


def run(cfg: RunConfig, *, out_dir: str | Path | None = None, resume: bool = True) -> RunResult:
    """Run ``cfg`` and write the report into ``out_dir`` (default ``cfg.output``)."""
    from xeval.adapters.registry import build_detector
    from xeval.explainers.registry import build_explainer
    from xeval.reports import ReportData, write_report

    t_start = time.perf_counter()
    out = Path(out_dir or cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    part_dir = safe_join(out, ".partial", cfg.config_hash())
    part_dir.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    cache_dir = None
    if cfg.cache:
        cache_dir = (
            safe_join(out, ".cache", "explanations") if cfg.cache is True else Path(cfg.cache)
        )
    t = time.perf_counter()
    splits = load_splits(cfg)
    timings["dataset_s"] = time.perf_counter() - t
    rows, curves, per_image, gallery, det_cfgs = [], [], [], [], {}
    for cat, split in splits.items():
        for recipe in cfg.detectors:
            recipe = dict(recipe)
            params = dict(recipe.get("params") or {})
            params.setdefault("seed", cfg.seed)
            recipe["params"] = params
            name = recipe.get("name", recipe["kind"])
            path = _unit_path(part_dir, cat, name)
            unit = _load_unit(path) if resume else None
            if unit is None:
                det = build_detector(
                    {k: v for k, v in recipe.items() if k not in ("explainers", "metrics")}
                )
                det_cfgs[det.name] = det.config()
                explainers = [
                    build_explainer(e) for e in recipe.get("explainers") or cfg.explainers
                ]
                print(
                    f"[xeval] {cat}: {det.name} (fit + explain {len(explainers)} explainers)",
                    file=sys.stderr,
                )
                dcfg = cfg
                if recipe.get("metrics"):  # per-detector metric options override the run's
                    dcfg = dataclasses.replace(cfg, metrics={**cfg.metrics, **recipe["metrics"]})
                unit = evaluate_detector(det, explainers, split, dcfg, cache_dir=cache_dir)
                _save_unit(path, unit)
            else:
                print(f"[xeval] {cat}: {name} (resumed from {path.parent})", file=sys.stderr)
                det_cfgs.setdefault(name, recipe)
            rows += unit["rows"]
            curves += unit["curves"]
            per_image += unit["per_image"]
            gallery += unit["gallery"]
            timings.update(unit["timings"])
    rows += _mean_rows(rows)
    results = results_frame(rows)
    curves_df = pd.DataFrame(
        curves, columns=["detector", "explainer", "category", "curve", "x", "y"]
    )
    per_image_df = pd.DataFrame(per_image)
    timings["total_s"] = time.perf_counter() - t_start
    manifest = _manifest(cfg, splits, timings, det_cfgs)
    from xeval.engine.verdicts import rank_table, verdicts

    verdict_metrics = {"iou@t": True, **LOCALISATION, **FAITHFULNESS, **ROBUSTNESS}
    verdict_df = verdicts(
        per_image_df,
        metrics=verdict_metrics,
        n_boot=int(cfg.metrics.get("bootstrap", 1000)),
        seed=cfg.seed,
    )
    lim = f"aupro@{cfg.metrics['fpr_limits'][0]:g}"
    ranks_df = rank_table(
        results,
        metrics=[
            "pixel_auroc",
            lim,
            "iou@t",
            "relevance_mass",
            "relevance_rank",
            "pointing_game",
            "deletion_auc",
            "insertion_auc",
        ],
    )
    report = ReportData(
        verdicts=verdict_df,
        ranks=ranks_df,
        results=results,
        curves=curves_df,
        gallery=_gallery_items(gallery) if cfg.report.get("gallery", True) else [],
        manifest=manifest,
        title=f"xeval report: {cfg.name}",
    )
    files = write_report(report, out, figures=bool(cfg.report.get("figures", True)))
    atomic_write_text(out / "per_image.csv", per_image_df.to_csv(index=False))
    files["per_image.csv"] = out / "per_image.csv"
    manifest["timings"]["report_s"] = time.perf_counter() - t_start - timings["total_s"]
    atomic_write_json(out / "manifest.json", manifest)
    return RunResult(results, curves_df, per_image_df, manifest, out, files)
