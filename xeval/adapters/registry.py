"""Build a detector from a declarative recipe (the top-level ``adapters/*.yaml`` files).

A recipe is a mapping ``{"kind": ..., "name": ..., "params": {...}}``; ``kind`` names an
entry of :data:`xeval.registry.DETECTORS` -- a detector class (built-in detectors, whose
``params`` are its keyword-only options) or a :class:`~xeval.adapters.recipes.RecipeKind`
(the wrap adapters). :func:`check_recipe` validates a recipe without building anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from xeval.adapters.base import Detector
from xeval.errors import ConfigError
from xeval.registry import DETECTORS, check_options, option_spec

__all__ = ["DETECTORS", "build_detector", "check_recipe", "known_kinds", "known_params"]

_RECIPE_KEYS = {"kind", "name", "params", "description"}


def known_kinds() -> list[str]:
    """Every detector kind a recipe may name."""
    return DETECTORS.names()


def known_params(kind: str) -> list[str]:
    """The keyword parameters accepted by detector ``kind`` (``name`` included)."""
    entry = DETECTORS.get(kind)
    if isinstance(entry, type):
        return [n for n, p in option_spec(entry).items() if p.kind is p.KEYWORD_ONLY]
    return sorted(entry.options)


def _read(recipe: Mapping | str | Path) -> Mapping:
    if isinstance(recipe, str | Path):
        import yaml

        path = Path(recipe)
        try:
            recipe = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read detector recipe {str(path)!r}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"detector recipe {str(path)!r} is not valid YAML ({exc})") from exc
    if not isinstance(recipe, Mapping):
        raise ConfigError(
            f"detector recipe must be a mapping with a 'kind' key, got {type(recipe).__name__}"
        )
    return recipe


def check_recipe(recipe: Mapping | str | Path, *, where: str = "detector recipe") -> dict:
    """Validate a recipe's keys, kind and params against the registry (nothing is built
    or imported from the recipe); returns ``{"kind", "name", "params"}``."""
    recipe = _read(recipe)
    unknown_keys = sorted(set(recipe) - _RECIPE_KEYS)
    if unknown_keys:
        raise ConfigError(f"{where}: unknown keys {unknown_keys}; allowed: {sorted(_RECIPE_KEYS)}")
    kind = recipe.get("kind")
    entry = DETECTORS.get(kind, where=where)
    raw = recipe.get("params") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'params' must be a mapping, got {raw!r}")
    params = dict(raw)
    name = recipe.get("name", kind)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    if "name" in params and params["name"] != name:
        raise ConfigError(
            f"{where}: detector name given twice: {name!r} and params.name {params['name']!r}"
        )
    params.pop("name", None)
    if isinstance(entry, type):
        check_options(entry, {**params, "name": name}, where=f"{where} (kind {kind!r})")
        _check_values(entry, params, name=name, where=f"{where} (kind {kind!r})")
    else:
        entry.check(params, where=f"{where} (kind {kind!r})")
    return {"kind": kind, "name": name, "params": params}


def _check_values(cls: type, params: dict, *, name: str, where: str) -> None:
    """Check the values of a built-in detector's options by constructing it (built-in
    constructors only store and validate their options: no fitting, no data, no user
    code), on the CPU so that a configuration for a GPU machine checks anywhere."""
    from xeval.errors import InputError

    trial = dict(params)
    if "device" in trial:
        trial["device"] = "cpu"
    for key, value in trial.items():
        if isinstance(value, list) and key == "input_size":
            trial[key] = tuple(value)
    try:
        cls(name=name, **trial)
    except (InputError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def build_detector(recipe: Mapping | str | Path) -> Detector:
    """Instantiate a (not yet fitted) detector from a recipe.

    Raises
    ------
    ConfigError
        Unknown ``kind`` (the message lists the known kinds), unknown keys, or unknown
        params (the message names them and lists the accepted ones); invalid values
        raise :class:`~xeval.errors.InputError` from the detector itself.
    """
    spec = check_recipe(recipe)
    entry = DETECTORS.get(spec["kind"])
    if not isinstance(entry, type):
        return entry.build(spec)
    params = dict(spec["params"])
    for key, value in params.items():
        if isinstance(value, list) and key == "input_size":
            params[key] = tuple(value)
    return entry(name=spec["name"], **params)
