"""Video run configurations, checked in full before any video is read
(``protocols/video.yaml``)::

    name: video
    seed: 0
    output: xeval-out/video
    dataset: {format: synthetic_video}          # a registered video dataset format
    detectors:                                  # registered video detector kinds
      - kind: reasoning
      - kind: frame_difference
        params: {stride: 2}
        explainers: [native, random, sobel, centre]   # for this detector only
    explainers: [native, random, sobel, centre] # registered video explainers
    metrics:                                    # registered metrics, with options
      - frame_auroc
      - {name: frame_auroc, average: macro}
      - {name: rbdc, beta: 0.1}
      - {name: reason_map, level: coarse}
    evaluation: {validation_videos: 0.25, jackknife_groups: 20}
    report: {figures: true, filmstrip: true}

A configuration is a video configuration when its ``dataset.format`` is a registered
video format (:data:`xeval.registry.VIDEO_DATASETS`); :func:`xeval.protocols.load_config`
dispatches here. Every option is validated against its registry entry, with errors
that name the key and list the valid ones.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from xeval.errors import ConfigError
from xeval.protocols.config import (
    _BOOL_WORDS,
    ComponentSpec,
    RunConfig,
    _bool,
    _check_keys,
    _component,
    _expect,
    _int,
    build_metrics,
)

__all__ = [
    "VIDEO_DEFAULT_METRICS",
    "VideoDetectorSpec",
    "VideoEvaluation",
    "VideoReport",
    "VideoRunConfig",
    "is_video_config",
    "parse_video_config",
]

VIDEO_DEFAULT_METRICS: tuple[str | dict, ...] = (
    "frame_auroc",
    {"name": "frame_auroc", "average": "macro"},
    "frame_aupr",
    {"name": "frame_aupr", "average": "macro"},
    "frame_eer",
    "pixel_auroc",
    "aupro",
    "pixel_criterion_auc",
    "rbdc",
    "tbdc",
    "reason_map",
    {"name": "reason_map", "level": "coarse"},
    "reason_top_k",
)
"""Metrics of a video config that lists none."""

_TOP_KEYS = {
    "name",
    "description",
    "seed",
    "output",
    "dataset",
    "detectors",
    "explainers",
    "metrics",
    "evaluation",
    "report",
}
_DETECTOR_KEYS = {"kind", "name", "params", "explainers", "description"}


@dataclass(frozen=True)
class VideoEvaluation:
    """``validation_videos``: fraction of the normal training videos held out (seeded,
    whole videos, at least one) to calibrate map thresholds, never the test set;
    ``jackknife_groups``: at most this many groups of videos for the delete-a-group
    jackknife behind the CIs and verdicts (videos are the independent units; frames of a
    video are not); ``chunk_frames``: frames per metric update (memory)."""

    validation_videos: float = 0.25
    jackknife_groups: int = 20
    chunk_frames: int = 64


@dataclass(frozen=True)
class VideoReport:
    figures: bool = True
    filmstrip: bool = True


@dataclass
class VideoDetectorSpec:
    kind: str
    name: str
    params: dict = field(default_factory=dict)
    explainers: list[ComponentSpec] | None = None
    description: str = ""
    gradients: bool = False

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "name": self.name, "params": self.params}
        if self.explainers is not None:
            out["explainers"] = [e.to_dict() for e in self.explainers]
        return out

    def build(self):
        from xeval.registry import VIDEO_DETECTORS

        return VIDEO_DETECTORS.get(self.kind)(**copy.deepcopy(self.params))


@dataclass
class VideoRunConfig:
    """A checked video run configuration (see the module docstring)."""

    name: str
    dataset: ComponentSpec
    detectors: list[VideoDetectorSpec]
    explainers: list[ComponentSpec]
    metrics: list[ComponentSpec]
    evaluation: VideoEvaluation = field(default_factory=VideoEvaluation)
    seed: int = 0
    output: str = "xeval-out/video"
    report: VideoReport = field(default_factory=VideoReport)
    description: str = ""
    source: str | None = None
    task: str = "video"

    def to_dict(self) -> dict:
        return {
            "task": "video",
            "name": self.name,
            "dataset": self.dataset.to_dict(),
            "detectors": [d.to_dict() for d in self.detectors],
            "explainers": [e.to_dict() for e in self.explainers],
            "metrics": [m.to_dict() for m in self.metrics],
            "evaluation": asdict(self.evaluation),
            "seed": self.seed,
            "report": asdict(self.report),
        }

    config_hash = RunConfig.config_hash  # sha256 of the canonical JSON of to_dict()

    def explainers_for(self, det: VideoDetectorSpec) -> list[ComponentSpec]:
        return det.explainers if det.explainers is not None else self.explainers

    def metrics_for(self, det: VideoDetectorSpec) -> list[ComponentSpec]:
        return self.metrics


def is_video_config(raw) -> bool:
    """Whether a raw configuration mapping names a video dataset format."""
    from xeval.registry import VIDEO_DATASETS

    if not isinstance(raw, Mapping):
        return False
    ds = raw.get("dataset")
    fmt = ds.get("format") if isinstance(ds, Mapping) else None
    return isinstance(fmt, str) and fmt in VIDEO_DATASETS


def _parse_dataset(ds, where: str) -> ComponentSpec:
    from xeval.registry import VIDEO_DATASETS

    _expect(isinstance(ds, Mapping), f"{where}: 'dataset' must be a mapping, got {ds!r}")
    fmt = ds.get("format")
    _expect(
        isinstance(fmt, str) and fmt in VIDEO_DATASETS,
        f"{where}: dataset.format must be one of {VIDEO_DATASETS.names()}, got {fmt!r}",
    )
    opts = {k: v for k, v in ds.items() if k != "format"}
    VIDEO_DATASETS.check_options(fmt, opts, where=f"{where}: dataset (format {fmt!r})")
    return ComponentSpec(fmt, opts)


def _parse_explainers(lst, where: str) -> list[ComponentSpec]:
    from xeval.registry import VIDEO_EXPLAINERS

    _expect(isinstance(lst, list) and lst, f"{where} must be a non-empty list")
    out = []
    for i, e in enumerate(lst):
        name, params = _component(e, f"{where}[{i}]", what="explainer")
        cls = VIDEO_EXPLAINERS.get(name, where=f"{where}[{i}]")
        VIDEO_EXPLAINERS.check_options(name, params, where=f"{where}[{i}] {name!r}")
        try:  # builds: the options of an image method are checked by its explainer
            cls(**copy.deepcopy(dict(params)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}[{i}] {name!r}: {exc}") from exc
        out.append(ComponentSpec(name, params))
    names = [e.name for e in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    _expect(not dup, f"{where}: explainers listed twice: {dup}")
    return out


def _parse_detector(d, where: str) -> VideoDetectorSpec:
    from xeval.registry import VIDEO_DETECTORS

    _expect(isinstance(d, Mapping), f"{where}: a detector must be a mapping with 'kind'")
    _check_keys(d, _DETECTOR_KEYS, where)
    kind = d.get("kind")
    _expect(isinstance(kind, str), f"{where}: 'kind' must be a video detector kind")
    VIDEO_DETECTORS.get(kind, where=where)
    params = d.get("params") or {}
    _expect(isinstance(params, Mapping), f"{where}.params must be a mapping")
    VIDEO_DETECTORS.check_options(kind, dict(params), where=f"{where}.params")
    name = d.get("name", kind)
    _expect(isinstance(name, str) and name, f"{where}: name must be a non-empty string")
    spec = VideoDetectorSpec(
        kind=kind,
        name=name,
        params=copy.deepcopy(dict(params)),
        explainers=_parse_explainers(d["explainers"], f"{where}.explainers")
        if "explainers" in d
        else None,
        description=str(d.get("description", "")),
    )
    try:  # constructors only validate and store: catch bad values now
        det = spec.build()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    spec.gradients = _has_gradients(det)
    return spec


def _has_gradients(det) -> bool:
    """Whether a frame of ``det`` is a differentiable image detector (a clip model)."""
    from xeval.adapters.video.clip import ClipAdapter

    return isinstance(det, ClipAdapter)


def _check_pairings(cfg: VideoRunConfig, where: str) -> None:
    """Gradient attributions need a differentiable clip detector: an impossible pairing
    is an error listing the explainers that work with that detector."""
    from xeval.registry import VIDEO_EXPLAINERS

    for i, d in enumerate(cfg.detectors):
        if d.gradients:
            continue
        for e in cfg.explainers_for(d):
            req = getattr(VIDEO_EXPLAINERS.get(e.name), "requires", None)
            needs = req() if callable(req) else frozenset()
            if {"gradients", "encoder", "layer"} & set(needs):
                ok = sorted(
                    n
                    for n in VIDEO_EXPLAINERS.names()
                    if not callable(getattr(VIDEO_EXPLAINERS.get(n), "requires", None))
                    or not {"gradients", "encoder", "layer"}
                    & set(VIDEO_EXPLAINERS.get(n).requires())
                )
                raise ConfigError(
                    f"{where}: detectors[{i}] {d.name!r} ({d.kind}) has no gradients, so "
                    f"explainer {e.name!r} cannot explain it; explainers that can: {ok} "
                    "(gradient methods need a clip model such as clip_autoencoder)"
                )


def video_metric_problem(m) -> str | None:
    """Why registered metric ``m`` cannot run in a video run (None: it can). Video runs
    score maps, frame scores, boxes and reasons against frame labels, masks, tracks and
    reason labels; they do not perturb or re-run detectors per metric (faithfulness,
    robustness, sanity) and their regions are track boxes, not per-defect masks."""
    if m.stage != "stream" or {"detector", "reference", "gradients"} & set(m.needs):
        return "it queries the detector (faithfulness / robustness / sanity)"
    if any(r[0] != "normal_quantile" for r in m.calibrations()):
        return f"it needs calibrations {m.calibrations()} (video runs fit normal_quantile)"
    if "regions" in m.needs and m.family != "video":
        return "it reads per-defect regions (MVTec LOCO), not region tracks"
    return None


def _check_video_metrics(metrics, where: str) -> None:
    from xeval.registry import METRICS

    bad = {m.label: why for m in metrics if (why := video_metric_problem(m))}
    if bad:
        ok = sorted(n for n in METRICS.names() if video_metric_problem(METRICS.get(n)()) is None)
        detail = "; ".join(f"{k}: {v}" for k, v in bad.items())
        raise ConfigError(
            f"{where}: metrics that cannot run on video: {detail}. Metrics that can: {ok}"
        )


def parse_video_config(raw, *, source: str | None = None) -> VideoRunConfig:
    """Check a video configuration mapping in full (ConfigError naming the key)."""
    where = source or "config"
    _expect(isinstance(raw, Mapping), f"{where}: a configuration must be a mapping")
    _check_keys(raw, _TOP_KEYS, where)
    for key in ("dataset", "detectors"):
        _expect(key in raw, f"{where}: missing required key '{key}'")
    name = raw.get("name", "video")
    _expect(isinstance(name, str) and name, f"{where}: name must be a non-empty string")
    seed = _int(raw.get("seed", 0), f"{where}: seed", minimum=0)
    output = raw.get("output", "xeval-out/video")
    _expect(
        isinstance(output, str) and output and output.strip().lower() not in _BOOL_WORDS,
        f"{where}: output must be a folder path, got {output!r}",
    )
    dataset = _parse_dataset(raw["dataset"], where)
    explainers = _parse_explainers(
        raw.get("explainers", ["native", "random", "sobel", "centre"]), f"{where}: explainers"
    )
    dets = raw["detectors"]
    _expect(isinstance(dets, list) and dets, f"{where}: 'detectors' must be a non-empty list")
    detectors = [_parse_detector(d, f"{where}: detectors[{i}]") for i, d in enumerate(dets)]
    names = [d.name for d in detectors]
    _expect(len(set(names)) == len(names), f"{where}: detector names must be unique: {names}")
    raw_metrics = raw.get("metrics", list(VIDEO_DEFAULT_METRICS))
    _expect(
        isinstance(raw_metrics, list) and raw_metrics,
        f"{where}: metrics must be a non-empty list of metrics",
    )
    metrics = [
        ComponentSpec(*_component(m, f"{where}: metrics[{i}]", what="metric"))
        for i, m in enumerate(raw_metrics)
    ]
    _check_video_metrics(build_metrics(metrics, where=f"{where}: metrics"), where)
    ev = raw.get("evaluation") or {}
    _expect(isinstance(ev, Mapping), f"{where}: evaluation must be a mapping")
    _check_keys(
        ev, {"validation_videos", "jackknife_groups", "chunk_frames"}, f"{where}: evaluation"
    )
    vv = ev.get("validation_videos", 0.25)
    _expect(
        isinstance(vv, numbers.Real) and not isinstance(vv, bool) and 0 < vv < 1,
        f"{where}: evaluation.validation_videos must be in (0, 1), got {vv!r}",
    )
    evaluation = VideoEvaluation(
        validation_videos=float(vv),
        jackknife_groups=_int(
            ev.get("jackknife_groups", 20), f"{where}: evaluation.jackknife_groups", minimum=2
        ),
        chunk_frames=_int(
            ev.get("chunk_frames", 64), f"{where}: evaluation.chunk_frames", minimum=1
        ),
    )
    rep = raw.get("report") or {}
    _expect(isinstance(rep, Mapping), f"{where}: report must be a mapping")
    _check_keys(rep, {"figures", "filmstrip"}, f"{where}: report")
    report = VideoReport(
        figures=_bool(rep.get("figures", True), f"{where}: report.figures"),
        filmstrip=_bool(rep.get("filmstrip", True), f"{where}: report.filmstrip"),
    )
    cfg = VideoRunConfig(
        name=name,
        dataset=dataset,
        detectors=detectors,
        explainers=explainers,
        metrics=metrics,
        evaluation=evaluation,
        seed=seed,
        output=output,
        report=report,
        description=str(raw.get("description", "") or ""),
        source=source,
    )
    _check_pairings(cfg, where)
    return cfg
