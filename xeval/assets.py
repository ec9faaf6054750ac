"""Locate the declarative files (protocol specs, dataset cards, detector recipes).

They live in the top-level ``protocols/``, ``datasets/``, ``adapters/`` folders of the
source tree; a wheel ships them inside the package as ``xeval/_assets/<kind>/``.
"""

from __future__ import annotations

from pathlib import Path

from xeval.errors import ConfigError

KINDS = ("protocols", "datasets", "adapters", "reports")
_PKG = Path(__file__).resolve().parent


def asset_dir(kind: str) -> Path:
    """The folder holding declarative files of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for d in (_PKG / "_assets" / kind, _PKG.parent / kind):
        if d.is_dir():
            return d
    raise ConfigError(f"no '{kind}' folder found beside the xeval package ({_PKG})")


def find_asset(kind: str, name: str) -> Path:
    """``<kind>/<name>.yaml`` (or ``name`` itself if it is an existing file path)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    d = asset_dir(kind)
    for cand in (d / f"{name}.yaml", d / f"{name}.yml"):
        if cand.is_file():
            return cand
    known = sorted(x.stem for x in d.glob("*.y*ml"))
    raise ConfigError(f"unknown {kind[:-1]} {name!r}: no {d}/{name}.yaml; known: {known}")


def asset_file(kind: str, relative: str) -> Path:
    """The file ``relative`` (e.g. ``"templates/page.html"``) of the ``kind`` folder."""
    d = asset_dir(kind)
    p = (d / relative).resolve()
    if d.resolve() not in p.parents or not p.is_file():
        raise ConfigError(f"no {kind} asset {relative!r} under {d}")
    return p
