"""AUPIMO: per-image area under the PIMO curve in a low shared-FPR range, exact over all
distinct thresholds.

Definition (Bertoldo et al. 2024, "AUPIMO: Redefining Visual Anomaly Detection
Benchmarks with High Speed and Low Tolerance"); a pixel is predicted anomalous when
``map >= t``:

- **shared FPR** ``FPR(t)``: the mean over the *normal* images (empty mask) of each
  image's ``#{pixels >= t} / #pixels``; each normal pixel weighs ``1 / (n_normal *
  its image's pixel count)``, so images of different sizes are handled exactly (equal
  to the pooled FPR over normal pixels when all have one size). Normal pixels of
  anomalous images are not used.
- **per-image TPR** ``TPR_i(t) = #{mask pixels of i >= t} / #mask pixels of i`` for each
  anomalous image ``i``.
- the **PIMO curve** of image ``i``: the polyline through ``(ln FPR(t), TPR_i(t))`` at
  all distinct thresholds (the scores of the normal images and of ``i``'s mask pixels),
  ties following the ROC convention: a block of tied scores holding normal pixels and
  positives is the straight segment (in ln-FPR space) from the point just above the
  tie to the point at the tie. Vertical segments add no area.
- ``AUPIMO_i = (1 / ln(U / L)) * integral of TPR_i d(ln FPR)`` over ``[ln L, ln U]``,
  trapezoids on the polyline (exact), the curve's values at ``L`` and ``U`` linearly
  interpolated in ln-FPR space. Defaults ``L, U = 1e-5, 1e-4``. Higher is better.
- NaN for normal images. The set value is the mean over anomalous images. Undefined
  (NaN with a warning) when there is no normal or no anomalous image, or when the
  smallest positive shared FPR exceeds ``L`` (too few normal pixels to resolve it;
  anomalib raises there).

anomalib (``anomalib.metrics.pimo``) evaluates the curves on 300 000 thresholds evenly
spaced over the range of the normal scores, integrates between the grid points whose
shared FPR is nearest to each bound (no interpolation) and clips to [0, 1]; on the test
fixture (30 normal 128 x 128 images) the values differ by up to ~1e-2 per image, and by
~2e-5 when this exact curve is integrated over anomalib's actual FPR range (see
``tests/metrics/test_aupimo.py``).

Computation: the state keeps the normal images' scores and each anomalous image's
mask-pixel scores. Only the normal levels with ``FPR <= U`` (and the next one) matter:
in each normal image of ``s`` pixels at most ``floor(n_normal * U * s) + 1`` of its
highest scores can lie above a threshold whose FPR is ``<= U``, so these are selected
with :func:`numpy.partition`, the shared FPR is counted on them (exactly, in integers
per image size), and each anomalous image's TPR at those levels comes from
:func:`numpy.searchsorted` on its sorted positives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import (
    check_ids,
    exact_mean,
    extend_ids,
    merged_ids,
    paired,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS

__all__ = [
    "AUPIMO",
    "DEFAULT_FPR_BOUNDS",
    "AUPIMOState",
    "aupimo",
    "aupimo_per_image",
    "check_fpr_bounds",
]

DEFAULT_FPR_BOUNDS: tuple[float, float] = (1e-5, 1e-4)
"""The shared-FPR range of the paper (and anomalib's default)."""


def check_fpr_bounds(fpr_bounds) -> tuple[float, float]:
    """Return ``fpr_bounds`` as a tuple of two floats ``(L, U)``; raise unless
    ``0 < L < U <= 1``."""
    if isinstance(fpr_bounds, (str, bytes)) or not isinstance(fpr_bounds, Sequence):
        raise InputError(f"fpr_bounds must be a pair (lower, upper) of numbers, got {fpr_bounds!r}")
    if len(fpr_bounds) != 2 or any(
        isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
        for v in fpr_bounds
    ):
        raise InputError(f"fpr_bounds must be a pair (lower, upper) of numbers, got {fpr_bounds!r}")
    lo, hi = float(fpr_bounds[0]), float(fpr_bounds[1])
    if not (0.0 < lo < hi <= 1.0):
        raise InputError(f"fpr_bounds must satisfy 0 < lower < upper <= 1, got {fpr_bounds!r}")
    return lo, hi


# --------------------------------------------------------------------------- state
@dataclass
class AUPIMOState:
    """Scores kept for an exact AUPIMO: the flattened scores of every normal image, and
    per image in update order its mask pixels' scores (None for a normal image).

    ``merge`` concatenates; the per-image values follow the order of :attr:`ids`.
    """

    ids: list = field(default_factory=list)
    normal: list = field(default_factory=list)
    positives: list = field(default_factory=list)

    def add(self, mask: np.ndarray, amap: np.ndarray, image_id=None) -> None:
        """Add one image (a bool mask and its map at the same size)."""
        if amap.size == 0:
            raise InputError(f"image {image_id!r} has no pixels: AUPIMO needs non-empty maps")
        if mask.any():
            self.positives.append(np.array(amap[mask], copy=True))
        else:
            self.positives.append(None)
            self.normal.append(np.array(amap, copy=True).reshape(-1))
        self.ids.append(image_id)  # None: an anonymous image (functional use)

    def update(self, masks, maps, ids=None) -> AUPIMOState:
        """Add the images of ``masks``/``maps`` (as for :func:`aupimo_per_image`); ``ids``
        (one per image) may not repeat an id already in the state."""
        k = 0
        pairs = paired(masks, maps)
        if ids is not None:
            n = sum(1 if m.ndim == 2 else m.shape[0] for m, _ in pairs)
            ids = check_ids(ids, n, "AUPIMOState.update")
            extend_ids(list(self.ids), ids, "AUPIMOState.update")
        for m, a in pairs:
            ms, ams = (m, a) if m.ndim == 3 else (m[None], a[None])
            for mi, ai in zip(ms, ams, strict=True):
                if ids is not None:
                    if k >= len(ids):
                        raise InputError(f"got {len(ids)} ids for more images")
                    iid = ids[k]
                else:
                    iid = None
                self.add(mi, ai, iid)
                k += 1
        if ids is not None and k != len(ids):
            raise InputError(f"got {len(ids)} ids for {k} images")
        return self

    def merge(self, other: AUPIMOState) -> AUPIMOState:
        return AUPIMOState(
            ids=merged_ids(self.ids, other.ids, "merging AUPIMO states"),
            normal=self.normal + other.normal,
            positives=self.positives + other.positives,
        )

    @property
    def n_normal(self) -> int:
        return len(self.normal)

    @property
    def n_anomalous(self) -> int:
        return len(self.positives) - len(self.normal)


# ------------------------------------------------------------------------ compute
@dataclass(frozen=True)
class _SharedFPR:
    """The normal levels that matter, descending: ``levels[k]`` with shared FPR
    ``fpr[k]`` (strictly increasing); ``fpr[-1] >= U`` and every level with
    ``FPR <= U`` is present, from the highest normal score on."""

    levels: np.ndarray
    fpr: np.ndarray


def _shared_fpr(normal: list[np.ndarray], upper: float) -> _SharedFPR:
    n = len(normal)
    sizes = np.array([a.size for a in normal], dtype=np.int64)
    # candidates: in an image of s pixels at most floor(n U s) + 1 of its top scores can
    # be >= a threshold with FPR <= U (one more would put its FPR alone above U); +2
    # absorbs the rounding of n U s.
    cand, group = [], []
    usizes, ginv = np.unique(sizes, return_inverse=True)
    for a, s, g in zip(normal, sizes, ginv, strict=True):
        k = int(min(s, math.floor(n * upper * s) + 2))
        top = a if k >= s else np.partition(a, s - k)[s - k :]
        cand.append(top.astype(np.float64, copy=False))
        group.append(np.full(top.size, g, dtype=np.int64))
    cv = np.concatenate(cand)
    cg = np.concatenate(group)
    levels = np.unique(cv)[::-1]  # descending distinct candidate scores
    # FPR(level) = sum over sizes s of count_s(>= level) / (n s), counts in integers
    fpr = np.zeros(levels.size)
    by_group = [np.sort(cv[cg == g]) for g in range(usizes.size)]
    for s, c in zip(usizes, by_group, strict=True):
        cnt = c.size - np.searchsorted(c, levels, side="left")
        fpr += cnt / (n * float(s))
    n_ok = int(np.searchsorted(fpr, upper, side="right"))  # levels with FPR <= U (exact)
    if n_ok == levels.size:  # only when every pixel is a candidate: FPR reaches 1 = U
        return _SharedFPR(levels, fpr)
    # the next level (the largest normal score below those) is a candidate, but its
    # count may be truncated: count it on all normal pixels
    nxt = levels[n_ok]
    exact = 0.0
    for s in usizes:
        cnt = sum(int(np.count_nonzero(a >= nxt)) for a in normal if a.size == s)
        exact += cnt / (n * float(s))
    fpr = np.append(fpr[:n_ok], exact)
    return _SharedFPR(levels[: n_ok + 1], fpr)


def _integral(shared: _SharedFPR, pos_sorted: np.ndarray, lo: float, hi: float) -> float:
    """Integral of the PIMO polyline of one image over ``ln FPR`` in ``[lo, hi]`` (logs
    of the bounds). Segment ``k`` goes from ``(ln fpr[k-1], #pos > level_k / P)`` to
    ``(ln fpr[k], #pos >= level_k / P)``; the first (from ``ln 0``) lies below ``lo``."""
    x = np.log(shared.fpr)
    p = pos_sorted.size
    gt = (p - np.searchsorted(pos_sorted, shared.levels, side="right")) / p
    ge = (p - np.searchsorted(pos_sorted, shared.levels, side="left")) / p
    x0, x1 = x[:-1], x[1:]
    y0, y1 = gt[1:], ge[1:]
    keep = (x1 > lo) & (x0 < hi)
    x0, x1, y0, y1 = x0[keep], x1[keep], y0[keep], y1[keep]
    slope = (y1 - y0) / (x1 - x0)
    a = np.maximum(x0, lo)
    b = np.minimum(x1, hi)
    ya = y0 + slope * (a - x0)
    yb = y0 + slope * (b - x0)
    return math.fsum((0.5 * (ya + yb) * (b - a)).tolist())


def _compute(state: AUPIMOState, fpr_bounds, label: str) -> tuple[np.ndarray, str]:
    """Per-image AUPIMO (NaN for normal images) and a note."""
    lower, upper = check_fpr_bounds(fpr_bounds)
    out = np.full(len(state.positives), np.nan)
    if not state.positives:
        undefined(label, "no images")
        return out, "no images"
    if state.n_normal == 0:
        undefined(label, "no normal image (empty mask) to estimate the shared FPR")
        return out, "no normal image"
    if state.n_anomalous == 0:
        undefined(label, "no anomalous image (non-empty mask)")
        return out, "no anomalous image"
    shared = _shared_fpr(state.normal, upper)
    if shared.fpr[0] > lower:
        why = (
            f"the smallest positive shared FPR ({shared.fpr[0]:.3g}, at the highest normal "
            f"score) exceeds the lower FPR bound {lower:g}: too few normal pixels "
            f"({sum(a.size for a in state.normal)} in {state.n_normal} images) to resolve it"
        )
        undefined(label, why)
        return out, "undefined: too few normal pixels for the lower FPR bound"
    lo, hi = math.log(lower), math.log(upper)
    norm = math.log(upper / lower)
    for i, pos in enumerate(state.positives):
        if pos is None:
            continue
        ps = np.sort(pos.astype(np.float64, copy=False))
        out[i] = _integral(shared, ps, lo, hi) / norm
    note = (
        f"exact over all distinct thresholds; shared FPR in [{lower:g}, {upper:g}] from "
        f"{state.n_normal} normal images; mean over {state.n_anomalous} anomalous images"
    )
    return out, note


def _mean_defined(per: np.ndarray) -> tuple[float, int]:
    ok = per[~np.isnan(per)]
    return exact_mean(ok), int(ok.size)


# --------------------------------------------------------------------- functional
def aupimo_per_image(masks, maps, *, fpr_bounds=DEFAULT_FPR_BOUNDS) -> np.ndarray:
    """AUPIMO of each image (``(N,)``, NaN for normal images; higher is better).

    ``masks``/``maps``: an (N, H, W) array or a sequence of 2-D arrays (sizes may differ
    between images); maps at the mask's native resolution. See the module docstring.
    """
    check_fpr_bounds(fpr_bounds)
    state = AUPIMOState().update(masks, maps)
    return _compute(state, fpr_bounds, "aupimo")[0]


def aupimo(masks, maps, *, fpr_bounds=DEFAULT_FPR_BOUNDS) -> float:
    """Mean AUPIMO over the anomalous images (higher is better; NaN with a warning
    when undefined)."""
    return _mean_defined(aupimo_per_image(masks, maps, fpr_bounds=fpr_bounds))[0]


# ------------------------------------------------------------------ registered metric
@METRICS.register
class AUPIMO(Metric):
    """AUPIMO: per anomalous image, the area under its PIMO curve -- the per-image TPR
    (mask pixels with ``map >= t``) against the log of the shared FPR (mean over the
    normal images of each one's fraction of pixels ``>= t``) -- for shared FPR in
    ``[L, U]`` (default ``[1e-5, 1e-4]``), integrated over ``ln FPR`` and divided by
    ``ln(U / L)``; exact over all distinct thresholds (ROC tie convention, bounds
    interpolated in ln-FPR space). NaN for normal images; the set value is the mean
    over anomalous images; undefined when the normal pixels cannot resolve FPR = L.
    **Higher is better.** Reference: Bertoldo et al. (2024), "AUPIMO: Redefining Visual
    Anomaly Detection Benchmarks with High Speed and Low Tolerance"."""

    name = "aupimo"
    higher_is_better = True
    family = "localisation"
    needs = frozenset({"masks"})
    per_image = True

    def __init__(
        self, *, fpr_bounds: tuple[float, float] | list[float] = DEFAULT_FPR_BOUNDS
    ) -> None:
        self.fpr_bounds = check_fpr_bounds(fpr_bounds)
        if isinstance(getattr(self, "_options", None), dict):
            self._options["fpr_bounds"] = self.fpr_bounds  # a list given: params as a tuple

    @property
    def label(self) -> str:
        if self.fpr_bounds == DEFAULT_FPR_BOUNDS:
            return self.name
        lo, hi = self.fpr_bounds
        return f"{self.name}@{lo:g}-{hi:g}"

    def init(self) -> AUPIMOState:
        return AUPIMOState()

    def update(self, state: AUPIMOState, record, explanation) -> AUPIMOState:
        masks = record.targets.masks
        if masks is None:
            raise InputError(f"metric {self.label!r} needs masks; the record has none")
        check_aligned(record, explanation, self.label)
        return state.update(masks, explanation.native, ids=record.ids)

    def merge(self, a: AUPIMOState, b: AUPIMOState) -> AUPIMOState:
        return a.merge(b)

    def compute(self, state: AUPIMOState) -> MetricValue:
        per, note = _compute(state, self.fpr_bounds, self.label)
        value, n = _mean_defined(per)
        return MetricValue(value=value, n=n, per_image=per, ids=list(state.ids), note=note)
