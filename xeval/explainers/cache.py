"""On-disk cache of explanations, one ``.npy`` file per (detector, explainer, sample).

Key: sha256 of the canonical JSON (sorted keys, no whitespace) of
``{"v": CACHE_VERSION, "detector": detector_key, "explainer": explainer.config(), "sample": id,
"image": sha256 of the sample's pixels}``; the file is ``<cache_dir>/<key[:2]>/<key>.npy``.
The image hash makes a stale entry impossible when the same id is re-rendered at
another resolution or with other preprocessing (``hash_images=False`` drops it).

Files are written atomically (:func:`xeval._io.atomic_write_bytes`) and read with
``np.load(allow_pickle=False)``: no pickle ever. A corrupt or wrongly-shaped entry is
recomputed and overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xeval._io import atomic_write_bytes
from xeval.adapters.base import Detector
from xeval.checks import check_bool
from xeval.errors import InputError
from xeval.explainers.base import Explainer
from xeval.record import Inputs

__all__ = ["CachedExplainer", "cache_key", "detector_fingerprint"]

#: 2: GradientSHAP / SmoothGrad / KernelSHAP draw per sample id and the Sobel control
#: no longer smooths across the batch (entries of version 1 are not reused)
CACHE_VERSION = 2


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def detector_fingerprint(detector: Detector) -> str:
    """sha256 of the detector's canonical ``config()`` JSON. Weights are not included:
    the engine should pass a key that covers them (e.g. with the fit data's hash)."""
    return hashlib.sha256(_canonical(detector.config()).encode()).hexdigest()


def cache_key(detector_key: str, explainer_config: dict, sample_id: str, image_hash: str = ""):
    """The sha256 hex key of one cached explanation."""
    payload = {
        "v": CACHE_VERSION,
        "detector": detector_key,
        "explainer": explainer_config,
        "sample": sample_id,
        "image": image_hash,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def _image_hash(img: np.ndarray) -> str:
    a = np.ascontiguousarray(img, dtype=np.float32)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


class CachedExplainer(Explainer):
    """Wrap ``explainer`` with an on-disk cache under ``cache_dir``.

    Parameters
    ----------
    explainer:
        Any :class:`~xeval.explainers.base.Explainer`; its ``config()`` is part of the
        key, so two parameterisations never share entries.
    cache_dir:
        Folder of the cache (created on first write).
    detector_key:
        Fingerprint of the detector **including its weights** (the engine knows it);
        None uses :func:`detector_fingerprint` of the detector's config at each call.
    hash_images:
        Include the sha256 of each sample's pixels in the key (default True).

    ``hits`` and ``misses`` count samples served from / written to the cache.
    """

    def __init__(
        self,
        explainer: Explainer,
        cache_dir: str | os.PathLike,
        detector_key: str | None = None,
        *,
        hash_images: bool = True,
    ) -> None:
        if not isinstance(explainer, Explainer):
            raise InputError(f"explainer must be an Explainer, got {type(explainer).__name__}")
        self.explainer = explainer
        self.cache_dir = Path(cache_dir)
        self.detector_key = detector_key
        self.hash_images = check_bool(hash_images, "hash_images")
        self.name = explainer.name
        self.requires = explainer.requires
        self.control = explainer.control
        self.image_score = getattr(explainer, "image_score", "max")
        self.input_dependent = getattr(explainer, "input_dependent", True)
        self.hits = 0
        self.misses = 0

    def config(self) -> dict:
        return self.explainer.config()

    def fit_reference(self, normal_images: np.ndarray) -> CachedExplainer:
        fit = getattr(self.explainer, "fit_reference", None)
        if callable(fit):
            fit(normal_images)
        return self

    def __getattr__(self, item: str) -> Any:  # delegate e.g. check(), attribute()
        if item == "explainer":
            raise AttributeError(item)
        return getattr(self.explainer, item)

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npy"

    def keys(self, detector: Detector, batch: Inputs) -> list[str]:
        dkey = self.detector_key or detector_fingerprint(detector)
        cfg = self.explainer.config()
        return [
            cache_key(dkey, cfg, sid, _image_hash(batch.images[i]) if self.hash_images else "")
            for i, sid in enumerate(batch.ids)
        ]

    def _load(self, path: Path, shape: tuple[int, ...] | None) -> np.ndarray | None:
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if a.dtype != np.float32 or (shape is not None and a.shape != shape):
            return None
        return a

    def explain(
        self, detector: Detector, batch: Inputs, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Cached ``explainer.explain``: computes only the samples not on disk."""
        if not isinstance(batch, Inputs):
            raise InputError(
                f"CachedExplainer needs Inputs (sample ids are part of the key), got "
                f"{type(batch).__name__}"
            )
        keys = self.keys(detector, batch)
        found: dict[int, np.ndarray] = {}
        shape: tuple[int, ...] | None = None
        for i, k in enumerate(keys):
            p = self.path_for(k)
            if p.exists():
                a = self._load(p, shape)
                if a is not None:
                    found[i] = a
                    shape = a.shape
        missing = [i for i in range(len(batch)) if i not in found]
        self.hits += len(found)
        if missing:
            sub = batch if len(missing) == len(batch) else batch.subset(missing)
            sub_maps = None if maps is None else maps[missing]
            computed = np.asarray(self.explainer.explain(detector, sub, maps=sub_maps))
            computed = computed.astype(np.float32, copy=False)
            if shape is not None and computed.shape[1:] != shape:
                # cached entries disagree with fresh ones: recompute everything
                found = {}
                computed = np.asarray(self.explainer.explain(detector, batch, maps=maps))
                computed = computed.astype(np.float32, copy=False)
                missing = list(range(len(batch)))
            for j, i in enumerate(missing):
                buf = io.BytesIO()
                np.save(buf, np.ascontiguousarray(computed[j]), allow_pickle=False)
                atomic_write_bytes(self.path_for(keys[i]), buf.getvalue())
                found[i] = computed[j]
            self.misses += len(missing)
        return np.stack([found[i] for i in range(len(batch))]).astype(np.float32, copy=False)
