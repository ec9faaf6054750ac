"""Detector kinds that recipes build through :func:`xeval.adapters.wrap.build_from_recipe`.

A recipe (``adapters/*.yaml``) names a kind and its ``params``. The built-in detectors
(:class:`~xeval.adapters.ConvAutoencoder`, :class:`~xeval.adapters.PatchFeatures`) are
registered as classes; the wrap adapters are registered here as :class:`RecipeKind`
entries, whose options are the adapter class's keyword options plus the keys the recipe
builder consumes (a model's import path, its keyword arguments, a checkpoint...). The
config check validates a recipe's ``params`` against them before anything is imported
or built.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from xeval.errors import ConfigError
from xeval.registry import DETECTORS, option_spec

__all__ = ["RecipeKind"]


@dataclass(frozen=True)
class RecipeKind:
    """A wrap-adapter detector kind (see the module docstring).

    ``adapters`` are ``"module:Class"`` paths (imported only when options are listed, so
    listing kinds stays light); ``recipe_keys`` the extra keys of the recipe builder."""

    name: str
    adapters: tuple[str, ...]
    recipe_keys: tuple[str, ...]
    description: str = ""

    @functools.cached_property
    def options(self) -> frozenset[str]:
        import importlib

        keys = set(self.recipe_keys) | {"seed", "name"}
        for path in self.adapters:
            mod, cls = path.split(":")
            keys |= {
                n
                for n, p in option_spec(getattr(importlib.import_module(mod), cls)).items()
                if p.kind is p.KEYWORD_ONLY
            }
        return frozenset(keys)

    def check(self, params: Mapping, *, where: str) -> None:
        """Unknown ``params`` are a :class:`ConfigError` listing the valid ones."""
        unknown = sorted(set(params) - self.options)
        if unknown:
            raise ConfigError(
                f"{where}: unknown params {unknown} for detector kind {self.name!r}; "
                f"accepted: {', '.join(sorted(self.options))}"
            )

    def build(self, recipe: Mapping):
        from xeval.adapters.wrap import build_from_recipe

        return build_from_recipe(dict(recipe))


_MODEL = ("model", "model_kwargs", "checkpoint", "trust_checkpoint", "strict")

for _kind in (
    RecipeKind(
        "torch_module",
        ("xeval.adapters.torch_module:TorchModuleDetector",),
        _MODEL,
        "a pre-trained torch.nn.Module (score / map / reconstruction outputs)",
    ),
    RecipeKind(
        "ood_classifier",
        (
            "xeval.adapters.ood:ClassifierOOD",
            "xeval.adapters.ood:MSPDetector",
            "xeval.adapters.ood:EnergyDetector",
            "xeval.adapters.ood:ODINDetector",
            "xeval.adapters.ood:MahalanobisDetector",
        ),
        (*_MODEL, "method"),
        "OOD scores of a classifier: msp, energy, odin, mahalanobis",
    ),
    RecipeKind(
        "blackbox",
        ("xeval.adapters.callable:BlackBoxDetector",),
        ("function", "function_kwargs"),
        "a numpy function images -> scores (and maps)",
    ),
    RecipeKind(
        "sklearn_features",
        ("xeval.adapters.sklearn:SklearnFeaturesDetector",),
        ("estimator", "estimator_kwargs"),
        "a scikit-learn / PyOD outlier detector on image features",
    ),
    RecipeKind(
        "anomalib",
        ("xeval.adapters.anomalib:AnomalibDetector",),
        _MODEL,
        "an anomalib 2.x model (raw scores and maps)",
    ),
):
    DETECTORS.register(_kind)
