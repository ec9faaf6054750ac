"""Run a video configuration: video dataset x video detectors x explainers x metrics ->
results, per-frame scores, curves and the video report.

Phases (as for images, one module's worth each):

1. load the dataset (:data:`~xeval.registry.VIDEO_DATASETS`), validate it, and hold
   out whole normal training videos (seeded) for calibration;
2. fit each detector on the remaining normal training videos;
3. calibrate what metrics ask for (e.g. the map threshold that turns maps into boxes)
   on the held-out **normal** videos, per explainer -- never on the test set;
4. stream the test videos: predict once per video, explain once per explainer, and
   update every metric's state in chunks of frames (maps upsampled bilinearly to the
   frames' native size); the engine names no metric;
5. collect rows (with the conventions each metric reports in its note), per-frame
   scores and curves; write everything atomically, then the report.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xeval._io import atomic_write_json, atomic_write_text
from xeval.adapters.video.base import VideoDetector, VideoPrediction
from xeval.data.video.base import Video, VideoDataset
from xeval.engine.evaluate import MetricStates
from xeval.engine.output import OutputLock, claim_output, resolve_output
from xeval.errors import ConfigError, InputError, UndefinedMetricWarning
from xeval.explainers.video import VideoExplainer, VideoExplanation
from xeval.metrics.base import Explanation, Metric, canonical_params
from xeval.metrics.resize import resize_to
from xeval.progress import progress
from xeval.protocols.config import build_metrics
from xeval.protocols.video import VideoRunConfig
from xeval.record import Inputs, Record, Targets
from xeval.registry import VIDEO_DATASETS, VIDEO_EXPLAINERS, option_spec
from xeval.results import make_row, results_frame

__all__ = ["VideoRunResult", "load_video_dataset", "run_video", "split_videos"]


@dataclass
class VideoRunResult:
    results: pd.DataFrame
    per_frame: pd.DataFrame
    curves: pd.DataFrame
    manifest: dict
    out_dir: Path
    files: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- load
def load_video_dataset(cfg: VideoRunConfig) -> VideoDataset:
    """The configured dataset, validated (frame counts, tracks, reasons)."""
    reader = VIDEO_DATASETS.get(cfg.dataset.name)
    opts = dict(cfg.dataset.params)
    if "seed" in option_spec(reader) and "seed" not in opts:
        opts["seed"] = cfg.seed
    ds = reader(**opts)
    ds.validate()
    if not ds.train:
        raise InputError(f"dataset {ds.name!r} has no normal training video to fit on")
    if not ds.test:
        raise InputError(f"dataset {ds.name!r} has no test video")
    return ds


def split_videos(videos: list[Video], fraction: float, seed: int) -> tuple[list, list]:
    """``(fit, validation)``: ``ceil(fraction * n)`` whole videos (at least one) held out
    for calibration, chosen with ``seed``; with a single training video its last
    ``fraction`` of frames is held out instead (documented in the manifest)."""
    n = len(videos)
    if n == 1:
        v = videos[0]
        cut = max(1, min(v.n_frames - 1, round(v.n_frames * (1 - fraction))))
        fit = _clip(v, 0, cut, suffix="fit")
        val = _clip(v, cut, v.n_frames, suffix="validation")
        return [fit], [val]
    k = min(n - 1, max(1, math.ceil(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:k].tolist())
    return (
        [v for i, v in enumerate(videos) if i not in val_idx],
        [v for i, v in enumerate(videos) if i in val_idx],
    )


def _clip(v: Video, start: int, stop: int, *, suffix: str) -> Video:
    return Video(
        video_id=f"{v.video_id}[{suffix}]",
        n_frames=stop - start,
        frame_size=v.frame_size,
        read=lambda a, b, _s=start: v.read(_s + a, _s + b),
        frame_names=v.frame_names[start:stop] if v.frame_names else [],
        labels=None if v.labels is None else np.asarray(v.labels)[start:stop],
        source=v.source,
    )


def _check_needs(metrics: list[Metric], ds: VideoDataset) -> None:
    """Metrics that need masks, regions or reasons the dataset lacks: an error before
    anything is fitted, naming the metric and the videos."""
    for m in metrics:
        if "masks" in m.needs:
            bad = [v.video_id for v in ds.test if v.read_masks is None]
            if bad:
                raise ConfigError(
                    f"metric {m.label!r} needs pixel masks, which test videos {bad[:5]} "
                    f"{'...' if len(bad) > 5 else ''}do not have; remove the metric or "
                    "give masks"
                )
        if "regions" in m.needs and all(v.regions is None for v in ds.test):
            raise ConfigError(
                f"metric {m.label!r} needs region tracks, which dataset {ds.name!r} does not "
                "have (Street Scene / MERL track files)"
            )
        if m.family == "reasons" and ds.vocabulary is None:
            raise ConfigError(
                f"metric {m.label!r} needs reason labels (X-MAN), which dataset {ds.name!r} "
                "does not have"
            )
    for v in ds.test:
        if v.labels is None:
            raise InputError(f"test video {v.video_id} ({v.source}) has no frame labels")


# --------------------------------------------------------------------------- explain
def _explain(
    exp: VideoExplainer,
    frames: np.ndarray,
    pred: VideoPrediction,
    video: Video,
    ds: VideoDataset,
    det: VideoDetector,
) -> VideoExplanation:
    ex = exp.explain(
        frames,
        pred,
        video_id=video.video_id,
        frame_names=video.frame_names or [str(t) for t in range(video.n_frames)],
        vocabulary=ds.vocabulary,
        detector=det,
    )
    t = video.n_frames
    maps = np.asarray(ex.maps)
    if maps.ndim != 3 or maps.shape[0] != t or np.shape(ex.scores) != (t,):
        raise InputError(
            f"explainer {exp.name!r} on video {video.video_id}: expected {t} maps and scores, "
            f"got maps {maps.shape} and scores {np.shape(ex.scores)}"
        )
    if not np.isfinite(maps).all() or not np.isfinite(ex.scores).all():
        bad = int(np.flatnonzero(~np.isfinite(np.asarray(ex.scores)))[:1].sum())
        raise InputError(
            f"explainer {exp.name!r} on video {video.video_id}: non-finite maps or scores "
            f"(first at frame {bad})"
        )
    return ex


def _calibrate(
    requests: list[tuple],
    exp: VideoExplainer,
    det: VideoDetector,
    videos: list[Video],
    preds: dict[str, VideoPrediction],
    ds: VideoDataset,
) -> dict:
    """``{request: value}`` on the normal validation videos (``normal_quantile``: the
    exact quantile of their native-size map pixels)."""
    out: dict = {}
    if not requests:
        return out
    pixels = []
    for v in videos:
        ex = _explain(exp, v.frames(), preds[v.video_id], v, ds, det)
        pixels.append(np.asarray(resize_to(ex.maps, v.frame_size), dtype=np.float64).ravel())
    allpix = np.concatenate(pixels) if pixels else np.zeros(0)
    for r in requests:
        if r[0] == "normal_quantile":
            if allpix.size == 0 or allpix.min() == allpix.max():
                out[r] = math.nan  # constant normal maps: the metrics that need it say so
            else:
                out[r] = float(np.quantile(allpix, float(r[1])))
        else:
            raise ConfigError(f"video runs cannot calibrate {r!r} (known: normal_quantile)")
    return out


def normal_reference_frames(videos: list[Video], *, n: int = 8) -> np.ndarray:
    """``n`` normal frames ``(n, H, W, C)`` evenly spaced over the fitting videos (the
    baselines of attribution methods: normal content, never black)."""
    total = sum(v.n_frames for v in videos)
    picks = np.linspace(0, total - 1, num=min(n, total)).round().astype(int)
    out, start = [], 0
    for v in videos:
        for p in picks[(picks >= start) & (picks < start + v.n_frames)]:
            out.append(v.frames(int(p - start), int(p - start) + 1)[0])
        start += v.n_frames
    return np.stack(out)


def _frame_regions(video: Video) -> list[np.ndarray]:
    """Per frame the ground-truth rows ``(frame, track, x1, y1, x2, y2)`` of ``video``."""
    t = video.n_frames
    if video.regions is None or not len(video.regions):
        return [np.zeros((0, 6)) for _ in range(t)]
    r = np.asarray(video.regions, dtype=np.float64)
    f = r[:, 0].astype(np.int64)
    return [r[f == i] for i in range(t)]


def _records(
    video: Video,
    ds: VideoDataset,
    ex: VideoExplanation,
    exp: VideoExplainer,
    calibration: dict,
    chunk: int,
):
    """``(Record, Explanation)`` per chunk of ``chunk`` frames of ``video``."""
    t = video.n_frames
    names = video.frame_names or [str(i) for i in range(t)]
    labels = np.asarray(video.labels).astype(bool)
    regions = _frame_regions(video)
    reasons = video.reasons or {}
    for a in range(0, t, chunk):
        b = min(t, a + chunk)
        masks = video.masks(a, b)
        masks_list = None if masks is None else [np.asarray(m, dtype=bool) for m in masks]
        native = list(resize_to(np.asarray(ex.maps[a:b]), video.frame_size))
        rec = Record(
            inputs=Inputs(
                ids=[f"{video.video_id}/{names[i]}" for i in range(a, b)],
                category=ds.name,
                native_sizes=[video.frame_size] * (b - a),
                video_ids=[video.video_id] * (b - a),
                frame_index=np.arange(a, b),
            ),
            targets=Targets(
                labels=labels[a:b].astype(np.int64),
                masks=masks_list,
                regions=regions[a:b],
                reasons=[tuple(reasons.get(i, ())) for i in range(a, b)],
            ),
        )
        expl = Explanation(
            explainer=exp.name,
            maps=np.asarray(ex.maps[a:b], dtype=np.float32),
            native=native,
            scores=np.asarray(ex.scores[a:b], dtype=np.float64),
            control=exp.control,
            calibration=calibration,
            boxes=None if ex.boxes is None else ex.boxes[a:b],
            reasons=None if ex.reasons is None else np.asarray(ex.reasons[a:b]),
            reason_names=tuple(ex.reason_names),
        )
        yield rec, expl


# ------------------------------------------------------------------------------ run
def run_video(
    cfg: VideoRunConfig, *, out_dir: str | Path | None = None, resume: bool = True
) -> VideoRunResult:
    """Run a video configuration and write the report into ``out_dir`` (see
    :func:`xeval.engine.run` for the output folder rules)."""
    if not isinstance(resume, bool):
        raise InputError(f"resume must be True or False, got {resume!r}")
    out = claim_output(resolve_output(cfg, out_dir))
    with OutputLock(out):
        return _run(cfg, out)


def _run(cfg: VideoRunConfig, out: Path) -> VideoRunResult:
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ds = load_video_dataset(cfg)
    timings["load_s"] = time.perf_counter() - t
    metrics = build_metrics(cfg.metrics)
    _check_needs(metrics, ds)
    fit_v, val_v = split_videos(ds.train, cfg.evaluation.validation_videos, cfg.seed)
    requests = list(dict.fromkeys(r for m in metrics for r in m.calibrations()))

    rows: list[dict] = []
    per_frame: list[pd.DataFrame] = []
    curves: list[dict] = []
    extras: dict = {"reasons": {}, "filmstrip": {}, "reason_scores": {}, "replicates": {}}
    film_frames = filmstrip_frames(ds)
    extras["filmstrip_frames"] = film_frames
    units: dict = {}
    for spec in cfg.detectors:
        det = spec.build()
        if ds.vocabulary is not None:
            det.set_vocabulary(ds.vocabulary)
        t = time.perf_counter()
        det.fit([v.frames() for v in fit_v])
        timings[f"{spec.name}/fit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        preds = {
            v.video_id: det.predict(v.frames())
            for v in progress(val_v + ds.test, desc=f"{spec.name} predict")
        }
        for v in val_v + ds.test:
            p = preds[v.video_id]
            if p.scores.shape != (v.n_frames,):
                raise InputError(
                    f"detector {spec.name!r} on video {v.video_id}: {p.scores.shape[0]} frame "
                    f"scores for {v.n_frames} frames"
                )
        timings[f"{spec.name}/predict_s"] = time.perf_counter() - t
        explainers = [VIDEO_EXPLAINERS.get(e.name)(**e.params) for e in cfg.explainers_for(spec)]
        if any(hasattr(e, "fit_reference") for e in explainers):
            reference = normal_reference_frames(fit_v, n=8)
            for e in explainers:
                if hasattr(e, "fit_reference"):
                    e.fit_reference(reference)
        units[spec.name] = {
            "detector": {"kind": spec.kind, "params": spec.params},
            "explainers": [e.config() for e in explainers],
            "fit_videos": [v.video_id for v in fit_v],
            "validation_videos": [v.video_id for v in val_v],
            "calibration": {},
        }
        for exp in explainers:
            t = time.perf_counter()
            calibration = _calibrate(requests, exp, det, val_v, preds, ds)
            units[spec.name]["calibration"][exp.name] = {
                f"{r[0]}@{r[1]:g}" if len(r) > 1 else r[0]: v for r, v in calibration.items()
            }
            by_video: dict[str, MetricStates] = {}
            active: list[Metric] | None = None
            film: dict = {}
            y_true, y_score = [], []
            for v in progress(ds.test, desc=f"{spec.name}/{exp.name} test"):
                frames = v.frames()
                ex = _explain(exp, frames, preds[v.video_id], v, ds, det)
                if active is None:
                    active = _applicable(metrics, ex)
                states = by_video[v.video_id] = MetricStates(active)
                for rec, expl in _records(v, ds, ex, exp, calibration, cfg.evaluation.chunk_frames):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UndefinedMetricWarning)
                        states.update(rec, expl, stage="stream", subsets={})
                per_frame.append(_per_frame_rows(spec.name, exp, v, ex))
                for f in film_frames.get(v.video_id, ()):
                    film[(v.video_id, f)] = {
                        "map": np.asarray(ex.maps[f]),
                        "score": float(ex.scores[f]),
                        "boxes": None if ex.boxes is None else ex.boxes[f],
                        "reasons": None if ex.reasons is None else np.asarray(ex.reasons[f]),
                    }
                if ex.reasons is not None and ds.vocabulary is not None:
                    y_true.append(_reason_targets(v, ds))
                    y_score.append(_aligned_reasons(ex, ds, exp.name))
            extras["filmstrip"][(spec.name, exp.name)] = film
            if y_true:
                extras["reason_scores"][(spec.name, exp.name)] = (
                    np.concatenate(y_true),
                    np.concatenate(y_score),
                    np.concatenate([np.asarray(v.labels).astype(bool) for v in ds.test]),
                )
            states, replicates = jackknife_states(
                list(by_video.values()), max_groups=cfg.evaluation.jackknife_groups
            )
            new_rows, new_curves, reason_extra = _collect(
                spec.name, exp, active or [], states, replicates, ds, cfg
            )
            for r in new_rows:
                extras["replicates"][(spec.name, exp.name, r["label"])] = r.pop("_replicates")
            rows.extend(new_rows)
            curves.extend(new_curves)
            if reason_extra:
                extras["reasons"][(spec.name, exp.name)] = reason_extra
            timings[f"{spec.name}/{exp.name}/evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_all

    results = results_frame(rows)
    frames_df = pd.concat(per_frame, ignore_index=True) if per_frame else pd.DataFrame()
    curves_df = pd.DataFrame(curves)
    manifest = _manifest(cfg, ds, metrics, results, units, timings)
    files = {}
    from xeval.reports.writer import results_csv

    files["results"] = atomic_write_text(out / "results.csv", results_csv(results))
    files["per_frame"] = atomic_write_text(out / "per_frame.csv", frames_df.to_csv(index=False))
    files["manifest"] = atomic_write_json(out / "manifest.json", manifest)
    res = VideoRunResult(results, frames_df, curves_df, manifest, out, files, extras)
    from xeval.reports.rebuild import save_video_inputs
    from xeval.reports.video import write_video_report

    res.files.update(save_video_inputs(res, ds, out))  # what `xeval report` rebuilds from

    res.files.update(write_video_report(res, ds, cfg))
    return res


def filmstrip_frames(ds: VideoDataset, *, n: int = 6) -> dict[str, list[int]]:
    """Frames shown in the report's filmstrip, chosen from the labels only (never from
    any method's output, so no method is flattered): the middle frame of anomalous
    segments, covering as many different reasons as possible, plus one normal frame."""
    picks: list[tuple[str, int]] = []
    seen: set = set()
    for v in ds.test:
        lab = np.asarray(v.labels).astype(bool)
        edges = np.flatnonzero(np.diff(np.r_[0, lab.astype(int), 0]))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            mid = int((a + b - 1) // 2)
            key = tuple(sorted((v.reasons or {}).get(mid, ()))) or (v.video_id, a)
            if key not in seen:
                seen.add(key)
                picks.append((v.video_id, mid))
    picks = picks[: n - 1]
    for v in ds.test:
        lab = np.asarray(v.labels).astype(bool)
        if (~lab).any():
            picks.append((v.video_id, int(np.flatnonzero(~lab)[len(np.flatnonzero(~lab)) // 2])))
            break
    out: dict[str, list[int]] = {}
    for vid, f in picks:
        out.setdefault(vid, []).append(f)
    return out


def _reason_targets(v: Video, ds: VideoDataset) -> np.ndarray:
    reasons = v.reasons or {}
    return ds.vocabulary.encode([reasons.get(t, ()) for t in range(v.n_frames)])


def _aligned_reasons(ex: VideoExplanation, ds: VideoDataset, name: str) -> np.ndarray:
    """The explanation's reason scores in the vocabulary's column order."""
    cols = [tuple(r) for r in ex.reason_names]
    missing = [r for r in ds.vocabulary.fine if r not in cols]
    if missing:
        raise InputError(
            f"explainer {name!r} gives no score for reasons {missing}; a method must score "
            "every reason of the vocabulary (0 where it cannot tell)"
        )
    return np.asarray(ex.reasons)[:, [cols.index(r) for r in ds.vocabulary.fine]]


def _applicable(metrics: list[Metric], ex: VideoExplanation) -> list[Metric]:
    """The metrics an explanation can be scored by: metrics that need reason scores are
    left out for explainers that give none (their cells stay empty in the report; they
    are never filled with a default)."""
    return [m for m in metrics if not ("reasons" in m.needs and ex.reasons is None)]


def _per_frame_rows(det: str, exp: VideoExplainer, v: Video, ex: VideoExplanation):
    names = v.frame_names or [str(i) for i in range(v.n_frames)]
    return pd.DataFrame(
        {
            "detector": det,
            "explainer": exp.name,
            "control": exp.control,
            "video": v.video_id,
            "frame": np.arange(v.n_frames),
            "frame_name": names,
            "label": np.asarray(v.labels).astype(int),
            "score": np.asarray(ex.scores, dtype=np.float64),
        }
    )


MAX_JACKKNIFE_GROUPS = 20
"""Default of ``evaluation.jackknife_groups``: videos are split into at most this many
groups (round-robin in test order) for the delete-a-group jackknife."""
Z95 = 1.959963984540054


def jackknife_states(
    per_video: list[MetricStates], *, max_groups: int = MAX_JACKKNIFE_GROUPS
) -> tuple[MetricStates, list[MetricStates]]:
    """The merged state of all videos and, for the delete-a-group jackknife, the merged
    state of all videos but one group, for each of ``G = min(n, 20)`` groups (videos
    assigned round-robin in test order; prefix/suffix merges, so ``O(G)`` merges).
    Videos, not frames, are the independent units: frames of a video are correlated."""
    n = len(per_video)
    g = min(n, max_groups)
    groups: list[MetricStates] = []
    for k in range(g):
        members = per_video[k::g]
        acc = members[0]
        for st in members[1:]:
            acc = acc.merge(st)
        groups.append(acc)
    prefix: list[MetricStates | None] = [None]
    for st in groups:
        prefix.append(st if prefix[-1] is None else prefix[-1].merge(st))
    suffix: list[MetricStates | None] = [None]
    for st in reversed(groups):
        suffix.append(st if suffix[-1] is None else st.merge(suffix[-1]))
    suffix = suffix[::-1]  # suffix[k] = merge(groups[k:])
    full = prefix[-1]
    if g < 2:
        return full, []
    loo = []
    for k in range(g):
        a, b = prefix[k], suffix[k + 1]
        loo.append(b if a is None else (a if b is None else a.merge(b)))
    return full, loo


def jackknife_se(replicates) -> float:
    """Delete-a-group jackknife standard error ``sqrt((G-1)/G * sum((t_g - mean)^2))``
    over the finite replicates (NaN with fewer than two)."""
    t = np.asarray(replicates, dtype=float)
    t = t[np.isfinite(t)]
    if t.size < 2:
        return math.nan
    return float(math.sqrt((t.size - 1) / t.size * float(np.sum((t - t.mean()) ** 2))))


def _collect(det: str, exp: VideoExplainer, metrics, states, replicates, ds, cfg):
    rows, curves = [], []
    reason_extra: dict = {}
    for i, m in enumerate(metrics):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            v = states.compute(i)
            reps = np.array([st.compute(i).value for st in replicates], dtype=float)
        se = jackknife_se(reps)
        lo, hi = (v.value - Z95 * se, v.value + Z95 * se) if math.isfinite(se) else (math.nan,) * 2
        rows.append(
            make_row(
                detector=det,
                explainer=exp.name,
                dataset=ds.name,
                category="all",
                protocol=cfg.name,
                metric=m.name,
                label=m.label,
                family=m.family,
                params=canonical_params(m.params),
                value=float(v.value),
                ci_low=float(lo),
                ci_high=float(hi),
                n=int(v.n),
                higher_is_better=bool(m.higher_is_better),
                control=bool(exp.control),
                headline=int(m.headline),
                threshold=float(v.threshold),
                note=v.note,
            )
        )
        rows[-1]["_replicates"] = reps
        for kind, xy in (v.curves or {}).items():
            if m.family == "reasons":
                reason_extra[f"{m.label}:{kind}"] = xy
                continue
            if len(xy) < 2:
                continue
            curves.append(
                {
                    "detector": det,
                    "explainer": exp.name,
                    "control": exp.control,
                    "metric": m.label,
                    "kind": kind,
                    "x": json.dumps(np.asarray(xy[0], dtype=float).tolist()),
                    "y": json.dumps(np.asarray(xy[1], dtype=float).tolist()),
                }
            )
    return rows, curves, reason_extra


def _manifest(cfg, ds: VideoDataset, metrics, results, units, timings) -> dict:
    import platform

    import xeval
    from xeval.engine.manifest import package_versions

    versions = package_versions(extra=("av",))
    fp = hashlib.sha256()
    for v in ds.train + ds.test:
        fp.update(f"{v.video_id}:{v.n_frames}:{v.frame_size}:{v.source}".encode())
        if v.labels is not None:
            fp.update(np.asarray(v.labels, dtype=np.uint8).tobytes())
    conventions = {
        "frames": "0-based frame indices in display order; per-frame maps upsampled "
        "bilinearly to the frame's native size; no normalisation, no clamping",
        "thresholds": "map thresholds (boxes from maps) chosen on held-out normal "
        "training videos, never on the test set",
        "confidence intervals": "95% delete-a-group jackknife over videos (at most "
        f"{cfg.evaluation.jackknife_groups} groups, round-robin in test order), normal "
        "approximation value +- 1.96 se (may exceed a metric's range); videos are the "
        "independent units",
        "verdicts": "a method beats a control on a metric when their paired difference "
        "exceeds 1.96 jackknife standard errors of the difference (same video groups); "
        "loses when it falls below -1.96 se; ties otherwise",
        "dataset": dict(ds.conventions),
        "metrics": {
            m.label: {"params": m.params, "note": _first_note(results, m.label)} for m in metrics
        },
    }
    return {
        "task": "video",
        "xeval_version": xeval.__version__,
        "versions": versions,
        "platform": platform.platform(),
        "config": cfg.to_dict(),
        "config_source": cfg.source,
        "config_hash": cfg.config_hash(),
        "seed": cfg.seed,
        "dataset": {
            "name": ds.name,
            "root": str(ds.root) if ds.root else None,
            "train_videos": len(ds.train),
            "test_videos": len(ds.test),
            "test_frames": int(sum(v.n_frames for v in ds.test)),
            "anomalous_test_frames": int(sum(int(np.sum(v.labels)) for v in ds.test)),
            "reasons": ds.vocabulary.names if ds.vocabulary else None,
        },
        "dataset_fingerprint": fp.hexdigest()[:16],
        "dataset_fingerprint_kind": "video ids, frame counts, sizes and frame labels",
        "conventions": conventions,
        "units": units,
        "timings": timings,
    }


def _first_note(results: pd.DataFrame, label: str) -> str:
    sel = results[results["label"] == label]["note"]
    sel = sel[sel.astype(str) != ""]
    return str(sel.iloc[0]) if len(sel) else ""
