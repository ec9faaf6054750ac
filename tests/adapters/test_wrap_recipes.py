"""Declarative recipes (adapters/*.yaml) build the wrap adapters; checkpoints load safely."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from xeval.adapters.callable import BlackBoxDetector
from xeval.adapters.imports import safe_imports
from xeval.adapters.ood import EnergyDetector, MahalanobisDetector
from xeval.adapters.sklearn import SklearnFeaturesDetector
from xeval.adapters.torch_module import TorchModuleDetector
from xeval.adapters.wrap import KINDS, build_from_recipe
from xeval.errors import InputError

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
HERE = __name__  # import paths below point into this test module
FILES = {
    "torch_module": "torch_module.yaml",
    "blackbox": "blackbox.yaml",
    "sklearn_features": "sklearn_features.yaml",
    "ood_classifier": "ood_classifier.yaml",
    "anomalib": "anomalib.yaml",
}


@pytest.fixture(autouse=True)
def _allow_this_module():
    """The recipes below name objects of this test module (and, for the error cases,
    of torch.nn and a missing package): allowed as a user allows their own code."""
    with safe_imports(HERE, "torch.nn", "no_such_pkg"):
        yield


class TinyAE(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, width, 3, padding=1)
        self.dec = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x):
        return self.dec(torch.relu(self.enc(x)))


class TinyClassifier(nn.Module):
    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, k)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def make_ae(width: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return TinyAE(width)


def score_images(x: np.ndarray) -> np.ndarray:
    return np.abs(x - 0.5).reshape(len(x), -1).max(axis=1)


def make_scorer(offset: float = 0.0):
    return lambda x: score_images(x) + offset


def load(kind: str) -> dict:
    return yaml.safe_load((ADAPTERS / FILES[kind]).read_text())


def imgs(n: int = 4, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, size, size)).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_recipe_files_are_documented(kind):
    text = (ADAPTERS / FILES[kind]).read_text()
    recipe = yaml.safe_load(text)
    assert recipe["kind"] == kind and isinstance(recipe["params"], dict)
    lines = text.split("params:", 1)[1].splitlines()
    keyed = [ln for ln in lines if re.match(r"^  [a-z_]+:", ln)]
    assert keyed and all("#" in ln for ln in keyed), [ln for ln in keyed if "#" not in ln]


def test_sklearn_recipe_builds_and_runs_as_shipped():
    recipe = load("sklearn_features")
    recipe["params"].update(input_size=[16, 16], feature_params={"patch": 4}, seed=0)
    det = build_from_recipe(recipe)
    assert isinstance(det, SklearnFeaturesDetector) and det.name == "sklearn_features"
    s, m = det.fit([imgs(8)]).predict(imgs(2, seed=1))
    assert s.shape == (2,) and m.shape == (2, 4, 4)
    assert det.config()["estimator_params"]["n_estimators"] == 200


def test_torch_module_recipe_with_safe_checkpoint(tmp_path):
    src = make_ae(width=5)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1)
    ckpt = tmp_path / "ae.pt"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, ckpt)
    recipe = load("torch_module")
    recipe["params"].update(
        model=f"{HERE}:make_ae",
        model_kwargs={"width": 5},
        checkpoint=str(ckpt),
        input_size=[16, 16],
        seed=0,
    )
    det = build_from_recipe(recipe)
    assert isinstance(det, TorchModuleDetector)
    x = imgs(3)
    with torch.no_grad():
        rec = src(torch.from_numpy(x))
    expected = ((rec - torch.from_numpy(x)) ** 2).mean(dim=1).numpy()
    np.testing.assert_allclose(det.anomaly_map(x), expected, rtol=1e-5, atol=1e-7)

    # a pickled module needs trust_checkpoint
    whole = tmp_path / "whole.pt"
    torch.save(src, whole)
    bad = {"kind": "torch_module", "params": {"checkpoint": str(whole), "input_size": 16}}
    with pytest.raises(InputError, match="weights_only=True.*trust_checkpoint"):
        build_from_recipe(bad)
    bad["params"]["trust_checkpoint"] = True
    det2 = build_from_recipe(bad)
    np.testing.assert_allclose(det2.anomaly_map(x), expected, rtol=1e-5, atol=1e-7)

    mismatch = {
        "kind": "torch_module",
        "params": {"model": f"{HERE}:make_ae", "checkpoint": str(ckpt)},
    }
    with pytest.raises(InputError, match="does not match TinyAE"):
        build_from_recipe(mismatch)


def test_blackbox_recipe():
    recipe = load("blackbox")
    recipe["params"].update(function=f"{HERE}:score_images", input_size=[16, 16], seed=0)
    det = build_from_recipe(recipe)
    assert isinstance(det, BlackBoxDetector) and det.torch_score() is None
    np.testing.assert_allclose(det.score(imgs(2)), score_images(imgs(2)), rtol=1e-6)
    recipe["params"].update(function=f"{HERE}:make_scorer", function_kwargs={"offset": 1.0})
    det = build_from_recipe(recipe)
    np.testing.assert_allclose(det.score(imgs(2)), score_images(imgs(2)) + 1, rtol=1e-6)


def test_ood_recipes(tmp_path):
    torch.manual_seed(0)
    clf = TinyClassifier()
    ckpt = tmp_path / "clf.pt"
    torch.save(clf.state_dict(), ckpt)
    recipe = load("ood_classifier")
    recipe["params"].update(
        model=f"{HERE}:TinyClassifier", checkpoint=str(ckpt), input_size=[16, 16], seed=0
    )
    det = build_from_recipe(recipe)
    assert isinstance(det, EnergyDetector)
    x = imgs(3)
    with torch.no_grad():
        z = clf(
            (torch.from_numpy(x) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        )
    np.testing.assert_allclose(det.score(x), -torch.logsumexp(z, 1).numpy(), rtol=1e-5)

    maha = dict(recipe, params={k: v for k, v in recipe["params"].items() if k != "temperature"})
    maha["params"].update(method="mahalanobis", layer="features", labels="single")
    det = build_from_recipe(maha)
    assert isinstance(det, MahalanobisDetector)
    assert det.fit([imgs(20)]).score(x).shape == (3,)

    with pytest.raises(InputError, match="unexpected keyword argument 'temperature'"):
        build_from_recipe(dict(recipe, params={**recipe["params"], "method": "mahalanobis"}))
    with pytest.raises(InputError, match="method must be one of"):
        build_from_recipe(dict(recipe, params={**recipe["params"], "method": "nope"}))


def test_recipe_errors():
    with pytest.raises(InputError, match="kind must be one of"):
        build_from_recipe({"kind": "nope"})
    with pytest.raises(InputError, match="mapping with 'kind'"):
        build_from_recipe({"params": {}})
    with pytest.raises(InputError, match="cannot import module 'no_such_pkg.x'"):
        build_from_recipe({"kind": "torch_module", "params": {"model": "no_such_pkg.x:f"}})
    with pytest.raises(InputError, match="has no attribute 'Nope'"):
        build_from_recipe({"kind": "torch_module", "params": {"model": "torch.nn:Nope"}})
    with pytest.raises(InputError, match="need model"):
        build_from_recipe({"kind": "torch_module", "params": {}})
    with pytest.raises(InputError, match="does not exist"):
        build_from_recipe(
            {
                "kind": "torch_module",
                "params": {"model": f"{HERE}:make_ae", "checkpoint": "/no/file.pt"},
            }
        )
    with pytest.raises(InputError, match="unexpected keyword argument 'colour'"):
        build_from_recipe(
            {"kind": "blackbox", "params": {"function": f"{HERE}:score_images", "colour": 1}}
        )
    with pytest.raises(InputError, match="need estimator"):
        build_from_recipe({"kind": "sklearn_features", "params": {}})
