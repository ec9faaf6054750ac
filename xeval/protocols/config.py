"""Run configurations: what to evaluate (dataset x detectors x explainers x metrics),
checked in full before any data is loaded or any model is fitted.

A configuration is a YAML file (read with ``yaml.safe_load``: a YAML file never causes
code to run) such as ``protocols/demo.yaml``::

    name: demo
    seed: 0
    output: xeval-out/demo
    dataset: {format: textures, quick: false}          # a registered dataset format
    detectors:                                         # recipes in adapters/, or inline
      - recipe: conv_autoencoder
        params: {epochs: 30}
        explainers: [native, saliency, random, sobel, centre]   # for this detector only
    explainers: [native, random, sobel, centre]        # registered explainers
    metrics:                                           # registered metrics, with options
      - image_auroc
      - pixel_auroc
      - {name: aupro, fpr_limit: 0.3}
      - {name: iou, quantile: 0.99}
      - {name: deletion_auc, steps: 8, max_images: 6}
    evaluation: {validation_fraction: 0.2, bootstrap: 1000, subset: first}
    batch_size: 16
    report: {figures: true, gallery: true}
    cache: true      # reuse attribution maps across runs: <output>/.cache, or a folder

Sections
--------
Every section is typed (:class:`RunConfig` and the ``*Spec`` classes). Every detector,
explainer, metric and dataset option is validated against its registry entry
(:mod:`xeval.registry`: the keyword options of its constructor or reader) by
:func:`parse_config`, with errors that name the key and list the valid ones.
``xeval run --check CONFIG`` does only this.

Compatibility: the 0.1 ``metrics:`` mapping of booleans (:mod:`xeval.protocols.legacy`)
and ``dataset.image_size`` still parse, with a
:class:`~xeval.errors.XevalDeprecationWarning` that says what to write instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from xeval.assets import find_asset
from xeval.errors import ConfigError, InputError, XevalDeprecationWarning
from xeval.protocols import legacy

__all__ = [
    "DEFAULT_METRICS",
    "ComponentSpec",
    "DetectorSpec",
    "EvaluationSettings",
    "ReportSettings",
    "RunConfig",
    "build_metrics",
    "load_config",
    "parse_config",
]

DEFAULT_METRICS: tuple[str, ...] = (
    "image_auroc",
    "image_aupr",
    "image_f1_max",
    "image_fpr_at_tpr",
    "pixel_auroc",
    "pixel_aupr",
    "aupro",
    "iou_oracle",
    "pro",
    "iou",
    "dice",
    "iou_per_image",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "top_k_intersection",
    "gini_sparseness",
    "entropy_complexity",
    "degenerate_maps",
)
"""Metrics of a config that lists none: detection, pixel, localisation and complexity
(the costly faithfulness, robustness and sanity metrics are listed explicitly)."""

SUBSET_STRATEGIES = ("first", "stratified")

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
    "batch_size",
    "report",
    "cache",
    "workers",
    "scheduler",
    "threads_per_worker",
}

INFLUENCE_ONLY_KEYS = frozenset(
    {"detector", "methods", "seeds", "contamination", "baselines", "per_test", "ground_truth", "l2"}
)
"""Top-level keys of an example-importance protocol (:mod:`xeval.protocols.influence`)
that an image configuration does not have: a config with them and without
``task: influence`` gets an error saying so."""
_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "1", "0"}
"""Strings that read as booleans: refused where a path is expected (a quoted "false"
would otherwise be a folder named false)."""
_DETECTOR_KEYS = {"kind", "name", "params", "description", "explainers", "metrics", "recipe"}


# -------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ComponentSpec:
    """A registry entry and its options: a dataset format, an explainer or a metric."""

    name: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, **copy.deepcopy(self.params)}


@dataclass
class DetectorSpec:
    """A detector recipe (``kind``, ``name``, ``params``) and what applies to it only."""

    kind: str
    name: str
    params: dict = field(default_factory=dict)
    explainers: list[ComponentSpec] | None = None
    metrics: list[ComponentSpec] | None = None
    description: str = ""

    def recipe(self) -> dict:
        """The recipe for :func:`xeval.adapters.build_detector`."""
        return {"kind": self.kind, "name": self.name, "params": copy.deepcopy(self.params)}

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "name": self.name, "params": self.params}
        if self.explainers is not None:
            out["explainers"] = [e.to_dict() for e in self.explainers]
        if self.metrics is not None:
            out["metrics"] = [m.to_dict() for m in self.metrics]
        return out


@dataclass(frozen=True)
class EvaluationSettings:
    """How a run evaluates.

    validation_fraction:
        Fraction of the normal training images held out (seeded) for calibration
        (thresholds, score spread), in (0, 1); formats with a validation split use it
        instead. A fraction that leaves no validation or no fit image is an error.
    bootstrap:
        Bootstrap resamples of the confidence intervals: a positive integer.
    subset:
        How costly metrics pick their ``max_images`` images: ``"stratified"`` (default:
        seeded, balanced over defect types) or ``"first"`` (the first ones in test
        order; one defect type can dominate).

    Checked on construction (:class:`~xeval.errors.ConfigError` naming the key).
    """

    validation_fraction: float = 0.2
    bootstrap: int = 1000
    subset: str = "stratified"

    def __post_init__(self) -> None:
        vf = self.validation_fraction
        _expect(
            isinstance(vf, numbers.Real) and not isinstance(vf, bool) and 0 < vf < 1,
            f"evaluation.validation_fraction must be in (0, 1), got {vf!r}",
        )
        _int(self.bootstrap, "evaluation.bootstrap", minimum=1)
        _expect(
            self.subset in SUBSET_STRATEGIES,
            f"evaluation.subset must be one of {SUBSET_STRATEGIES}, got {self.subset!r}",
        )


@dataclass(frozen=True)
class ReportSettings:
    """What the report draws: ``figures``, the best/worst ``gallery`` and the per-image
    metric that ranks its images (``gallery_metric``; default: the first per-image
    localisation metric of the run)."""

    figures: bool = True
    gallery: bool = True
    gallery_metric: str | None = None


@dataclass
class RunConfig:
    """A checked run configuration (see the module docstring)."""

    name: str
    dataset: ComponentSpec
    detectors: list[DetectorSpec]
    explainers: list[ComponentSpec]
    metrics: list[ComponentSpec] = field(
        default_factory=lambda: [ComponentSpec(m) for m in DEFAULT_METRICS]
    )
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    seed: int = 0
    output: str = "xeval-out"
    batch_size: int = 16
    report: ReportSettings = field(default_factory=ReportSettings)
    cache: str | bool | None = None
    description: str = ""
    source: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    threads_per_worker: int | None = None
    """Where the units run (:mod:`xeval.engine.executor`); not in :meth:`to_dict` nor the
    config hash: they change how fast a run is, never its numbers."""

    def to_dict(self) -> dict:
        """Everything that changes results, in canonical form (hashed, and recorded in
        the manifest)."""
        return {
            "name": self.name,
            "dataset": self.dataset.to_dict(),
            "detectors": [d.to_dict() for d in self.detectors],
            "explainers": [e.to_dict() for e in self.explainers],
            "metrics": [m.to_dict() for m in self.metrics],
            "evaluation": asdict(self.evaluation),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "report": asdict(self.report),
        }

    def config_hash(self) -> str:
        """sha256 (16 hex digits) of the canonical JSON of :meth:`to_dict`."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def explainers_for(self, det: DetectorSpec) -> list[ComponentSpec]:
        return det.explainers if det.explainers is not None else self.explainers

    def metrics_for(self, det: DetectorSpec) -> list[ComponentSpec]:
        return det.metrics if det.metrics is not None else self.metrics


