"""sPRO and AUC-sPRO: saturated per-region overlap (MVTec LOCO AD), exact over all
distinct thresholds.

Definitions (Bergmann et al. 2022, "Beyond Dents and Scratches: Logical Constraints in
Unsupervised Anomaly Detection and Localization", IJCV):

- A pixel is **positive** at threshold ``t`` when ``map > t`` (strict).
- **Regions** are the ground-truth defects as given (MVTec LOCO: one ground-truth file
  per defect), *not* connected components; each has a saturation area ``sat_R`` in
  pixels (``floor(threshold * area)`` for a relative threshold, ``min(threshold,
  area)`` for an absolute one; computed by the loader, capped at the area here).
- ``sPRO(t)`` = mean over all regions of all images of the set of
  ``min(1, |R ∩ {map > t}| / sat_R)``; each region counts once, so an image with two
  defects counts twice, and a pixel in two overlapping regions counts for both.
- ``FPR(t)`` = pixels outside every region of their image with ``map > t`` / all pixels
  outside every region, pooled over the images of the set (the normal images *and* the
  defect-free pixels of the anomalous ones; not a mean of per-image rates).
- The curve ``(FPR(t), sPRO(t))`` over every distinct score, from (0, 0) to (1, 1);
  **AUC-sPRO@L** is its trapezoidal area for FPR in ``[0, L]`` (the value at ``L``
  linearly interpolated) divided by ``L``. The paper's headline limit is ``L = 0.05``.
- Official aggregation on LOCO: one AUC for the logical anomalies plus all normal test
  images, one for the structural anomalies plus all normal test images, and their
  mean (``average="types"``); ``average="pooled"`` gives one curve over everything.

Computation
-----------
Sort each region's scores in descending order; its ``k``-th pixel carries the weight
``min(1, k / sat) - min(1, (k - 1) / sat)`` (pixels tied inside a region enter the curve
together, so their order is irrelevant). Then ``sPRO(t)`` is the sum of the weights of
the region pixels scoring above ``t`` divided by the number of regions: a weighted rank
summary (:class:`xeval.metrics.ranking.RankSummary`) like the PRO curve, whose polyline
is the same for ``>`` and ``>=`` thresholds once every distinct score is a threshold.
The official script uses adaptive thresholds refined until adjacent curve points are
within 0.01 (and subsamples scores beyond 10M pixels); this module is its exact limit.

Deviations from the official evaluation script
-----------------------------------------------
- Exact (every distinct score is a threshold) instead of adaptive thresholds; equal to
  the official values up to the official curve resolution.
- A saturation area is at least one pixel (the loader's rule; the script divides by 0
  for a tiny region with a relative threshold) and at most the region's area.
- When a record carries no per-defect ground truth (``targets.regions`` is None, or an
  anomalous image has no region), the image's whole mask is one region whose saturation
  is its area: sPRO is then a PRO whose regions are whole masks, not components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from xeval.errors import InputError
from xeval.metrics import ranking
from xeval.metrics._validation import (
    above,
    check_map,
    check_mask,
    extend_ids,
    merged_ids,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS

__all__ = ["AUCsPRO", "SPROState", "auc_spro", "spro_at", "spro_curve"]

#: Points of the downsampled sPRO curves kept for figures.
CURVE_POINTS = 201


# ------------------------------------------------------------------------ per image
@dataclass
class _Image:
    """What the curve needs of one image: its negative scores, each region's scores in
    descending order with its saturation (pixels), and its group (``None`` = normal
    image, else its defect type)."""

    group: str | None
    neg: np.ndarray
    regions: list[tuple[np.ndarray, float]]
    fallback: bool = False


def _region_parts(region) -> tuple[np.ndarray, float | None]:
    """``(mask, saturation)`` of a region given as a pair or as an object with ``mask``
    and ``saturation`` attributes (:class:`xeval.record.DefectRegion`)."""
    if hasattr(region, "mask"):
        return np.asarray(region.mask), getattr(region, "saturation", None)
    try:
        mask, sat = region
    except (TypeError, ValueError):
        raise InputError(
            f"a region must be a (mask, saturation_pixels) pair or a DefectRegion, "
            f"got {type(region).__name__}"
        ) from None
    return np.asarray(mask), sat


def _image(amap, regions, *, group: str | None, where: str, fallback_mask=None) -> _Image:
    """Validate one image and extract its scores.

    ``regions``: a sequence of regions (see :func:`_region_parts`); when empty and
    ``fallback_mask`` has positive pixels, the whole mask is one region saturating at
    its area.
    """
    a = np.asarray(amap)
    if a.ndim != 2:
        raise InputError(f"{where}: the map must be a 2-D (H, W) array, got shape {a.shape}")
    a = check_map(a, f"{where} map")
    parts = [_region_parts(r) for r in regions]
    fallback = False
    if not parts and fallback_mask is not None:
        fm = np.asarray(fallback_mask)
        if fm.shape != a.shape:
            raise InputError(
                f"{where}: map has shape {a.shape} but mask has shape {fm.shape}; upsample "
                "maps to the mask's native size first (xeval.metrics.resize_to(map, mask.shape))"
            )
        fm = check_mask(fm, f"{where} mask")
        if fm.any():
            parts = [(fm, None)]
            fallback = True
    union = np.zeros(a.shape, dtype=bool)
    out: list[tuple[np.ndarray, float]] = []
    for k, (m, sat) in enumerate(parts):
        if m.shape != a.shape:
            raise InputError(
                f"{where}: map has shape {a.shape} but region {k} mask has shape {m.shape}; "
                "upsample maps to the mask's native size first "
                "(xeval.metrics.resize_to(map, mask.shape))"
            )
        m = check_mask(m, f"{where} region {k} mask")
        area = int(np.count_nonzero(m))
        if area == 0:
            raise InputError(f"{where}: region {k} is empty (expected at least one pixel)")
        if sat is None:
            s = float(area)
        else:
            if isinstance(sat, bool) or not np.isfinite(sat) or float(sat) <= 0:
                raise InputError(
                    f"{where}: region {k} has saturation {sat!r} (expected a number of "
                    "pixels > 0, or None for the region's area)"
                )
            s = min(float(sat), float(area))
        scores = np.sort(a[m])[::-1].copy()
        out.append((scores, s))
        union |= m
    return _Image(group=group, neg=a[~union].copy(), regions=out, fallback=fallback)


# ------------------------------------------------------------------------ summary
def _weights(n: int, sat: float) -> np.ndarray:
    """Weights of a region's pixels in descending score order (they sum to 1)."""
    c = np.minimum(np.arange(1, n + 1, dtype=np.float64) / sat, 1.0)
    return np.diff(c, prepend=0.0)


