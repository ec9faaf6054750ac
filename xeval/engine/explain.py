"""Turning a detector's outputs and an explainer into the :class:`~xeval.metrics.base.
Explanation` that metrics read (shared by the calibrate, evaluate, probe and gallery
phases). Explainers see ``record.inputs`` only."""

from __future__ import annotations

import hashlib

import numpy as np

from xeval.adapters.base import Detector
from xeval.errors import InputError
from xeval.explainers.base import Explainer
from xeval.metrics.base import Explanation, ProbeContext
from xeval.metrics.resize import resize_to
from xeval.record import Inputs, Record

__all__ = [
    "checked_predict",
    "explain_inputs",
    "explain_record",
    "explanation_fn",
    "to_native",
]


def checked_predict(det: Detector, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``det.predict(images)`` with its shapes and values checked (errors name it)."""
    scores, maps = det.predict(images)
    scores = np.asarray(scores)
    maps = np.asarray(maps)
    b = images.shape[0]
    if scores.shape != (b,):
        raise InputError(
            f"detector {det.name!r}: predict returned scores of shape "
            f"{scores.shape}, expected ({b},)"
        )
    if maps.ndim != 3 or maps.shape[0] != b:
        raise InputError(
            f"detector {det.name!r}: predict returned maps of shape {maps.shape}, "
            f"expected ({b}, h, w)"
        )
    if not np.isfinite(scores).all() or not np.isfinite(maps).all():
        raise InputError(f"detector {det.name!r}: predict returned NaN or inf scores/maps")
    return scores, maps


def explain_inputs(
    expl: Explainer, det: Detector, inputs: Inputs, maps: np.ndarray | None, *, flags=None
) -> np.ndarray:
    """``expl``'s ``(B, h, w)`` maps of ``inputs`` (shape checked). A map holding NaN or
    inf is replaced by zeros (a degenerate map the metrics score as such) and flagged
    in ``flags`` (a list, when given) -- counted, never dropped silently."""
    a = np.asarray(expl.explain(det, inputs, maps=maps))
    if a.ndim != 3 or a.shape[0] != len(inputs):
        raise InputError(
            f"explainer {expl.name!r} returned shape {a.shape}, expected ({len(inputs)}, h, w)"
        )
    bad = ~np.isfinite(a).reshape(len(a), -1).all(axis=1)
    if bad.any():
        a = np.array(a, dtype=np.float32, copy=True)
        a[bad] = 0.0
    if flags is not None:
        flags.extend(bad.tolist())
    return a


def to_native(a: np.ndarray, sizes, *, frame=None, ids=None) -> list[np.ndarray]:
    """Each map bilinearly resized to its image's native (mask) size. ``frame``: the
    ``(H, W)`` the images were resized to for the detector; a map must have its aspect
    ratio (an error naming the sample otherwise), and resizing it to the native size
    undoes that resize. ``frame=None``: the maps' own grid is taken as that frame (no
    aspect check; for maps already checked)."""
    return [
        resize_to(
            a[i],
            sizes[i],
            frame=a.shape[-2:] if frame is None else frame,
            name=f"the map of sample {ids[i]!r}" if ids is not None else f"map {i}",
        )
        for i in range(a.shape[0])
    ]


def image_scores(expl: Explainer, det_scores: np.ndarray, native: list[np.ndarray]):
    """``(scores, note)``: the detector's score for its own map, else the map's maximum."""
    if getattr(expl, "image_score", "max") == "detector":
        return np.asarray(det_scores, dtype=float), "image score = detector score"
    return np.array([m.max() for m in native], dtype=float), "image score = max of map"


def explain_record(
    expl: Explainer,
    det: Detector,
    record: Record,
    det_scores: np.ndarray,
    det_maps: np.ndarray,
    *,
    calibration=None,
    probe: ProbeContext | None = None,
) -> Explanation:
    """The :class:`Explanation` of ``record`` by ``expl`` (maps at the detector's and at
    the native resolution, image scores, calibration, probe context)."""
    flags: list[bool] = []
    a = explain_inputs(expl, det, record.inputs, det_maps, flags=flags)
    images = record.inputs.images
    native = to_native(
        a,
        record.inputs.native_sizes,
        frame=None if images is None else images.shape[-2:],
        ids=record.ids,
    )
    scores, note = image_scores(expl, det_scores, native)
    return Explanation(
        explainer=expl.name,
        maps=a,
        native=native,
        scores=scores,
        control=bool(expl.control),
        calibration=calibration or {},
        probe=probe,
        score_note=note,
        nonfinite=np.asarray(flags, dtype=bool),
    )


def _digest(image: np.ndarray) -> str:
    a = np.ascontiguousarray(image, dtype=np.float32)
    return hashlib.sha1(a.tobytes(), usedforsecurity=False).hexdigest()[:16]


def explanation_fn(expl: Explainer, *, category: str, ids: list[str], images: np.ndarray):
    """``fn(detector, images) -> maps``: ``expl`` on other images or another detector
    (robustness perturbations, the randomisation test). An image of the subset
    (``images``, ``ids``) keeps its id; any other image (a perturbed copy) is named by a
    digest of its pixels -- so per-sample randomness (the random control) follows the
    image itself, whatever batch or worker it is explained in."""
    known = {_digest(im): sid for im, sid in zip(images, ids, strict=True)}

    def fn(detector: Detector, batch: np.ndarray) -> np.ndarray:
        sids = []
        for im in batch:
            d = _digest(im)
            sids.append(known.get(d, f"~{d}"))
        inputs = Inputs(ids=sids, category=category, images=batch)
        maps = detector.predict(batch)[1] if "map" in expl.requires else None
        return np.asarray(expl.explain(detector, inputs, maps=maps), dtype=np.float32)

    return fn
