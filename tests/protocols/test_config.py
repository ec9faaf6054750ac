"""Run configurations: the shipped protocols parse; bad keys and values name the key."""

from __future__ import annotations

import pytest
import yaml

from xeval.assets import asset_dir
from xeval.errors import ConfigError
from xeval.protocols import load_config, parse_config

BASE = {
    "name": "t",
    "dataset": {"format": "textures", "quick": True},
    "detectors": [{"kind": "conv_autoencoder"}],
    "explainers": ["native"],
}


@pytest.mark.parametrize(
    "path", sorted(asset_dir("protocols").glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_protocols_parse(path):
    cfg = load_config(path)
    # influence protocols rank training images with methods instead of explaining maps
    explainers = cfg.methods if getattr(cfg, "task", "image") == "influence" else cfg.explainers
    assert cfg.detectors and explainers
    assert len(cfg.config_hash()) == 16


def test_protocol_by_name_and_recipe_merge():
    cfg = load_config("demo_quick")
    ae = cfg.detectors[0]
    assert ae.kind == "conv_autoencoder" and ae.params["epochs"] == 2


def test_hash_changes_with_content_only():
    a, b = parse_config(dict(BASE)), parse_config(dict(BASE))
    assert a.config_hash() == b.config_hash()
    c = parse_config({**BASE, "seed": 1})
    assert c.config_hash() != a.config_hash()


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"dataset": {"format": "nope"}}, r"dataset.format must be one of"),
        ({"dataset": {"format": "mvtec"}}, r"dataset.path is required"),
        ({"dataset": {"format": "textures", "image_size": [0, 3]}}, r"image_size"),
        ({"detectors": []}, r"'detectors' must be a non-empty list"),
        ({"detectors": ["no_such_recipe"]}, r"unknown adapter 'no_such_recipe'"),
        ({"metrics": {"mode": "fast"}}, r"metrics.mode must be"),
        ({"metrics": {"fpr_limits": [0]}}, r"fpr_limits"),
        ({"metrics": {"threshold": {"quantile": 2}}}, r"quantile"),
        ({"metrics": {"typo": 1}}, r"metrics: unknown key"),
        ({"batch_size": -1}, r"batch_size"),
        (
            {
                "detectors": [
                    {"kind": "conv_autoencoder", "name": "x"},
                    {"kind": "patch_features", "name": "x"},
                ]
            },
            r"unique",
        ),
    ],
)
def test_bad_config_names_the_key(patch, match):
    with pytest.raises(ConfigError, match=match):
        parse_config({**BASE, **patch})


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_missing_required_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "dataset": {"format": "textures"}}))
    with pytest.raises(ConfigError, match="missing required key 'detectors'"):
        load_config(p)


# ------------------------------------------------------------- checked before running
NEW = {
    "name": "t",
    "dataset": {"format": "textures", "quick": True},
    "detectors": [{"kind": "conv_autoencoder"}],
    "explainers": ["native"],
    "metrics": ["pixel_auroc", {"name": "aupro", "fpr_limit": 0.1}],
}


def _parse(**patch):
    return parse_config({**NEW, **patch})


def test_metric_list_is_built_from_the_registry():
    from xeval.protocols.config import build_metrics

    cfg = _parse()
    labels = [m.label for m in build_metrics(cfg.metrics)]
    assert labels == ["pixel_auroc", "aupro@0.1"]
    assert cfg.metrics[1].params == {"fpr_limit": 0.1}


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"metrics": ["nope"]}, r"unknown metric 'nope'; known metrics: .*aupro"),
        ({"metrics": [{"name": "aupro", "fpr_limt": 0.1}]}, r"unknown option.*fpr_limt.*fpr_limit"),
        ({"metrics": [{"name": "deletion_auc", "steps": "10"}]}, r"option 'steps' must be an int"),
        ({"metrics": [{"name": "deletion_auc", "steps": True}]}, r"option 'steps' must be an int"),
        ({"metrics": [{"name": "aupro", "fpr_limit": 2}]}, r"fpr_limit must lie in \(0, 1\]"),
        ({"metrics": ["aupro", {"name": "aupro", "fpr_limit": 0.3}]}, r"listed twice.*aupro@0.3"),
        ({"metrics": []}, r"non-empty list"),
        ({"explainers": [{"name": "random", "colour": 1}]}, r"'random'.*\['colour'\]"),
        ({"explainers": ["native", "native"]}, r"explainers listed twice"),
        ({"dataset": {"format": "mvtec", "pth": "x"}}, r"dataset.path is required"),
        ({"dataset": {"format": "mvtec", "path": "x", "pth": 1}}, r"unknown option.*'pth'"),
        ({"dataset": {"format": "textures", "quick": "yes"}}, r"option 'quick' must be true"),
        ({"detectors": [{"kind": "conv_autoencoder", "params": {"epochz": 1}}]}, r"epochz"),
        ({"evaluation": {"subset": "random"}}, r"evaluation.subset must be one of"),
        ({"evaluation": {"bootstrap": -1}}, r"bootstrap must be an integer >= 1"),
        ({"evaluation": {"bootstrap": 0}}, r"bootstrap must be an integer >= 1"),
        ({"evaluation": {"typo": 1}}, r"evaluation: unknown key"),
        ({"report": {"figures": "yes"}}, r"report.figures must be true or false"),
        ({"seed": True}, r"seed must be an integer"),
        ({"cache": 3}, r"cache must be true/false .* or a folder"),
        ({"cache": "false"}, r"cache must be true/false .* or a folder"),
    ],
)
def test_every_option_is_checked_against_its_registry_entry(patch, match):
    with pytest.raises(ConfigError, match=match):
        _parse(**patch)