# --------------------------------------------------------------------------- checks
def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_keys(d: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    _expect(not unknown, f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _int(v, where: str, *, minimum: int | None = None) -> int:
    ok = isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if ok and minimum is not None:
        ok = v >= minimum
    bound = f" >= {minimum}" if minimum is not None else ""
    _expect(ok, f"{where} must be an integer{bound}, got {v!r}")
    return int(v)


def _bool(v, where: str) -> bool:
    _expect(isinstance(v, bool), f"{where} must be true or false, got {v!r}")
    return v


#: Bounds of a configuration document, aliases expanded: values plus characters of
#: strings, and nesting depth. YAML anchors / aliases are shared by ``yaml.safe_load``
#: but expand in every use of the value (a "billion laughs" document of 500 bytes is
#: 10**9 strings once printed in an error message or hashed).
MAX_DOCUMENT_SIZE = 1_000_000
MAX_DOCUMENT_DEPTH = 64


def _key_path(path: tuple) -> str:
    out = ""
    for k in path:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "<top level>"


def _check_document(raw, where: str) -> None:
    """Check a parsed document before anything reads it: its size with aliases
    expanded and its depth are bounded, no value contains itself, keys are strings,
    numbers are finite and values are of the plain YAML types (no ``!!set``, no
    ``!!binary``). Walks every distinct value once, without recursion."""
    sizes: dict[int, int] = {}  # id of a measured container -> its expanded size
    open_ids: set[int] = set()
    stack: list[list] = []  # [container, path, iterator over its items, size so far]

    def value_size(v, path: tuple) -> int | None:
        """Size of a leaf, or of a container already measured; None: push it."""
        if isinstance(v, str):
            return 1 + len(v)
        if isinstance(v, Mapping | list | tuple):
            if id(v) in sizes:
                return sizes[id(v)]
            if id(v) in open_ids:
                raise ConfigError(
                    f"{where}: {_key_path(path)} contains itself (a recursive YAML alias)"
                )
            if len(path) >= MAX_DOCUMENT_DEPTH:
                raise ConfigError(
                    f"{where}: {_key_path(path)} is nested more than {MAX_DOCUMENT_DEPTH} "
                    "levels deep (expected a configuration of reasonable depth)"
                )
            items = iter(v.items()) if isinstance(v, Mapping) else iter(enumerate(v))
            open_ids.add(id(v))
            stack.append([v, path, items, 1])
            return None
        if isinstance(v, set | frozenset | bytes | bytearray):
            raise ConfigError(
                f"{where}: {_key_path(path)} is {type(v).__name__} {v!r:.60} (YAML !!set / "
                "!!binary); expected a string, a number, true/false, null, a list or a mapping"
            )
        if isinstance(v, numbers.Real) and not math.isfinite(v):
            raise ConfigError(f"{where}: {_key_path(path)} must be a finite number, got {v!r}")
        return 1

    total = value_size(raw, ())
    while stack:
        frame = stack[-1]
        item = next(frame[2], None)
        if item is None:  # a container measured: add it to its parent
            stack.pop()
            open_ids.discard(id(frame[0]))
            sizes[id(frame[0])] = frame[3]
            if stack:
                stack[-1][3] += frame[3]
            else:
                total = frame[3]
            path = frame[1]
        else:
            key, value = item
            path = (*frame[1], key)
            if isinstance(frame[0], Mapping):
                if not isinstance(key, str):
                    raise ConfigError(
                        f"{where}: {_key_path(frame[1])} has the key {key!r} of type "
                        f"{type(key).__name__} (expected string keys)"
                    )
                frame[3] += len(key)
            size = value_size(value, path)
            if size is not None:
                frame[3] += size
        if (sum(f[3] for f in stack) if stack else total) > MAX_DOCUMENT_SIZE:
            raise ConfigError(
                f"{where}: {_key_path(path[:1])} is too large: more than {MAX_DOCUMENT_SIZE} "
                "values and characters once its YAML aliases are expanded (expected a "
                "configuration of reasonable size; an alias 'bomb' is refused)"
            )


def _component(spec, where: str, *, what: str) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    _expect(
        isinstance(spec, Mapping),
        f"{where}: a {what} entry must be a name or a mapping with 'name', got {spec!r}",
    )
    _expect("name" in spec, f"{where}: a {what} entry needs a 'name' key, got {dict(spec)!r}")
    params = spec.get("params")
    if params is not None:
        _expect(isinstance(params, Mapping), f"{where}: {what} 'params' must be a mapping")
    merged = {**(params or {}), **{k: v for k, v in spec.items() if k not in ("name", "params")}}
    return spec["name"], merged


# ---------------------------------------------------------------------------- parts
def _parse_dataset(ds, where: str) -> ComponentSpec:
    from xeval.registry import DATASETS

    _expect(isinstance(ds, Mapping), f"{where}: 'dataset' must be a mapping, got {ds!r}")
    fmt = ds.get("format")
    _expect(
        isinstance(fmt, str) and fmt in DATASETS,
        f"{where}: dataset.format must be one of {DATASETS.names()}, got {fmt!r}",
    )
    opts = {k: v for k, v in ds.items() if k != "format"}
    if "image_size" in opts:
        size = opts.pop("image_size")
        _expect(
            isinstance(size, list | tuple)
            and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size),
            f"{where}: dataset.image_size must be [H, W] positive integers, got {size!r}",
        )
        warnings.warn(
            f"{where}: dataset.image_size is deprecated and has no effect: images are "
            "resized to each detector's input size; set the detector's params.input_size",
            XevalDeprecationWarning,
            stacklevel=4,
        )
    spec = DATASETS.get(fmt)
    import inspect

    required = [
        n
        for n, p in inspect.signature(spec).parameters.items()
        if p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY
    ]
    for n in required:
        _expect(n in opts, f"{where}: dataset.{n} is required for format {fmt!r}")
    DATASETS.check_options(fmt, opts, where=f"{where}: dataset (format {fmt!r})")
    return ComponentSpec(fmt, opts)


def _parse_explainers(lst, where: str) -> list[ComponentSpec]:
    from xeval.explainers.registry import build_explainer

    _expect(isinstance(lst, list) and lst, f"{where} must be a non-empty list")
    out = []
    for i, e in enumerate(lst):
        name, params = _component(e, f"{where}[{i}]", what="explainer")
        build_explainer({"name": name, **params}, where=f"{where}[{i}]")  # validates
        out.append(ComponentSpec(name, params))
    names = [e.name for e in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    _expect(not dup, f"{where}: explainers listed twice: {dup}")
    return out


def build_metrics(specs: list[ComponentSpec], *, where: str = "metrics") -> list:
    """Instantiate registered metrics from specs (options checked against the class)."""
    from xeval.registry import METRICS

    out = []
    for i, s in enumerate(specs):
        cls = METRICS.get(s.name, where=f"{where}[{i}]")
        METRICS.check_options(s.name, s.params, where=f"{where}[{i}] {s.name!r}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. flagged substrates
                out.append(cls(**s.params))
        except (InputError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}[{i}] {s.name!r}: {exc}") from exc
    labels = [m.label for m in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    _expect(not dup, f"{where}: metrics listed twice: {dup}")
    return out


def _parse_metric_list(lst, where: str) -> list[ComponentSpec]:
    _expect(isinstance(lst, list) and lst, f"{where} must be a non-empty list of metrics")
    specs = [
        ComponentSpec(*_component(m, f"{where}[{i}]", what="metric")) for i, m in enumerate(lst)
    ]
    build_metrics(specs, where=where)
    return specs


def _load_recipe(spec, where: str) -> dict:
    """A detector entry: a recipe name (file in adapters/), a path, or an inline dict."""
    if isinstance(spec, str):
        try:
            path = find_asset("adapters", spec)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        except (OSError, ValueError) as exc:  # e.g. a name too long for a file name
            raise ConfigError(
                f"{where}: detector recipe {spec[:80]!r} is not a recipe name or file "
                f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})"
            ) from exc
        recipe = _read_yaml(path, f"{where}: detector recipe {path}") or {}
        _check_document(recipe, f"{where}: detector recipe {path}")
        _expect(isinstance(recipe, Mapping), f"{where}: detector recipe {path} must be a mapping")
        return dict(recipe)
    _expect(
        isinstance(spec, Mapping),
        f"{where}: detector entries must be names or mappings, got {spec!r}",
    )
    spec = dict(spec)
    if "recipe" in spec:
        base = _load_recipe(spec["recipe"], where)
        extra = spec.get("params") or {}
        _expect(isinstance(extra, Mapping), f"{where}.params must be a mapping, got {extra!r}")
        params = {**(base.get("params") or {}), **extra}
        merged = {**base, **{k: v for k, v in spec.items() if k != "recipe"}}
        merged["params"] = params
        return merged
    return spec


def _edit_metrics(run_metrics: list[ComponentSpec], edit: Mapping, where: str) -> list:
    """The run's metric list with ``exclude`` (names or labels) removed and ``add``
    (metric entries) appended, for one detector."""
    excl = edit.get("exclude") or []
    _expect(
        isinstance(excl, list) and all(isinstance(x, str) for x in excl),
        f"{where}.exclude must be a list of metric names or labels, got {excl!r}",
    )
    built = build_metrics(run_metrics, where=where)
    known = {m.name for m in built} | {m.label for m in built}
    unknown = sorted(set(excl) - known)
    _expect(not unknown, f"{where}.exclude: {unknown} are not in the run's metrics")
    kept = [s for s, m in zip(run_metrics, built, strict=True) if not {m.name, m.label} & set(excl)]
    added = edit.get("add") or []
    _expect(isinstance(added, list), f"{where}.add must be a list of metrics, got {added!r}")
    specs = kept + [
        ComponentSpec(*_component(x, f"{where}.add[{i}]", what="metric"))
        for i, x in enumerate(added)
    ]
    _expect(bool(specs), f"{where}: no metric left for this detector")
    build_metrics(specs, where=where)
    return specs


# ---------------------------------------------------------------------------- parse
def parse_config(raw, *, source: str | None = None):
    """Check a configuration mapping in full and return the :class:`RunConfig` (a
    :class:`~xeval.protocols.video.VideoRunConfig` when ``dataset.format`` is a video
    format).

    Raises
    ------
    ConfigError
        Naming the offending key (``detectors[0].params``, ``metrics[3] 'aupro'``...),
        the value, and the valid keys or values.
    """
    from xeval.adapters.registry import check_recipe

    where = source or "config"
    _check_document(raw, where)  # bounded, acyclic, plain: before any message shows it
    _expect(isinstance(raw, Mapping), f"{where}: a configuration must be a mapping, got {raw!r}")
    from xeval.protocols.video import is_video_config, parse_video_config

    if is_video_config(raw):
        return parse_video_config(raw, source=source)
    from xeval.protocols.influence import is_influence_config, parse_influence_config

    if is_influence_config(raw):
        return parse_influence_config(raw, source=source)
    if "task" in raw:
        raise ConfigError(
            f"{where}: task must be 'influence' (an example-importance protocol; omit the "
            f"key for image and video audits), got {raw['task']!r}"
        )
    influence_keys = sorted(set(raw) & INFLUENCE_ONLY_KEYS)
    if influence_keys:
        raise ConfigError(
            f"{where}: keys {influence_keys} belong to an example-importance protocol, which "
            "needs 'task: influence' at the top level"
        )
    _check_keys(raw, _TOP_KEYS, where)
    for key in ("dataset", "detectors", "explainers"):
        _expect(key in raw, f"{where}: missing required key '{key}'")
    name = raw.get("name", "run")
    _expect(isinstance(name, str) and name, f"{where}: name must be a non-empty string")
    seed = _int(raw.get("seed", 0), f"{where}: seed", minimum=0)
    bs = _int(raw.get("batch_size", 16), f"{where}: batch_size", minimum=1)
    output = raw.get("output", "xeval-out")
    _expect(isinstance(output, str) and output, f"{where}: output must be a folder path")
    cache = raw.get("cache")
    _expect(
        cache is None
        or isinstance(cache, bool)
        or isinstance(cache, str)
        and cache.strip().lower() not in _BOOL_WORDS,
        f"{where}: cache must be true/false (a boolean, unquoted) or a folder path, got {cache!r}",
    )
    dataset = _parse_dataset(raw["dataset"], where)

    # metrics: a list (by name, with options) or the old mapping of booleans
    evaluation = {}
    raw_metrics = raw.get("metrics")
    legacy_map: dict | None = None
    if raw_metrics is None:
        metrics = [ComponentSpec(m) for m in DEFAULT_METRICS]
    elif isinstance(raw_metrics, Mapping):
        legacy_map = dict(raw_metrics)
        entries, evaluation = legacy.translate(legacy_map, where=f"{where}: metrics")
        metrics = _parse_metric_list(entries, f"{where}: metrics")
    else:
        metrics = _parse_metric_list(raw_metrics, f"{where}: metrics")

    ev = raw.get("evaluation") or {}
    _expect(isinstance(ev, Mapping), f"{where}: evaluation must be a mapping")
    _check_keys(ev, {"validation_fraction", "bootstrap", "subset"}, f"{where}: evaluation")
    evaluation = {**evaluation, **ev}
    vf = evaluation.get("validation_fraction", 0.2)
    _expect(
        isinstance(vf, int | float) and not isinstance(vf, bool) and 0 < vf < 1,
        f"{where}: validation_fraction must be in (0, 1), got {vf!r}",
    )
    boot = _int(evaluation.get("bootstrap", 1000), f"{where}: bootstrap", minimum=1)
    subset = evaluation.get("subset", "stratified")
    _expect(
        subset in SUBSET_STRATEGIES,
        f"{where}: evaluation.subset must be one of {SUBSET_STRATEGIES}, got {subset!r}",
    )
    settings = EvaluationSettings(float(vf), boot, subset)

    explainers = _parse_explainers(raw["explainers"], f"{where}: explainers")

    dets = raw["detectors"]
    _expect(isinstance(dets, list) and dets, f"{where}: 'detectors' must be a non-empty list")
    detectors: list[DetectorSpec] = []
    for i, d in enumerate(dets):
        w = f"{where}: detectors[{i}]"
        rec = _load_recipe(d, w)
        _check_keys(rec, _DETECTOR_KEYS - {"recipe"}, w)
        _expect("kind" in rec, f"{w}: detector recipe {rec!r} has no 'kind'")
        checked = check_recipe(
            {k: v for k, v in rec.items() if k in ("kind", "name", "params", "description")},
            where=w,
        )
        det_expl = None
        if "explainers" in rec:
            det_expl = _parse_explainers(rec["explainers"], f"{w}.explainers")
        det_metrics = None
        if "metrics" in rec:
            m = rec["metrics"]
            if isinstance(m, Mapping) and set(m) <= {"exclude", "add"} and m:
                det_metrics = _edit_metrics(metrics, m, f"{w}.metrics")
            elif isinstance(m, Mapping):
                _expect(
                    legacy_map is not None,
                    f"{w}.metrics: give this detector a list of metrics, or "
                    "{exclude: [names], add: [metrics]} to edit the run's list",
                )
                allowed = set(legacy.LEGACY_DEFAULTS) - {"mode", "fpr_limits"}
                legacy.check_mapping(m, f"{w}.metrics", allowed=allowed)
                entries, _ = legacy.translate(
                    legacy.merge_overrides(legacy_map, m), where=f"{w}.metrics", warn=False
                )
                det_metrics = _parse_metric_list(entries, f"{w}.metrics")
            else:
                det_metrics = _parse_metric_list(m, f"{w}.metrics")
        detectors.append(
            DetectorSpec(
                kind=checked["kind"],
                name=checked["name"],
                params=checked["params"],
                explainers=det_expl,
                metrics=det_metrics,
                description=str(rec.get("description", "")),
            )
        )
    names = [d.name for d in detectors]
    _expect(len(set(names)) == len(names), f"{where}: detector names must be unique: {names}")

    rep = raw.get("report") or {}
    _expect(isinstance(rep, Mapping), f"{where}: report must be a mapping")
    _check_keys(rep, {"figures", "gallery", "gallery_metric"}, f"{where}: report")
    gm = rep.get("gallery_metric")
    _expect(
        gm is None or isinstance(gm, str), f"{where}: report.gallery_metric must be a metric name"
    )
    report = ReportSettings(
        figures=_bool(rep.get("figures", True), f"{where}: report.figures"),
        gallery=_bool(rep.get("gallery", True), f"{where}: report.gallery"),
        gallery_metric=gm,
    )
    description = raw.get("description", "")
    workers, scheduler, threads = _parse_execution(raw, where)
    return RunConfig(
        name=name,
        dataset=dataset,
        detectors=detectors,
        explainers=explainers,
        metrics=metrics,
        evaluation=settings,
        seed=seed,
        output=output,
        batch_size=bs,
        report=report,
        cache=cache,
        description=str(description or ""),
        source=source,
        workers=workers,
        scheduler=scheduler,
        threads_per_worker=threads,
    )


def _parse_execution(raw: Mapping, where: str) -> tuple:
    """The optional ``workers`` / ``scheduler`` / ``threads_per_worker`` keys (Dask
    execution; the command line's ``--workers`` / ``--scheduler`` /
    ``--threads-per-worker`` override them)."""
    workers = raw.get("workers")
    if workers is not None:
        workers = _int(workers, f"{where}: workers", minimum=1)
    scheduler = raw.get("scheduler")
    _expect(
        scheduler is None
        or isinstance(scheduler, str)
        and scheduler.strip()
        and scheduler == scheduler.strip(),
        f"{where}: scheduler must be the address of a Dask scheduler such as "
        f"'tcp://host:8786', got {scheduler!r}",
    )
    _expect(
        workers is None or scheduler is None,
        f"{where}: give workers (a local cluster; got {workers!r}) or scheduler (an "
        f"existing cluster; got {scheduler!r}), not both",
    )
    threads = raw.get("threads_per_worker")
    if threads is not None:
        threads = _int(threads, f"{where}: threads_per_worker", minimum=1)
    return workers, scheduler, threads


def _read_yaml(path: Path, what: str):
    """``yaml.safe_load`` of a file (UTF-8, or UTF-16 with a BOM); ConfigError naming
    ``what`` when it cannot be read or is not YAML."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        return yaml.safe_load(data)
    except RecursionError as exc:
        raise ConfigError(f"{what}: not valid YAML (nested too deeply)") from exc
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # also bad !!int, dates
        raise ConfigError(f"{what}: not valid YAML ({type(exc).__name__}: {exc})") from exc


def load_config(path_or_name: str | Path):
    """Read a run configuration from a YAML file, or a protocol name in ``protocols/``:
    a :class:`RunConfig`, or a :class:`~xeval.protocols.video.VideoRunConfig` when the
    dataset format is a video format."""
    p = Path(path_or_name)
    try:
        if not p.is_file():
            looks_like_path = p.suffix in (".yaml", ".yml") or len(p.parts) > 1
            if looks_like_path:
                raise ConfigError(f"config file not found: {p}")
            p = find_asset("protocols", str(path_or_name))
    except (OSError, ValueError) as exc:  # e.g. a name too long for a file name
        raise ConfigError(
            f"config file {str(path_or_name)[:200]!r} cannot be opened "
            f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or exc})"
        ) from exc
    raw = _read_yaml(p, str(p))
    cfg = parse_config(raw, source=str(p))
    # relative dataset paths are relative to the config file
    path = cfg.dataset.params.get("path")
    if isinstance(path, str) and not Path(path).is_absolute():
        cand = (p.parent / path).resolve()
        if cand.exists():
            cfg.dataset.params["path"] = str(cand)
    return cfg
