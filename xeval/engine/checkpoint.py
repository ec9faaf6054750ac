"""Phase 7 -- checkpoint: each finished (category, detector) unit is written atomically
under ``<out>/.partial/<config hash>/`` so that an interrupted run resumes where it
stopped (JSON for tables, an ``.npz`` without pickle for the gallery arrays)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from xeval._io import atomic_write_bytes, atomic_write_text

__all__ = ["load_unit", "save_unit", "unit_path"]

_TABLES = ("rows", "curves", "per_image", "timings", "subsets", "configs")


def unit_path(part_dir: Path, category: str, detector: str) -> Path:
    key = hashlib.sha256(f"{category}\x00{detector}".encode()).hexdigest()[:16]
    return part_dir / key


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_unit(path: Path, unit: dict) -> None:
    """Write ``unit`` (gallery arrays to ``.npz``, the rest to ``.json``), atomically;
    the JSON last, so a unit is complete only when both exist."""
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
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, default=_json_default))


def load_unit(path: Path) -> dict | None:
    """A saved unit, or None when it is not (completely) there."""
    j, z = path.with_suffix(".json"), path.with_suffix(".npz")
    if not (j.exists() and z.exists()):
        return None
    meta = json.loads(j.read_text())
    with np.load(z, allow_pickle=False) as arrs:
        for i, g in enumerate(meta["gallery"]):
            g["mask"] = arrs[f"mask{i}"]
            g["amap"] = arrs[f"amap{i}"]
    return meta