def _summary(images: Sequence[_Image]) -> ranking.RankSummary:
    """The weighted rank summary of a set of images (region pixels = positives with
    their sPRO weights; negatives = pixels outside every region)."""
    negs = [im.neg for im in images]
    pos = [sc for im in images for sc, _ in im.regions]
    dtype = np.result_type(*negs, *pos) if (negs or pos) else np.float64
    neg = np.sort(np.concatenate(negs).astype(dtype, copy=False)) if negs else np.zeros(0)
    n_regions = sum(len(im.regions) for im in images)
    if pos:
        pv = np.concatenate(pos).astype(dtype, copy=False)
        pw = np.concatenate([_weights(sc.size, sat) for im in images for sc, sat in im.regions])
        order = np.argsort(pv, kind="stable")  # ties are summed: their order is irrelevant
        pv, pw = pv[order], pw[order]
        starts = np.flatnonzero(np.concatenate(([True], pv[1:] != pv[:-1])))
        u = pv[starts]
        m = np.diff(np.append(starts, pv.size)).astype(np.int64)
        w = np.add.reduceat(pw, starts)
        neg_ge = neg.size - np.searchsorted(neg, u, side="left").astype(np.int64)
        neg_gt = neg.size - np.searchsorted(neg, u, side="right").astype(np.int64)
    else:
        u = np.zeros(0, dtype)
        m = neg_ge = neg_gt = np.zeros(0, np.int64)
        w = np.zeros(0)
        pv = u
    return ranking.RankSummary(
        thresholds=u[::-1],
        m=m[::-1],
        w=np.asarray(w, dtype=np.float64)[::-1],
        neg_ge=neg_ge[::-1],
        neg_gt=neg_gt[::-1],
        n_pos=int(pv.size),
        n_neg=int(neg.size),
        n_regions=int(n_regions),
    )


def _why_undefined(s: ranking.RankSummary) -> str | None:
    if s.n_regions == 0:
        return "no ground-truth region"
    if s.n_neg == 0:
        return "no defect-free pixel"
    return None