def test_cache_key_is_accepted():
    assert _parse(cache=True).cache is True
    assert _parse(cache="some/folder").cache == "some/folder"


def test_image_size_is_deprecated_not_silently_ignored():
    from xeval.errors import XevalDeprecationWarning

    with pytest.warns(XevalDeprecationWarning, match="image_size.*no effect.*input_size"):
        cfg = _parse(dataset={"format": "textures", "image_size": [32, 32]})
    assert "image_size" not in cfg.dataset.params


def test_old_metrics_mapping_still_works_with_a_warning():
    from xeval.errors import XevalDeprecationWarning

    with pytest.warns(XevalDeprecationWarning, match="mapping of booleans is deprecated"):
        cfg = _parse(metrics={"faithfulness": {"steps": 4}, "fpr_limits": [0.3, 0.05]})
    by = {m.name: m.params for m in cfg.metrics}
    assert by["deletion_auc"] == {"steps": 4, "substrate": "normal", "max_images": 16}
    assert [m.params["fpr_limit"] for m in cfg.metrics if m.name == "aupro"] == [0.3, 0.05]
    with pytest.raises(ConfigError, match=r"threshold must be a mapping.*None"):
        _parse(metrics={"threshold": None})  # checked first: no crash later


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_per_detector_overrides_are_checked():
    det = {"kind": "conv_autoencoder"}
    legacy = {"faithfulness": {"steps": 4}}
    cfg = _parse(metrics=legacy, detectors=[{**det, "metrics": {"faithfulness": False}}])
    assert "deletion_auc" not in {m.name for m in cfg.detectors[0].metrics}
    for bad, match in (
        ({"robustness": 5}, r"robustness must be false or a mapping"),
        ({"bogus": 1}, r"unknown key"),
        ({"complexity": "no"}, r"complexity must be true or false"),
    ):
        with pytest.raises(ConfigError, match=match):
            _parse(metrics=legacy, detectors=[{**det, "metrics": bad}])
    # with a metric list: exclude / add, or a list of its own
    cfg = _parse(detectors=[{**det, "metrics": {"exclude": ["aupro@0.1"], "add": ["iou"]}}])
    assert [m.name for m in cfg.detectors[0].metrics] == ["pixel_auroc", "iou"]
    with pytest.raises(ConfigError, match=r"exclude: \['nope'\] are not in the run's metrics"):
        _parse(detectors=[{**det, "metrics": {"exclude": ["nope"]}}])
    with pytest.raises(ConfigError, match="give this detector a list of metrics"):
        _parse(detectors=[{**det, "metrics": {"faithfulness": False}}])


def test_one_default_per_option():
    """The engine uses the metric's defaults, which are the functions' defaults."""
    import inspect

    from xeval.metrics import faithfulness as F
    from xeval.metrics import robustness as R
    from xeval.registry import METRICS

    curve = inspect.signature(F.perturbation_curve).parameters
    assert METRICS.get("deletion_auc")().steps == curve["steps"].default == F.DEFAULT_STEPS
    sens = inspect.signature(R.max_sensitivity).parameters
    m = METRICS.get("max_sensitivity")()
    assert m.n_samples == sens["n_samples"].default == R.DEFAULT_SAMPLES
    assert m.radius == sens["radius"].default
    top_k = inspect.signature(__import__("xeval").metrics.top_k_intersection).parameters
    assert METRICS.get("top_k_intersection")().k == top_k["k"].default


def test_check_command(tmp_path, capsys):
    from xeval.cli import main

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(NEW))
    assert main(["run", str(p), "--check"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "aupro@0.1" in out and "conv_autoencoder" in out
    assert not (tmp_path / "xeval-out").exists()  # nothing ran
    p.write_text(yaml.safe_dump({**NEW, "metrics": ["pixel_auroc", "no_such"]}))
    assert main(["run", str(p), "--check"]) == 2
    assert "unknown metric 'no_such'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml"), "--check"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_shipped_protocols_use_the_current_form():
    import warnings

    for path in sorted(asset_dir("protocols").glob("*.yaml")):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            load_config(path)
