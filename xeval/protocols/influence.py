"""Example-importance protocol configurations (the contaminated-training protocol),
checked in full before any image is read or any model is trained
(``protocols/contamination.yaml``)::

    task: influence                      # what makes this an influence configuration
    name: contamination
    seeds: [0, 1, 2]                     # one repetition per seed (>= 3 for a spread)
    output: xeval-out/contamination
    dataset: {format: textures, categories: [brick], tile: 64}
    detector:                            # one detector: a recipe (adapters/) or inline
      recipe: conv_autoencoder
      params: {input_size: [64, 64], epochs: 10, width: 16}
    contamination:
      rates: [0.02, 0.05, 0.1]           # fraction of the training set that is planted
      defects: null                      # defect types to plant (null: all of the category)
    methods:                             # xeval.influence.INFLUENCE_METHODS, with options
      - grad_dot
      - {name: grad_cos, projection_dim: 512}
    l2: 0.0                              # (l2 / 2) ||θ||² in the training objective
    baselines:                           # controls, always run; only their options here
      knn_distance: {k: 5}
    per_test: {max_anomalies: 12, n_normal: 4, top_k: 5}
    ground_truth: {enabled: false}       # exact leave-one-out and LDS on a tiny model
    report: {figures: true, gallery: true, gallery_tests: 2, gallery_k: 4}
    batch_size: 16

A configuration is an influence configuration when its top-level ``task`` is
``influence``; :func:`xeval.protocols.load_config` dispatches here. Every key is checked
up front: unknown keys, methods, baselines and options are :class:`ConfigError` naming
the key and listing the valid ones.

Seeds: ``seeds`` lists the repetitions; each seed draws the planted images, trains the
detector (it replaces the recipe's ``params.seed``) and seeds the methods and the random
control. The dataset itself is built
once with the first seed (unless ``dataset.seed`` is given), so repetitions differ by
contamination and training, not by data. :attr:`InfluenceConfig.seed` is the first seed.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from xeval.errors import ConfigError, InputError
from xeval.protocols.config import (
    _BOOL_WORDS,
    ComponentSpec,
    RunConfig,
    _bool,
    _check_keys,
    _component,
    _expect,
    _int,
    _load_recipe,
    _parse_dataset,
)

__all__ = [
    "ContaminationSettings",
    "GroundTruthSettings",
    "InfluenceConfig",
    "InfluenceReport",
    "PerTestSettings",
    "is_influence_config",
    "parse_influence_config",
]

TASK = "influence"

_TOP_KEYS = {
    "task",
    "name",
    "description",
    "seeds",
    "output",
    "dataset",
    "detector",
    "contamination",
    "methods",
    "l2",
    "baselines",
    "per_test",
    "ground_truth",
    "report",
    "batch_size",
}
_DETECTOR_KEYS = {"kind", "name", "params", "description", "recipe"}


@dataclass(frozen=True)
class ContaminationSettings:
    """``rates``: contamination rates, each the fraction of the training set that is
    planted (:func:`xeval.influence.contamination.planted_count`); ``defects``: the
    defect types that may be planted (None: every anomalous type of the category)."""

    rates: tuple[float, ...] = (0.02, 0.05, 0.1)
    defects: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PerTestSettings:
    """Per-test attribution: at most ``max_anomalies`` test anomalies of planted types
    (seeded, balanced over types) and ``n_normal`` normal test images are explained per
    (seed, rate); top-``top_k`` lists give the similarity rate and the cardinality."""

    enabled: bool = True
    max_anomalies: int = 12
    n_normal: int = 4
    top_k: int = 5


@dataclass(frozen=True)
class GroundTruthSettings:
    """Exact leave-one-out retraining and the linear datamodelling score
    (:mod:`xeval.influence.ground_truth`) on a tiny copy of the detector (``detector``
    params override the run's detector params) trained on ``n_train`` normal images of
    the first category, explaining ``n_test`` test images: ``n_subsets`` random subsets
    of ``fraction`` of the training set for the LDS. Off by default (costly)."""

    enabled: bool = False
    n_train: int = 24
    n_test: int = 6
    n_subsets: int = 16
    fraction: float = 0.5
    detector: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InfluenceReport:
    """``figures`` (cumulative-detection curves), ``gallery`` (most and least
    influential training images of ``gallery_tests`` test anomalies, ``gallery_k``
    each side)."""

    figures: bool = True
    gallery: bool = True
    gallery_tests: int = 2
    gallery_k: int = 4


@dataclass
class InfluenceConfig:
    """A checked influence (contaminated-training) configuration."""

    name: str
    dataset: ComponentSpec
    detector: dict
    methods: list[ComponentSpec]
    seeds: tuple[int, ...] = (0, 1, 2)
    contamination: ContaminationSettings = field(default_factory=ContaminationSettings)
    l2: float = 0.0
    baselines: dict = field(default_factory=dict)
    per_test: PerTestSettings = field(default_factory=PerTestSettings)
    ground_truth: GroundTruthSettings = field(default_factory=GroundTruthSettings)
    report: InfluenceReport = field(default_factory=InfluenceReport)
    batch_size: int = 16
    output: str = "xeval-out/influence"
    description: str = ""
    source: str | None = None
    task: str = TASK

    @property
    def seed(self) -> int:
        """The first seed (the dataset's, unless ``dataset.seed`` is set)."""
        return self.seeds[0]

    @property
    def detectors(self) -> list:
        """The run's detector as a one-element list of specs (for generic summaries)."""
        from xeval.protocols.config import DetectorSpec

        d = self.detector
        return [DetectorSpec(kind=d["kind"], name=d["name"], params=d["params"])]

    def explainers_for(self, _det) -> list[ComponentSpec]:
        return list(self.methods)

    def metrics_for(self, _det) -> list:
        return []

    def to_dict(self) -> dict:
        """Everything that changes results, in canonical form (hashed, and recorded in
        the manifest)."""
        return {
            "task": TASK,
            "name": self.name,
            "seeds": list(self.seeds),
            "dataset": self.dataset.to_dict(),
            "detector": copy.deepcopy(self.detector),
            "contamination": asdict(self.contamination),
            "methods": [m.to_dict() for m in self.methods],
            "l2": self.l2,
            "baselines": copy.deepcopy(self.baselines),
            "per_test": asdict(self.per_test),
            "ground_truth": asdict(self.ground_truth),
            "report": asdict(self.report),
            "batch_size": self.batch_size,
        }

    config_hash = RunConfig.config_hash  # sha256 of the canonical JSON of to_dict()


def is_influence_config(raw) -> bool:
    """Whether a raw configuration mapping has the top-level key ``task: influence``."""
    return isinstance(raw, Mapping) and raw.get("task") == TASK


# ---------------------------------------------------------------------- parts
def _real(v, where: str, *, lo: float, hi: float | None = None, open_lo: bool = True) -> float:
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > lo if open_lo else v >= lo) and (hi is None or v < hi)
    rng = f"({lo}, {hi})" if hi is not None else (f"> {lo}" if open_lo else f">= {lo}")
    _expect(ok, f"{where} must be a number {'in ' if hi is not None else ''}{rng}, got {v!r}")
    return float(v)


def _seeds(raw, where: str) -> tuple[int, ...]:
    seeds = raw.get("seeds", [0, 1, 2])
    _expect(
        isinstance(seeds, list) and seeds,
        f"{where}: seeds must be a non-empty list of integers >= 0, got {seeds!r}",
    )
    out = tuple(_int(s, f"{where}: seeds[{i}]", minimum=0) for i, s in enumerate(seeds))
    _expect(len(set(out)) == len(out), f"{where}: seeds must be distinct, got {list(out)}")
    return out


def _detector(d, where: str) -> dict:
    from xeval.adapters.registry import check_recipe

    _expect(d is not None, f"{where}: missing required key 'detector' (a recipe name or mapping)")
    rec = _load_recipe(d, f"{where}: detector")
    _check_keys(rec, _DETECTOR_KEYS - {"recipe"}, f"{where}: detector")
    _expect("kind" in rec, f"{where}: detector recipe {rec!r} has no 'kind'")
    return check_recipe(
        {k: v for k, v in rec.items() if k in ("kind", "name", "params")},
        where=f"{where}: detector",
    )


def _contamination(c, where: str) -> ContaminationSettings:
    c = {} if c is None else c
    _expect(isinstance(c, Mapping), f"{where}: contamination must be a mapping, got {c!r}")
    _check_keys(c, {"rates", "defects"}, f"{where}: contamination")
    rates = c.get("rates", [0.02, 0.05, 0.1])
    _expect(
        isinstance(rates, list) and rates,
        f"{where}: contamination.rates must be a non-empty list of numbers in (0, 1), "
        f"got {rates!r}",
    )
    out = tuple(
        _real(r, f"{where}: contamination.rates[{i}]", lo=0.0, hi=1.0) for i, r in enumerate(rates)
    )
    _expect(len(set(out)) == len(out), f"{where}: contamination.rates repeat a rate: {list(out)}")
    defects = c.get("defects")
    if defects is not None:
        _expect(
            isinstance(defects, list) and defects and all(isinstance(x, str) for x in defects),
            f"{where}: contamination.defects must be null or a non-empty list of defect "
            f"type names, got {defects!r}",
        )
        defects = tuple(defects)
    return ContaminationSettings(rates=out, defects=defects)


def _methods(lst, where: str) -> list[ComponentSpec]:
    from xeval.influence import INFLUENCE_METHODS, build_method

    _expect(
        isinstance(lst, list) and lst,
        f"{where}: methods must be a non-empty list of influence methods; known: "
        f"{INFLUENCE_METHODS.names()}",
    )
    out = []
    for i, m in enumerate(lst):
        name, params = _component(m, f"{where}: methods[{i}]", what="influence method")
        INFLUENCE_METHODS.get(name, where=f"{where}: methods[{i}]")
        try:
            build_method(name, **copy.deepcopy(params))
        except ConfigError as exc:
            raise ConfigError(f"{where}: methods[{i}]: {exc}") from exc
        except (InputError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: methods[{i}] {name!r}: {exc}") from exc
        out.append(ComponentSpec(name, params))
    names = [m.name for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    _expect(not dup, f"{where}: methods listed twice: {dup}")
    from xeval.influence.evaluation import INFLUENCE_BASELINES

    clash = sorted(set(names) & set(INFLUENCE_BASELINES.names()))
    _expect(not clash, f"{where}: methods {clash} have the names of baselines (controls)")
    return out


def _baselines(b, where: str) -> dict:
    from xeval.influence.evaluation import INFLUENCE_BASELINES

    b = {} if b is None else b
    known = INFLUENCE_BASELINES.names()
    _expect(
        isinstance(b, Mapping),
        f"{where}: baselines must be a mapping of baseline name -> options (every baseline "
        f"always runs: {known}), got {b!r}",
    )
    out = {}
    for name in known:
        opts = b.get(name) or {}
        w = f"{where}: baselines.{name}"
        _expect(isinstance(opts, Mapping), f"{w} must be a mapping of options, got {opts!r}")
        INFLUENCE_BASELINES.check_options(name, opts, where=w)
        try:
            INFLUENCE_BASELINES.get(name)(**opts)
        except (InputError, TypeError, ValueError) as exc:
            raise ConfigError(f"{w}: {exc}") from exc
        out[name] = dict(opts)
    unknown = sorted(set(b) - set(known))
    _expect(not unknown, f"{where}: unknown baseline(s) {unknown}; baselines: {known}")
    return out


def _per_test(p, where: str) -> PerTestSettings:
    p = {} if p is None else p
    _expect(isinstance(p, Mapping), f"{where}: per_test must be a mapping, got {p!r}")
    _check_keys(p, set(PerTestSettings.__dataclass_fields__), f"{where}: per_test")
    d = PerTestSettings()
    return PerTestSettings(
        enabled=_bool(p.get("enabled", d.enabled), f"{where}: per_test.enabled"),
        max_anomalies=_int(
            p.get("max_anomalies", d.max_anomalies), f"{where}: per_test.max_anomalies", minimum=1
        ),
        n_normal=_int(p.get("n_normal", d.n_normal), f"{where}: per_test.n_normal", minimum=0),
        top_k=_int(p.get("top_k", d.top_k), f"{where}: per_test.top_k", minimum=1),
    )


def _ground_truth(g, where: str, detector: dict) -> GroundTruthSettings:
    from xeval.adapters.registry import check_recipe

    g = {} if g is None else g
    _expect(isinstance(g, Mapping), f"{where}: ground_truth must be a mapping, got {g!r}")
    _check_keys(g, set(GroundTruthSettings.__dataclass_fields__), f"{where}: ground_truth")
    d = GroundTruthSettings()
    w = f"{where}: ground_truth"
    det = g.get("detector") or {}
    _expect(isinstance(det, Mapping), f"{w}.detector must be a mapping of detector params")
    check_recipe(
        {**detector, "params": {**detector["params"], **det}}, where=f"{w}.detector (params)"
    )
    n_train = _int(g.get("n_train", d.n_train), f"{w}.n_train", minimum=4)
    return GroundTruthSettings(
        enabled=_bool(g.get("enabled", d.enabled), f"{w}.enabled"),
        n_train=n_train,
        n_test=_int(g.get("n_test", d.n_test), f"{w}.n_test", minimum=1),
        n_subsets=_int(g.get("n_subsets", d.n_subsets), f"{w}.n_subsets", minimum=3),
        fraction=_real(g.get("fraction", d.fraction), f"{w}.fraction", lo=0.0, hi=1.0),
        detector=dict(det),
    )


def _report(r, where: str) -> InfluenceReport:
    r = {} if r is None else r
    _expect(isinstance(r, Mapping), f"{where}: report must be a mapping, got {r!r}")
    _check_keys(r, set(InfluenceReport.__dataclass_fields__), f"{where}: report")
    d = InfluenceReport()
    return InfluenceReport(
        figures=_bool(r.get("figures", d.figures), f"{where}: report.figures"),
        gallery=_bool(r.get("gallery", d.gallery), f"{where}: report.gallery"),
        gallery_tests=_int(
            r.get("gallery_tests", d.gallery_tests), f"{where}: report.gallery_tests", minimum=1
        ),
        gallery_k=_int(r.get("gallery_k", d.gallery_k), f"{where}: report.gallery_k", minimum=1),
    )


# ---------------------------------------------------------------------- parse
def parse_influence_config(raw, *, source: str | None = None) -> InfluenceConfig:
    """Check an influence configuration mapping in full (see the module docstring);
    :class:`ConfigError` naming the key, the value and the valid keys or values."""
    where = source or "config"
    _expect(isinstance(raw, Mapping), f"{where}: a configuration must be a mapping")
    _expect(raw.get("task") == TASK, f"{where}: task must be {TASK!r}, got {raw.get('task')!r}")
    _check_keys(raw, _TOP_KEYS, where)
    for key in ("dataset", "detector", "methods"):
        _expect(key in raw, f"{where}: missing required key '{key}'")
    name = raw.get("name", "influence")
    _expect(isinstance(name, str) and name, f"{where}: name must be a non-empty string")
    output = raw.get("output", "xeval-out/influence")
    _expect(
        isinstance(output, str) and output and output.strip().lower() not in _BOOL_WORDS,
        f"{where}: output must be a folder path, got {output!r}",
    )
    seeds = _seeds(raw, where)
    dataset = _parse_dataset(raw["dataset"], where)
    detector = _detector(raw["detector"], where)
    l2 = _real(raw.get("l2", 0.0), f"{where}: l2", lo=0.0, open_lo=False)
    return InfluenceConfig(
        name=name,
        dataset=dataset,
        detector=detector,
        methods=_methods(raw["methods"], where),
        seeds=seeds,
        contamination=_contamination(raw.get("contamination"), where),
        l2=l2,
        baselines=_baselines(raw.get("baselines"), where),
        per_test=_per_test(raw.get("per_test"), where),
        ground_truth=_ground_truth(raw.get("ground_truth"), where, detector),
        report=_report(raw.get("report"), where),
        batch_size=_int(raw.get("batch_size", 16), f"{where}: batch_size", minimum=1),
        output=output,
        description=str(raw.get("description", "") or ""),
        source=source,
    )