def _curve(s: ranking.RankSummary) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``(fpr, spro)`` polyline from (0, 0) to (1, 1)."""
    return ranking.pro_points(s)


def _groups(images: Sequence[_Image]) -> list[str]:
    """Defect types with at least one region (normal images excluded)."""
    return sorted({im.group for im in images if im.group is not None and im.regions})


def _type_sets(images: Sequence[_Image]) -> dict[str, list[_Image]]:
    """Per defect type, its images plus every normal image."""
    return {g: [im for im in images if im.group is None or im.group == g] for g in _groups(images)}


def _check_limit(fpr_limit) -> float:
    if isinstance(fpr_limit, bool) or not 0 < float(fpr_limit) <= 1:
        raise InputError(f"fpr_limit must lie in (0, 1], got {fpr_limit!r}")
    return float(fpr_limit)


# ------------------------------------------------------------------------ functional
def _images(regions, maps, types=None) -> list[_Image]:
    if isinstance(maps, np.ndarray):
        if maps.ndim == 2:
            maps = maps[None]
        if maps.ndim != 3:
            raise InputError(
                f"maps must be an (N, H, W) array or a sequence of (H, W) arrays, got "
                f"shape {maps.shape}"
            )
    maps = list(maps)
    regions = list(regions)
    if len(regions) != len(maps):
        raise InputError(
            f"regions and maps must hold the same number of images, got {len(regions)} "
            f"and {len(maps)}"
        )
    if not maps:
        raise InputError("regions and maps are empty: nothing to evaluate")
    if types is not None:
        types = list(types)
        if len(types) != len(maps):
            raise InputError(f"types must hold one entry per image ({len(maps)}), got {len(types)}")
    out = []
    for i, (regs, a) in enumerate(zip(regions, maps, strict=True)):
        if isinstance(regs, np.ndarray) or hasattr(regs, "mask"):
            raise InputError(
                f"regions[{i}] must be a list of (mask, saturation_pixels) pairs, got "
                f"{type(regs).__name__} (wrap a single region in a list)"
            )
        group = "anomalous" if types is None else types[i]
        if types is None and not regs:
            group = None
        out.append(_image(a, list(regs), group=group, where=f"image {i}"))
    return out


def spro_curve(regions, maps) -> tuple[np.ndarray, np.ndarray]:
    """The exact sPRO curve ``(fpr, spro)`` of a set of images, from (0, 0) to (1, 1).

    Parameters
    ----------
    regions:
        Per image, a list of ``(mask, saturation_pixels)`` pairs (or
        :class:`~xeval.record.DefectRegion` s): one per ground-truth defect; ``mask`` a
        boolean ``(H, W)`` array at the map's size, ``saturation_pixels`` the number of
        pixels at which the defect counts as fully found (None: its area; capped at the
        area). An empty list for a normal image.
    maps:
        Per image, a 2-D anomaly map (an ``(N, H, W)`` array or a sequence; sizes may
        differ between images).

    Returns
    -------
    tuple of numpy.ndarray
        FPR and sPRO at every distinct threshold, as a polyline (``fpr`` non-decreasing).
        Empty arrays (and a warning) when undefined.
    """
    s = _summary(_images(regions, maps))
    why = _why_undefined(s)
    if why:
        undefined("sPRO curve", why)
        return np.zeros(0), np.zeros(0)
    return _curve(s)


def auc_spro(regions, maps, *, fpr_limit: float = 0.05, types=None) -> float:
    """Normalised area under the sPRO curve up to ``fpr_limit`` (see the module
    docstring; higher is better).

    Parameters
    ----------
    regions, maps:
        As in :func:`spro_curve`.
    fpr_limit:
        Integration limit ``L`` in (0, 1] (0.05: the paper's headline value).
    types:
        Optional defect type of each image (None for a normal image). When given, one
        curve per type (its images plus every normal image) and the mean of their AUCs
        (the official LOCO aggregation); else one curve over all images.

    Returns
    -------
    float
        AUC-sPRO@L in [0, 1]; NaN with a warning when there is no region or no
        defect-free pixel.
    """
    limit = _check_limit(fpr_limit)
    images = _images(regions, maps, types)
    sets = _type_sets(images) if types is not None else {}
    if not sets:
        sets = {"all": images}
    values = []
    for g, imgs in sets.items():
        s = _summary(imgs)
        why = _why_undefined(s)
        if why:
            what = f"AUC-sPRO@{limit:g}" + ("" if g == "all" else f" ({g})")
            return undefined(what, why)
        values.append(ranking.area_to(*_curve(s), limit))
    return math.fsum(values) / len(values)


def spro_at(regions, maps, *, threshold: float) -> float:
    """sPRO at one threshold: the mean over all regions of ``min(1, |R ∩ {map >
    threshold}| / sat_R)`` (``regions``/``maps`` as in :func:`spro_curve`). NaN with a
    warning when there is no region."""
    t = float(threshold)
    if not math.isfinite(t):
        raise InputError(f"threshold must be a finite number, got {threshold!r}")
    images = _images(regions, maps)
    vals = [
        min(1.0, int(np.count_nonzero(above(sc, t))) / sat)
        for im in images
        for sc, sat in im.regions
    ]
    if not vals:
        return undefined("sPRO", "no ground-truth region")
    return math.fsum(vals) / len(vals)


# -------------------------------------------------------------------------- metric
@dataclass
class SPROState:
    """Mergeable (list concatenation) and picklable state of :class:`AUCsPRO`: per
    image its id and :class:`_Image` data (negative scores, sorted region scores with
    their saturation, defect type)."""

    ids: list = field(default_factory=list)
    images: list = field(default_factory=list)

    def merge(self, other: SPROState) -> SPROState:
        ids = merged_ids(self.ids, other.ids, "merging sPRO states")
        return SPROState(ids, self.images + other.images)


def _downsample(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    from xeval.metrics.pixel import _downsample as down

    return down(x, y, n)


@METRICS.register
class AUCsPRO(Metric):
    """AUC-sPRO@L (MVTec LOCO AD): regions are the ground-truth defects (one file per
    defect, not connected components), each with a saturation area ``sat_R`` in pixels;
    for each distinct score t (positive if ``map > t``) sPRO(t) = mean over all regions
    of ``min(1, |R ∩ {map > t}| / sat_R)`` and FPR(t) = positive pixels outside every
    region / all pixels outside every region, pooled over the set (normal images and the
    defect-free pixels of anomalous ones); the curve from (0, 0) to (1, 1), integrated by
    the trapezoid rule up to FPR = L (value at L interpolated) and divided by L. With
    ``average="types"`` (official) one curve per defect type, each with all normal
    images, and the mean of their AUCs; ``"pooled"``: one curve. Without per-defect
    ground truth an image's whole mask is one region saturating at its area.
    **Higher is better.** Reference: Bergmann et al. (2022), "Beyond Dents and
    Scratches: Logical Constraints in Unsupervised Anomaly Detection and Localization",
    IJCV."""

    name = "auc_spro"
    higher_is_better = True
    family = "localisation"
    needs = frozenset({"masks", "regions"})

    def __init__(
        self, *, fpr_limit: float = 0.05, average: Literal["types", "pooled"] = "types"
    ) -> None:
        self.fpr_limit = _check_limit(fpr_limit)
        if average not in ("types", "pooled"):
            raise InputError(f"average must be 'types' or 'pooled', got {average!r}")
        self.average = average

    @property
    def label(self) -> str:
        kind = "" if self.average == "types" else "_pooled"
        return f"auc_spro{kind}@{self.fpr_limit:g}"

    def init(self) -> SPROState:
        return SPROState()

    def update(self, state: SPROState, record, explanation) -> SPROState:
        t = record.targets
        if t.masks is None:
            raise InputError(
                f"metric {self.name!r} needs ground-truth masks, but the record has none "
                "(load it with with_masks=True)"
            )
        check_aligned(record, explanation, self.label)
        extend_ids(list(state.ids), record.ids, f"metric {self.label!r}")
        maps = explanation.native
        labels = np.asarray(t.labels)
        for i in range(len(record)):
            where = f"image {record.ids[i]!r}"
            mask = np.asarray(t.masks[i])
            a = np.asarray(maps[i])
            if a.shape != mask.shape:
                raise InputError(
                    f"{where}: map has shape {a.shape} but its mask has shape {mask.shape}; "
                    "maps must be at the mask's native size"
                )
            regs = list(t.regions[i]) if t.regions is not None else []
            if int(labels[i]) == 0:
                group = None
            else:
                group = str(t.defects[i]) if t.defects else "anomalous"
            state.images.append(_image(a, regs, group=group, where=where, fallback_mask=mask))
            state.ids.append(record.ids[i])
        return state

    def merge(self, a: SPROState, b: SPROState) -> SPROState:
        return a.merge(b)

    def compute(self, state: SPROState) -> MetricValue:
        images = state.images
        n = len(images)
        sets = _type_sets(images) if self.average == "types" else {}
        if not sets:
            sets = {"pooled": images}
        aucs: dict[str, float] = {}
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for g, imgs in sets.items():
            s = _summary(imgs)
            why = _why_undefined(s)
            if why:
                where = "" if g == "pooled" else f" for defect type {g!r}"
                return MetricValue(value=undefined(self.label, why + where), n=n)
            fx, fy = _curve(s)
            aucs[g] = ranking.area_to(fx, fy, self.fpr_limit)
            curves["spro" if len(sets) == 1 else f"spro/{g}"] = _downsample(fx, fy, CURVE_POINTS)
        value = math.fsum(aucs.values()) / len(aucs)
        if len(aucs) > 1:
            per = ", ".join(f"{g}={v:.4f}" for g, v in aucs.items())
            note = f"exact; mean over defect types, each with all normal images ({per})"
        else:
            note = "exact"
        n_fb = sum(im.fallback for im in images)
        if n_fb:
            note += f"; {n_fb} image(s) without per-defect ground truth: whole mask = 1 region"
        return MetricValue(value=value, n=n, note=note, curves=curves)
