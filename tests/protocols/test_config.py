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
    assert cfg.detectors and cfg.explainers
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
