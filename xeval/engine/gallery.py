"""Gallery images of a unit, with masks and explanation maps at native resolution
(re-explained: the stream keeps no maps):

- ``example``: the same few anomalous images for every explainer of a detector (one per
  defect type, seeded), so that explanations can be compared side by side;
- ``best`` / ``worst``: each explainer's best and worst image by a per-image metric
  (default: the first per-image localisation metric of the run)."""

from __future__ import annotations

import numpy as np

from xeval.adapters.base import Detector
from xeval.data.loader import iter_batches
from xeval.data.split import CategorySplit
from xeval.engine.evaluate import MetricStates
from xeval.engine.explain import checked_predict, explain_inputs, to_native
from xeval.explainers.base import Explainer
from xeval.metrics.base import Metric

__all__ = ["gallery_candidates", "gallery_items", "gallery_metric"]


def gallery_metric(metrics: list[Metric], wanted: str | None) -> int | None:
    """Index of the metric ranking the gallery: ``wanted`` (a name or label), else the
    first per-image localisation metric; None when there is none."""
    for i, m in enumerate(metrics):
        if wanted is not None and wanted in (m.name, m.label) and m.per_image:
            return i
    if wanted is not None:
        return None
    for i, m in enumerate(metrics):
        if m.per_image and m.family == "localisation":
            return i
    return None


def _examples(det: Detector, explainers, split: CategorySplit, *, batch_size: int, n: int = 3):
    from xeval.engine.subsets import select

    ids = select(split.test, n=n, population="anomalous", strategy="stratified", seed=0,
                 key=f"{split.category}/gallery")  # fmt: skip
    if not ids:
        return []
    by_id = {s.id: s for s in split.test}
    samples = [by_id[i] for i in ids]
    rec = next(
        iter_batches(
            samples,
            batch_size=len(samples),
            image_size=tuple(det.input_size),
            with_masks=True,
            category=split.category,
        )
    )
    _, dmaps = checked_predict(det, rec.inputs.images)
    items = []
    for e in explainers:
        maps = to_native(explain_inputs(e, det, rec.inputs, dmaps), rec.inputs.native_sizes)
        for k, sid in enumerate(ids):
            items.append(
                {
                    "detector": det.name,
                    "explainer": e.name,
                    "category": split.category,
                    "rank": "example",
                    "metric": "",
                    "higher_is_better": True,
                    "value": float("nan"),
                    "sample_id": sid,
                    "image_path": str(by_id[sid].image_path),
                    "mask": rec.targets.masks[k],
                    "amap": maps[k].astype(np.float32),
                }
            )
    return items


def gallery_candidates(
    det: Detector,
    explainers: list[Explainer],
    metrics: list[Metric],
    states: dict[str, MetricStates],
    split: CategorySplit,
    *,
    wanted: str | None,
    batch_size: int,
) -> list[dict]:
    """One ``best`` and one ``worst`` item per explainer (see the module docstring)."""
    by_id = {s.id: s for s in split.test}
    items = _examples(det, explainers, split, batch_size=batch_size)
    i = gallery_metric(metrics, wanted)
    if i is None:
        return items
    m = metrics[i]
    for e in explainers:
        v = states[e.name].compute(i)
        vals = np.asarray(v.per_image, dtype=float)
        if v.ids is None or not np.isfinite(vals).any():
            continue
        sign = 1.0 if m.higher_is_better else -1.0
        best = int(np.nanargmax(sign * vals))
        worst = int(np.nanargmin(sign * vals))
        picks = [(rank, v.ids[j], float(vals[j])) for rank, j in (("best", best), ("worst", worst))]
        samples = [by_id[sid] for _, sid, _ in picks]
        rec = next(
            iter_batches(
                samples,
                batch_size=len(samples),
                image_size=tuple(det.input_size),
                with_masks=True,
                category=split.category,
            )
        )
        _, dmaps = checked_predict(det, rec.inputs.images)
        maps = to_native(explain_inputs(e, det, rec.inputs, dmaps), rec.inputs.native_sizes)
        for k, (rank, sid, value) in enumerate(picks):
            items.append(
                {
                    "detector": det.name,
                    "explainer": e.name,
                    "category": split.category,
                    "rank": rank,
                    "metric": m.label,
                    "higher_is_better": bool(m.higher_is_better),
                    "value": value,
                    "sample_id": sid,
                    "image_path": str(by_id[sid].image_path),
                    "mask": rec.targets.masks[k],
                    "amap": maps[k].astype(np.float32),
                }
            )
    return items


def gallery_items(gallery: list[dict]) -> list:
    """Report items: per (detector, explainer), the best and the worst image over all
    categories (the metric's direction respected), with the image read from disk."""
    from xeval.data.io import read_image
    from xeval.metrics.resize import resize_to
    from xeval.reports import GalleryItem

    chosen: dict = {}
    for g in gallery:
        if g["rank"] == "example":
            chosen[(g["detector"], g["explainer"], "example", g["sample_id"])] = g
            continue
        k = (g["detector"], g["explainer"], g["rank"])
        sign = 1.0 if g.get("higher_is_better", True) else -1.0
        better = sign * g["value"] > sign * chosen[k]["value"] if k in chosen else True
        worse = sign * g["value"] < sign * chosen[k]["value"] if k in chosen else True
        if (g["rank"] == "best" and better) or (g["rank"] == "worst" and worse):
            chosen[k] = g
    order = {"example": 0, "best": 1, "worst": 2}
    items = []
    for g in sorted(
        chosen.values(),
        key=lambda g: (g["detector"], order[g["rank"]], g["explainer"], g["sample_id"]),
    ):
        img = read_image(g["image_path"])
        if img.shape[:2] != g["mask"].shape:
            img = np.moveaxis(resize_to(np.moveaxis(img, -1, 0), g["mask"].shape), 0, -1)
        items.append(
            GalleryItem(
                detector=g["detector"],
                explainer=g["explainer"],
                category=g["category"],
                sample_id=g["sample_id"],
                rank=g["rank"],
                metric=g.get("metric", ""),
                value=float(g["value"]),
                image=img,
                mask=g["mask"],
                amap=g["amap"],
            )
        )
    return items
