"""Build a detector from a declarative recipe (the top-level ``adapters/*.yaml`` files).

A recipe is a mapping ``{"kind": ..., "name": ..., "params": {...}}``; ``kind`` selects a
class of :data:`DETECTORS`, ``params`` are its keyword-only hyper-parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.adapters.base import Detector
from xeval.adapters.patch_features import PatchFeatures
from xeval.errors import ConfigError

DETECTORS: dict[str, type[Detector]] = {
    "conv_autoencoder": ConvAutoencoder,
    "patch_features": PatchFeatures,
}
"""Built-in detector kinds -> classes."""

_RECIPE_KEYS = {"kind", "name", "params", "description"}


def _wrap_kinds() -> tuple[str, ...]:
    """Recipe kinds of the wrap adapters (:mod:`xeval.adapters.wrap`), built by it."""
    from xeval.adapters.wrap import RECIPE_KINDS

    return tuple(RECIPE_KINDS)


def known_kinds() -> list[str]:
    """Every detector kind a recipe may name: built-in detectors and wrap adapters."""
    return sorted({*DETECTORS, *_wrap_kinds()})


def known_params(kind: str) -> list[str]:
    """The keyword parameters accepted by detector ``kind`` (``name`` included)."""
    cls = DETECTORS[kind]
    sig = inspect.signature(cls.__init__)
    return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_detector(recipe: Mapping | str | Path) -> Detector:
    """Instantiate a (not yet fitted) detector from a recipe.

    Parameters
    ----------
    recipe:
        ``{"kind": "conv_autoencoder", "name": "ae", "params": {...}}``; ``name`` and
        ``params`` are optional. A path to a YAML file holding such a mapping is also
        accepted. Kinds of :data:`DETECTORS` are built here; the wrap-adapter kinds
        (``torch_module``, ``blackbox``, ``sklearn_features``, ``ood_classifier``,
        ``anomalib``) are handed to :func:`xeval.adapters.wrap.build_from_recipe`.

    Raises
    ------
    ConfigError
        Unknown ``kind`` (the message lists the known kinds), unknown keys, or unknown
        params (the message names them and lists the accepted ones); invalid values
        raise :class:`~xeval.errors.InputError` from the detector itself.
    """
    if isinstance(recipe, str | Path):
        import yaml

        path = Path(recipe)
        try:
            recipe = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read detector recipe {str(path)!r}: {exc}") from exc
    if not isinstance(recipe, Mapping):
        raise ConfigError(
            f"detector recipe must be a mapping with a 'kind' key, got {type(recipe).__name__}"
        )
    unknown_keys = sorted(set(recipe) - _RECIPE_KEYS)
    if unknown_keys:
        raise ConfigError(
            f"detector recipe has unknown keys {unknown_keys}; allowed: {sorted(_RECIPE_KEYS)}"
        )
    kind = recipe.get("kind")
    if kind not in DETECTORS:
        if isinstance(kind, str) and kind in _wrap_kinds():
            from xeval.adapters.wrap import build_from_recipe

            return build_from_recipe({k: v for k, v in recipe.items() if k != "description"})
        raise ConfigError(
            f"unknown detector kind {kind!r}; known kinds: {', '.join(known_kinds())}"
        )
    raw_params = recipe.get("params") or {}
    if not isinstance(raw_params, Mapping):
        raise ConfigError(f"detector recipe 'params' must be a mapping, got {raw_params!r}")
    params = dict(raw_params)
    if "name" in recipe:
        if "name" in params and params["name"] != recipe["name"]:
            raise ConfigError(
                f"detector name given twice: {recipe['name']!r} and params.name {params['name']!r}"
            )
        params["name"] = recipe["name"]
    accepted = known_params(kind)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown params {unknown} for detector kind {kind!r}; accepted: {', '.join(accepted)}"
        )
    for key, value in params.items():
        if isinstance(value, list) and key == "input_size":
            params[key] = tuple(value)
    return DETECTORS[kind](**params)
