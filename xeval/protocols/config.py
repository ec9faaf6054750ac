"""Run configurations: what to evaluate (dataset x detectors x explainers x metrics).

A configuration is a YAML file (read with ``yaml.safe_load``) such as
``protocols/demo.yaml``::

    name: demo
    seed: 0
    output: xeval-out/demo
    dataset: {format: textures, quick: false, image_size: [128, 128]}
    detectors: [conv_autoencoder, patch_features]    # recipes in adapters/, or inline
    explainers: [native, random, sobel, centre]      # per detector: {recipe:, explainers:}
    metrics:
      mode: exact                # or binned (streaming, with an error bound)
      fpr_limits: [0.3]
      threshold: {quantile: 0.99}   # on normal validation pixels
      validation_fraction: 0.2      # of the normal training images, held out
    batch_size: 16
    report: {figures: true, gallery: true}
    cache: true      # reuse attribution maps across runs: <output>/.cache, or a folder

Every key is checked; unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xeval.assets import find_asset
from xeval.errors import ConfigError

DATASET_FORMATS = ("textures", "mvtec", "folder")

_DEFAULT_METRICS = {
    "mode": "exact",
    "localisation": True,
    "complexity": True,
    "faithfulness": False,
    "robustness": False,
    "sanity": False,
    "fpr_limits": [0.3],
    "threshold": {"quantile": 0.99},
    "validation_fraction": 0.2,
    "bootstrap": 1000,
}


@dataclass
class RunConfig:
    name: str
    dataset: dict
    detectors: list[dict]
    explainers: list
    metrics: dict = field(default_factory=lambda: copy.deepcopy(_DEFAULT_METRICS))
    seed: int = 0
    output: str = "xeval-out"
    batch_size: int = 16
    report: dict = field(default_factory=lambda: {"figures": True, "gallery": True})
    cache: str | bool | None = None
    source: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "detectors": self.detectors,
            "explainers": self.explainers,
            "metrics": self.metrics,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "report": self.report,
        }

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of everything that changes results."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    _expect(not unknown, f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _load_recipe(spec) -> dict:
    """A detector entry: a recipe name (file in adapters/), a path, or an inline dict."""
    if isinstance(spec, str):
        path = find_asset("adapters", spec)
        recipe = yaml.safe_load(path.read_text()) or {}
        _expect(isinstance(recipe, dict), f"detector recipe {path} must be a mapping")
        return recipe
    _expect(isinstance(spec, dict), f"detectors entries must be names or mappings, got {spec!r}")
    if "recipe" in spec:
        base = _load_recipe(spec["recipe"])
        params = {**base.get("params", {}), **spec.get("params", {})}
        merged = {**base, **{k: v for k, v in spec.items() if k != "recipe"}}
        merged["params"] = params
        return merged
    return dict(spec)


def parse_config(raw: dict, *, source: str | None = None) -> RunConfig:
    where = source or "config"
    _expect(isinstance(raw, dict), f"{where}: a configuration must be a mapping, got {raw!r}")
    _check_keys(
        raw,
        {
            "name",
            "seed",
            "output",
            "dataset",
            "detectors",
            "explainers",
            "metrics",
            "batch_size",
            "report",
            "description",
        },
        where,
    )
    for key in ("dataset", "detectors", "explainers"):
        _expect(key in raw, f"{where}: missing required key '{key}'")
    ds = raw["dataset"]
    _expect(isinstance(ds, dict), f"{where}: 'dataset' must be a mapping, got {ds!r}")
    fmt = ds.get("format")
    _expect(
        fmt in DATASET_FORMATS,
        f"{where}: dataset.format must be one of {DATASET_FORMATS}, got {fmt!r}",
    )
    if fmt != "textures":
        _expect("path" in ds, f"{where}: dataset.path is required for format {fmt!r}")
    size = ds.get("image_size", [128, 128])
    _expect(
        isinstance(size, list | tuple)
        and len(size) == 2
        and all(isinstance(s, int) and s > 0 for s in size),
        f"{where}: dataset.image_size must be [H, W] positive integers, got {size!r}",
    )
    dets = raw["detectors"]
    _expect(isinstance(dets, list) and dets, f"{where}: 'detectors' must be a non-empty list")
    detectors = [_load_recipe(d) for d in dets]
    for d in detectors:
        _expect("kind" in d, f"{where}: detector recipe {d!r} has no 'kind'")
        if "metrics" in d:
            _expect(isinstance(d["metrics"], dict),
                    f"{where}: detectors[{d.get('name', d['kind'])}].metrics must be a mapping")
            _check_keys(d["metrics"], set(_DEFAULT_METRICS) - {"mode", "fpr_limits"},
                        f"{where}: detectors[{d.get('name', d['kind'])}].metrics")
        if "explainers" in d:
            _expect(
                isinstance(d["explainers"], list) and d["explainers"],
                f"{where}: detectors[{d.get('name', d['kind'])}].explainers must be a "
                f"non-empty list (explainers for this detector only)",
            )
    names = [d.get("name", d["kind"]) for d in detectors]
    _expect(len(set(names)) == len(names), f"{where}: detector names must be unique: {names}")
    expl = raw["explainers"]
    _expect(isinstance(expl, list) and expl, f"{where}: 'explainers' must be a non-empty list")
    metrics = copy.deepcopy(_DEFAULT_METRICS)
    m = raw.get("metrics") or {}
    _expect(isinstance(m, dict), f"{where}: 'metrics' must be a mapping")
    _check_keys(m, set(_DEFAULT_METRICS), f"{where}: metrics")
    metrics.update(m)
    _expect(
        metrics["mode"] in ("exact", "binned"),
        f"{where}: metrics.mode must be 'exact' or 'binned', got {metrics['mode']!r}",
    )
    lims = metrics["fpr_limits"]
    _expect(
        isinstance(lims, list)
        and lims
        and all(isinstance(x, int | float) and 0 < x <= 1 for x in lims),
        f"{where}: metrics.fpr_limits must be a list of numbers in (0, 1], got {lims!r}",
    )
    q = (metrics["threshold"] or {}).get("quantile", 0.99)
    _expect(
        isinstance(q, int | float) and 0 < q <= 1,
        f"{where}: metrics.threshold.quantile must be in (0, 1], got {q!r}",
    )
    faith = metrics["faithfulness"]
    _expect(
        faith is False or faith is None or isinstance(faith, dict),
        f"{where}: metrics.faithfulness must be false or a mapping like "
        f"{{steps: 10, substrate: normal, max_images: 16}}, got {faith!r}",
    )
    if isinstance(faith, dict):
        _check_keys(faith, {"steps", "substrate", "max_images"}, f"{where}: metrics.faithfulness")
        _expect(
            faith.get("substrate", "normal")
            in ("normal", "reconstruction", "road", "black", "blur"),
            f"{where}: metrics.faithfulness.substrate must be one of normal, "
            f"reconstruction, road, black, blur; got {faith.get('substrate')!r}",
        )
    for key, allowed in (
        ("robustness", {"radius", "n_samples", "max_images"}),
        ("sanity", {"max_images"}),
    ):
        val = metrics[key]
        _expect(
            val is False or val is None or isinstance(val, dict),
            f"{where}: metrics.{key} must be false or a mapping, got {val!r}",
        )
        if isinstance(val, dict):
            _check_keys(val, allowed, f"{where}: metrics.{key}")
    vf = metrics["validation_fraction"]
    _expect(
        isinstance(vf, int | float) and 0 < vf < 1,
        f"{where}: metrics.validation_fraction must be in (0, 1), got {vf!r}",
    )
    bs = raw.get("batch_size", 16)
    _expect(isinstance(bs, int) and bs > 0, f"{where}: batch_size must be a positive integer")
    seed = raw.get("seed", 0)
    _expect(isinstance(seed, int), f"{where}: seed must be an integer, got {seed!r}")
    report = {"figures": True, "gallery": True, **(raw.get("report") or {})}
    cache = raw.get("cache")
    _expect(
        cache is None or isinstance(cache, bool | str),
        f"{where}: cache must be true/false or a folder path, got {cache!r}",
    )
    return RunConfig(
        name=str(raw.get("name", "run")),
        dataset=dict(ds, image_size=list(size)),
        detectors=detectors,
        explainers=list(expl),
        metrics=metrics,
        seed=seed,
        output=str(raw.get("output", "xeval-out")),
        batch_size=bs,
        report=report,
        cache=cache,
        source=source,
    )


def load_config(path_or_name: str | Path) -> RunConfig:
    """Read a run configuration from a YAML file, or a protocol name in ``protocols/``."""
    p = Path(path_or_name)
    if not p.is_file():
        p = find_asset("protocols", str(path_or_name))
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from e
    cfg = parse_config(raw, source=str(p))
    # relative dataset paths are relative to the config file
    if "path" in cfg.dataset and not Path(cfg.dataset["path"]).is_absolute():
        cand = (p.parent / cfg.dataset["path"]).resolve()
        if cand.exists():
            cfg.dataset["path"] = str(cand)
    return cfg
