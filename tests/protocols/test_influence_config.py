"""Influence (contaminated-training) configurations: dispatch on `task: influence`,
every key checked up front with errors that name it and list the valid ones."""

from __future__ import annotations

import copy

import pytest
import yaml

from xeval.assets import find_asset
from xeval.errors import ConfigError
from xeval.protocols import load_config
from xeval.protocols.config import parse_config
from xeval.protocols.influence import (
    InfluenceConfig,
    is_influence_config,
    parse_influence_config,
)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(find_asset("protocols", "contamination_quick").read_text())


def _with(raw: dict, **changes) -> dict:
    out = copy.deepcopy(raw)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def test_quick_and_full_protocols_parse_as_influence_configs(raw):
    for name in ("contamination_quick", "contamination"):
        cfg = load_config(name)
        assert isinstance(cfg, InfluenceConfig)
        assert cfg.task == "influence" and cfg.name and cfg.seed == cfg.seeds[0]
        assert isinstance(cfg.dataset.params, dict)
        assert len(cfg.config_hash()) == 16
    full = load_config("contamination")
    assert len(full.seeds) >= 3 and len(full.contamination.rates) >= 3


def test_dispatch_only_on_task_influence(raw):
    assert is_influence_config(raw)
    assert not is_influence_config({**raw, "task": "image"})
    assert not is_influence_config([raw])
    assert isinstance(parse_config(raw), InfluenceConfig)


def test_config_hash_tracks_what_changes_results(raw):
    a = parse_influence_config(raw)
    assert a.config_hash() == parse_influence_config(copy.deepcopy(raw)).config_hash()
    b = parse_influence_config(_with(raw, seeds=[5, 6]))
    c = parse_influence_config(_with(raw, contamination={"rates": [0.1]}))
    d = parse_influence_config(_with(raw, description="other words"))
    assert len({a.config_hash(), b.config_hash(), c.config_hash()}) == 3
    assert d.config_hash() == a.config_hash()  # a description changes no number
    assert a.to_dict()["task"] == "influence"


def test_defaults(raw):
    cfg = parse_influence_config({k: raw[k] for k in ("task", "dataset", "detector", "methods")})
    assert cfg.seeds == (0, 1, 2)
    assert cfg.contamination.rates == (0.02, 0.05, 0.1)
    assert set(cfg.baselines) == {"random", "detector_score", "knn_distance"}
    assert cfg.l2 == 0.0 and cfg.per_test.enabled and not cfg.ground_truth.enabled


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"epochs": 3}, r"unknown key\(s\) \['epochs'\]; allowed: \[.*'baselines'.*'seeds'"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [0, 0]}, "seeds must be distinct"),
        ({"seeds": [0, -1]}, r"seeds\[1\] must be an integer >= 0"),
        ({"seeds": [True]}, r"seeds\[0\] must be an integer"),
        ({"methods": []}, r"methods must be a non-empty list .*known: \[.*'grad_dot'"),
        ({"methods": ["nope"]}, r"methods\[0\]: unknown influence method 'nope'; known"),
        ({"methods": [{"name": "grad_dot", "bogus": 1}]}, r"methods\[0\].*bogus.*valid options"),
        ({"methods": ["grad_dot", "grad_dot"]}, r"methods listed twice: \['grad_dot'\]"),
        (
            {"contamination": {"rates": [0.1, 1.5]}},
            r"contamination.rates\[1\] must be a number in \(0.0, 1.0\)",
        ),
        ({"contamination": {"rates": [0.1, 0.1]}}, "repeat a rate"),
        (
            {"contamination": {"rate": 0.1}},
            r"contamination: unknown key\(s\) \['rate'\]; allowed: \['defects', 'rates'\]",
        ),
        (
            {"contamination": {"defects": "hole"}},
            "contamination.defects must be null or a non-empty list",
        ),
        (
            {"baselines": {"oracle": {}}},
            r"unknown baseline\(s\) \['oracle'\]; "
            r"baselines: \['detector_score', 'knn_distance', 'random'\]",
        ),
        (
            {"baselines": {"knn_distance": {"k": 0}}},
            "baselines.knn_distance: knn_distance: k must be a positive integer",
        ),
        (
            {"baselines": {"knn_distance": {"kk": 1}}},
            r"baselines.knn_distance: unknown option\(s\) \['kk'\]; valid options: \['k'\]",
        ),
        ({"baselines": ["random"]}, "baselines must be a mapping"),
        ({"per_test": {"top": 3}}, r"per_test: unknown key\(s\) \['top'\]"),
        ({"per_test": {"top_k": 0}}, "per_test.top_k must be an integer >= 1"),
        ({"ground_truth": {"n_subsets": 1}}, "ground_truth.n_subsets must be an integer >= 3"),
        (
            {"ground_truth": {"fraction": 1.0}},
            r"ground_truth.fraction must be a number in \(0.0, 1.0\)",
        ),
        ({"ground_truth": {"detector": {"widht": 2}}}, "ground_truth.detector"),
        ({"report": {"gallery": "yes"}}, "report.gallery must be true or false"),
        ({"l2": -1}, r"l2 must be a number >= 0.0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"output": "false"}, "output must be a folder path"),
        ({"detector": None}, "missing required key 'detector'"),
        ({"detector": {"kind": "nope"}}, "unknown detector kind 'nope'"),
        ({"detector": {"recipe": "conv_autoencoder", "params": {"epoch": 1}}}, "epoch"),
        ({"dataset": {"format": "nope"}}, r"dataset.format must be one of"),
    ],
)
def test_bad_keys_are_config_errors_naming_them(raw, change, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(_with(raw, **change), source="q.yaml")


def test_unknown_key_error_lists_every_valid_top_key(raw):
    with pytest.raises(ConfigError) as info:
        parse_config(_with(raw, metrics=["image_auroc"]))
    for key in ("contamination", "methods", "per_test", "ground_truth", "baselines"):
        assert key in str(info.value)


def test_check_through_the_cli(capsys):
    from xeval.cli import main

    assert main(["run", "contamination_quick", "--check"]) == 0
    out = capsys.readouterr().out
    assert "ok (config hash" in out and "grad_dot" in out


def test_task_key_is_checked_and_influence_keys_need_it():
    """A wrong ``task`` is named; influence keys without ``task: influence`` say so."""
    import copy

    import yaml

    from xeval.assets import find_asset
    from xeval.errors import ConfigError
    from xeval.protocols.config import parse_config

    raw = yaml.safe_load(find_asset("protocols", "contamination_quick").read_text())
    bad = copy.deepcopy(raw)
    bad["task"] = "influense"
    with pytest.raises(ConfigError, match=r"task must be 'influence'.*'influense'"):
        parse_config(bad)
    del bad["task"]
    with pytest.raises(ConfigError, match=r"needs 'task: influence'") as e:
        parse_config(bad)
    assert "'methods'" in str(e.value) and "'seeds'" in str(e.value)
