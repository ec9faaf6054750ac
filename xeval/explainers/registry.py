"""Build an explainer from a name or a spec mapping (as written in protocol YAML).

Every explainer is registered in :data:`xeval.registry.EXPLAINERS`; this module turns a
config entry into an instance, with its options checked against the class signature.
"""

from __future__ import annotations

from collections.abc import Mapping

from xeval.errors import ConfigError, InputError
from xeval.explainers.base import Explainer
from xeval.registry import EXPLAINERS

__all__ = ["EXPLAINERS", "build_explainer", "explainer_spec"]


def explainer_spec(spec: str | Mapping, *, where: str = "explainer") -> tuple[str, dict]:
    """``(name, params)`` of a config entry: a name, ``{"name": n, "params": {...}}`` or
    ``{"name": n, **params}``."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ConfigError(f"{where}: an explainer spec needs a 'name' key, got {dict(spec)!r}")
        raw = spec.get("params") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: explainer 'params' must be a mapping, got {raw!r}")
        params = {**raw, **{k: v for k, v in spec.items() if k not in ("name", "params")}}
        return spec["name"], params
    raise ConfigError(
        f"{where}: an explainer spec must be a name or a mapping, got "
        f"{type(spec).__name__}: {spec!r}"
    )


def build_explainer(spec: str | Mapping, *, where: str = "explainer") -> Explainer:
    """Instantiate an explainer from a config entry (see :func:`explainer_spec`).

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones) or parameters the explainer
        does not accept (the message lists the accepted ones).
    """
    name, params = explainer_spec(spec, where=where)
    cls = EXPLAINERS.get(name, where=where)
    EXPLAINERS.check_options(name, params, where=f"{where} {name!r}")
    try:
        return cls(**params)
    except (TypeError, InputError) as exc:
        raise ConfigError(f"{where} {name!r}: invalid params {sorted(params)}: {exc}") from exc
