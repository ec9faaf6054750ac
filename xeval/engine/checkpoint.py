"""Phase 7 -- checkpoint: each finished (category, detector) unit is written atomically
under ``<out>/.partial/<config hash>/`` so that an interrupted run resumes where it
stopped (JSON for tables, an ``.npz`` without pickle for the gallery arrays).

A saved unit carries its **key** (:func:`unit_key`): the xeval version and a digest of
xeval's own code, the content fingerprint of the category's files (every image, mask and
region file, byte for byte) and a digest of the unit's resolved configuration. A unit is
reused only when its key equals the current one; otherwise, or when its files are
damaged (truncated JSON, bad ``.npz``, missing entries), :func:`load_unit` says why and
the engine recomputes it."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from xeval._io import atomic_write_bytes, atomic_write_text

__all__ = ["code_fingerprint", "load_unit", "save_unit", "unit_key", "unit_path"]

_TABLES = ("rows", "curves", "per_image", "timings", "subsets", "configs", "pooled")


def unit_path(part_dir: Path, category: str, detector: str) -> Path:
    key = hashlib.sha256(f"{category}\x00{detector}".encode()).hexdigest()[:16]
    return part_dir / key


@functools.cache
def code_fingerprint() -> str:
    """sha256 (16 hex digits) of xeval's Python sources: a saved unit is not reused by
    different code even when the version number did not change."""
    import xeval

    h = hashlib.sha256()
    root = Path(xeval.__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def unit_key(*, dataset_content: str, unit_config: dict) -> dict:
    """The key a saved unit must match to be reused (see the module docstring)."""
    import xeval

    blob = json.dumps(unit_config, sort_keys=True, default=str).encode()
    return {
        "xeval": xeval.__version__,
        "code": code_fingerprint(),
        "dataset_content": dataset_content,
        "config": hashlib.sha256(blob).hexdigest()[:16],
    }


_KEY_NAMES = {
    "xeval": "the xeval version",
    "code": "xeval's code",
    "dataset_content": "the dataset's files",
    "config": "the unit's configuration",
}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_unit(path: Path, unit: dict, *, key: dict | None = None) -> None:
    """Write ``unit`` (gallery arrays to ``.npz``, the rest and its ``key`` to
    ``.json``), atomically; the JSON last, so a unit is complete only when both exist."""
    arrays, gal = {}, []
    for i, g in enumerate(unit["gallery"]):
        arrays[f"mask{i}"] = g["mask"]
        arrays[f"amap{i}"] = g["amap"]
        gal.append({k: v for k, v in g.items() if k not in ("mask", "amap")})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path.with_suffix(".npz"), buf.getvalue())
    meta = {k: unit.get(k, {}) for k in _TABLES}
    meta["gallery"] = gal
    meta["key"] = key or {}
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, default=_json_default))


def load_unit(path: Path, *, key: dict | None = None) -> tuple[dict | None, str]:
    """``(unit, "")`` for a saved unit whose key equals ``key``, else ``(None, why)``:
    ``"not saved"``, ``"damaged: ..."`` (naming the file) or ``"stale: ..."`` (what
    changed). ``key=None`` skips the key comparison."""
    j, z = path.with_suffix(".json"), path.with_suffix(".npz")
    if not (j.exists() and z.exists()):
        return None, "not saved"
    try:
        meta = json.loads(j.read_text())
        if not isinstance(meta, dict) or not all(k in meta for k in (*_TABLES, "gallery")):
            raise ValueError("entries missing")
        for k in ("rows", "curves", "per_image", "gallery"):
            if not isinstance(meta[k], list):
                raise ValueError(f"{k!r} is not a list")
    except (OSError, ValueError) as exc:
        return None, f"damaged: {j} cannot be read ({exc})"
    if key is not None and meta.get("key") != key:
        saved = meta.get("key") or {}
        changed = [_KEY_NAMES[k] for k in key if saved.get(k) != key[k]] or ["its key"]
        return None, f"stale: {', '.join(changed)} changed since it was saved"
    try:
        with np.load(z, allow_pickle=False) as arrs:
            for i, g in enumerate(meta["gallery"]):
                g["mask"] = arrs[f"mask{i}"]
                g["amap"] = arrs[f"amap{i}"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as exc:
        return None, f"damaged: {z} cannot be read ({type(exc).__name__}: {exc})"
    return meta, ""
