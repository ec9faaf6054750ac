"""Detector kinds that recipes build through :func:`xeval.adapters.wrap.build_from_recipe`.

A recipe (``adapters/*.yaml``) names a kind and its ``params``. The built-in detectors
(:class:`~xeval.adapters.ConvAutoencoder`, :class:`~xeval.adapters.PatchFeatures`) are
registered as classes; the wrap adapters are registered here as :class:`RecipeKind`
entries, whose options are the adapter class's keyword options plus the keys the recipe
builder consumes (a model's import path, its keyword arguments, a checkpoint...). The
config check validates a recipe's ``params`` against them before anything is imported
or built: unknown keys, the types of the recipe's own keys (``trust_checkpoint`` and
``strict`` are real booleans, a string ``"false"`` is refused) and of the adapter's
annotated options, and every import path against :mod:`xeval.adapters.imports` (a
configuration cannot make xeval import or call arbitrary code).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xeval.adapters.imports import check_import_path
from xeval.errors import ConfigError
from xeval.registry import DETECTORS, conforms, describe_type, option_spec

__all__ = ["IMPORT_KEYS", "RECIPE_KEY_TYPES", "RecipeKind"]

RECIPE_KEY_TYPES: dict[str, Any] = {
    "model": str,
    "model_kwargs": dict[str, Any] | None,
    "checkpoint": str | None,
    "trust_checkpoint": bool,
    "strict": bool,
    "method": typing.Literal["msp", "energy", "odin", "mahalanobis"],
    "function": str,
    "function_kwargs": dict[str, Any] | None,
    "estimator": str,
    "estimator_kwargs": dict[str, Any] | None,
}
"""The types of the keys the recipe builder consumes (checked before anything is built)."""

IMPORT_KEYS = (
    "model",
    "function",
    "estimator",
    "score_fn",
    "map_fn",
    "fit_fn",
    "preprocess",
    "logits_fn",
    "features_fn",
    "features",
)
"""Recipe params whose string values are import paths (checked against the policy of
:mod:`xeval.adapters.imports` before anything is imported)."""


@dataclass(frozen=True)
class RecipeKind:
    """A wrap-adapter detector kind (see the module docstring).

    ``adapters`` are ``"module:Class"`` paths (imported only when options are listed, so
    listing kinds stays light); ``recipe_keys`` the extra keys of the recipe builder."""

    name: str
    adapters: tuple[str, ...]
    recipe_keys: tuple[str, ...]
    description: str = ""
    default_module: str | None = None
    """Module a bare ``model`` name refers to (``Padim`` -> ``anomalib.models:Padim``)."""

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

    @functools.cached_property
    def _hints(self) -> dict[str, list]:
        import importlib

        hints: dict[str, list] = {}
        for path in self.adapters:
            mod, cls = path.split(":")
            try:
                h = typing.get_type_hints(getattr(importlib.import_module(mod), cls).__init__)
            except Exception:  # noqa: BLE001 - unresolvable annotations: names only
                continue
            for k, ann in h.items():
                hints.setdefault(k, []).append(ann)
        return hints

    def import_path(self, key: str, value: Any) -> str | None:
        """The import path ``params[key] = value`` names, or None (not an import)."""
        if key not in IMPORT_KEYS or not isinstance(value, str):
            return None
        if key == "features":
            from xeval.adapters.sklearn import FEATURES

            if value in FEATURES:
                return None
        if key == "model" and self.default_module and ":" not in value and "." not in value:
            return f"{self.default_module}:{value}"
        return value

    def check(self, params: Mapping, *, where: str) -> None:
        """Check ``params`` without importing anything they name: unknown keys (the
        error lists the valid ones), types, and import paths against the policy."""
        unknown = sorted(set(params) - self.options)
        if unknown:
            raise ConfigError(
                f"{where}: unknown params {unknown} for detector kind {self.name!r}; "
                f"accepted: {', '.join(sorted(self.options))}"
            )
        for key, value in params.items():
            anns = [RECIPE_KEY_TYPES[key]] if key in RECIPE_KEY_TYPES else self._hints.get(key)
            if anns and not any(conforms(value, a) for a in anns):
                raise ConfigError(
                    f"{where}: param {key!r} must be {describe_type(anns[0])}, got {value!r}"
                )
            path = self.import_path(key, value)
            if path is not None:
                check_import_path(path, what=f"{where}: param {key!r}")

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
        default_module="anomalib.models",
    ),
):
    DETECTORS.register(_kind)
