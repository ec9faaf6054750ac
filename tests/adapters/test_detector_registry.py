"""build_detector and the shipped recipes adapters/conv_autoencoder.yaml, patch_features.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xeval.adapters import DETECTORS, ConvAutoencoder, PatchFeatures, build_detector
from xeval.errors import ConfigError

RECIPES = Path(__file__).resolve().parents[2] / "adapters"


@pytest.mark.parametrize(
    ("kind", "cls"), [("conv_autoencoder", ConvAutoencoder), ("patch_features", PatchFeatures)]
)
def test_shipped_recipe_matches_the_defaults(kind, cls):
    path = RECIPES / f"{kind}.yaml"
    recipe = yaml.safe_load(path.read_text())
    assert recipe["kind"] == kind and DETECTORS[kind] is cls
    det = build_detector(recipe)
    assert type(det) is cls and det.name == recipe["name"]
    default = cls().config()
    cfg = det.config()
    for key, value in recipe["params"].items():
        assert cfg[key] == default[key] == value, key
    # every param is commented in the file
    for key in recipe["params"]:
        line = next(ln for ln in path.read_text().splitlines() if ln.strip().startswith(f"{key}:"))
        assert "#" in line, key
    assert type(build_detector(path)) is cls  # a path to the YAML works too


def test_recipe_name_and_params():
    det = build_detector({"kind": "patch_features", "name": "pf", "params": {"k": 3}})
    assert det.name == "pf" and det.k == 3
    assert build_detector({"kind": "conv_autoencoder"}).name == "conv_autoencoder"
    det = build_detector({"kind": "conv_autoencoder", "params": {"input_size": [64, 64]}})
    assert det.input_size == (64, 64)


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(ConfigError, match="unknown detector kind 'padim'") as info:
        build_detector({"kind": "padim"})
    assert "conv_autoencoder" in str(info.value) and "patch_features" in str(info.value)


def test_unknown_params_are_named():
    with pytest.raises(ConfigError, match=r"conv_autoencoder.*\['epochz', 'lr_decay'\]") as info:
        build_detector({"kind": "conv_autoencoder", "params": {"epochz": 3, "lr_decay": 1}})
    assert "epochs" in str(info.value)  # the accepted ones are listed


def test_malformed_recipes():
    with pytest.raises(ConfigError, match="mapping"):
        build_detector(["patch_features"])
    with pytest.raises(ConfigError, match=r"unknown keys \['parms'\]"):
        build_detector({"kind": "patch_features", "parms": {}})
    with pytest.raises(ConfigError, match="'params' must be a mapping"):
        build_detector({"kind": "patch_features", "params": [1]})
    with pytest.raises(ConfigError, match="name given twice"):
        build_detector({"kind": "patch_features", "name": "a", "params": {"name": "b"}})
