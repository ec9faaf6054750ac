"""Build an explainer from a name or a spec mapping (as written in protocol YAML)."""

from __future__ import annotations

from collections.abc import Mapping

from xeval.errors import ConfigError
from xeval.explainers.base import Explainer
from xeval.explainers.controls import CentrePrior, RandomMap, SobelEdges
from xeval.explainers.native import NativeMap

EXPLAINERS: dict[str, type[Explainer]] = {
    "native": NativeMap,
    "random": RandomMap,
    "sobel": SobelEdges,
    "centre": CentrePrior,
}
"""Built-in explainer names -> classes."""


def _attribution_explainers() -> dict[str, type[Explainer]]:
    """Gradient/perturbation explainers of :mod:`xeval.explainers.api` (imported lazily:
    it pulls captum in)."""
    from xeval.explainers.api import EXPLAINERS as ATTRIBUTION

    return dict(ATTRIBUTION)


def build_explainer(spec: str | Mapping) -> Explainer:
    """Instantiate an explainer.

    Parameters
    ----------
    spec:
        A name (``"native"``, ``"random"``, ``"sobel"``, ``"centre"``, or an attribution
        method of :mod:`xeval.explainers.api` such as ``"integrated_gradients"``, built
        by :func:`~xeval.explainers.api.make_explainer`) or a mapping
        ``{"name": "random", "params": {"seed": 1}}``; other keys of the mapping are
        taken as params too (``{"name": "random", "seed": 1}``).

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones) or parameters the explainer
        does not accept.
    """
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        if "name" not in spec:
            raise ConfigError(f"explainer spec needs a 'name' key, got {dict(spec)!r}")
        name = spec["name"]
        raw = spec.get("params") or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"explainer 'params' must be a mapping, got {raw!r}")
        params = {**raw, **{k: v for k, v in spec.items() if k not in ("name", "params")}}
    else:
        raise ConfigError(
            f"explainer spec must be a name or a mapping, got {type(spec).__name__}: {spec!r}"
        )
    if name not in EXPLAINERS:
        attribution = _attribution_explainers()
        if name in attribution:
            from xeval.explainers.api import make_explainer

            return make_explainer(name, **params)
        known = sorted({*EXPLAINERS, *attribution})
        raise ConfigError(f"unknown explainer {name!r}; known explainers: {', '.join(known)}")
    cls = EXPLAINERS[name]
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"invalid params {sorted(params)} for explainer {name!r}: {exc}") from exc
