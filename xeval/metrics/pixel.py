"""Threshold-free pixel metrics pooled over a set of images: pixel AUROC, pixel AUPR
(average precision), AUPRO@L and the oracle-best IoU, in an exact and a streaming mode.

Definitions (higher is better for all):

- **pixel AUROC**: area under the ROC curve of all pixels of the set (mask = positive),
  ties counted 1/2; equals ``sklearn.metrics.roc_auc_score`` on the flattened pixels.
- **pixel AUPR**: average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct
  thresholds, as ``sklearn.metrics.average_precision_score``.
- **AUPRO@L** (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021):
  regions are the 8-connected components of each mask; for each distinct score t
  (pixel positive if ``map >= t``) FPR(t) = false-positive pixels / all GT-free pixels
  of the set and PRO(t) = mean over all regions of the set of
  ``|region ∩ {map >= t}| / |region|``; the curve starts at (0, 0) and ends at (1, 1),
  values clipped at 1; the trapezoidal area for FPR in [0, L] (value at L linearly
  interpolated) divided by L.

Modes
-----
``exact``: keeps the negative scores (4 bytes a pixel for float32 maps) and sorts them
once at :meth:`compute`; identical to the reference definitions.
``binned``: streaming, memory independent of the number of images (``2 * octaves *
2**bits + 1`` bins, 31 MB at the defaults) and no score range needed up front: scores
are binned on their float32 bit pattern (bins of relative width ``2**-bits`` over the
``octaves`` octaves below the largest magnitude seen); every bin acts as one tied score
and :meth:`compute` reports a guaranteed bound on the error of each metric against the
exact value (``error_bound/<metric>``). Scores are binned as float32 (float64 values
round monotonically, so the bound still holds; values beyond float32's range share its
top bin).

Undefined (NaN with an :class:`~xeval.errors.UndefinedMetricWarning` saying why, never
0.5): every metric when the set has no anomalous pixel or no normal pixel; in binned
mode, a metric whose guaranteed interval ``value ± bound`` covers its whole range
``[0, 1]`` (e.g. all scores in one bin, or float64 detail finer than float32): the
binned value would say nothing, use ``mode="exact"``. AUPRO@L is defined whenever there
is a region and a normal pixel, however few: the curve is a polyline from (0, 0), flat
where no threshold lands and diagonal only across tied blocks (the ROC ties convention).

Image bootstrap: pixel AUROC, AUPR and AUPRO also declare a per-image summary (score
histograms on a per-set grid, :mod:`xeval.metrics.pooled`) from which they are recomputed
on resampled sets of images, for the verdicts against the controls; the values reported
here are never taken from it.

Exactness: the exact mode ranks the maps' own values (float32 or float64, never
converted to a coarser type; integer maps beyond ``±2**53`` are refused), so scores near
the float limits (``±1e308``, subnormals) give scikit-learn's values. With ``ids``, a
state refuses an image added twice (in an update or across a merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from xeval.errors import InputError
from xeval.metrics import pooled, ranking
from xeval.metrics._validation import check_ids, extend_ids, merged_ids, paired, undefined
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.metrics.regions import positive_weights
from xeval.registry import METRICS

_CHUNK_PIXELS = 1 << 22


def _chunks(mask: np.ndarray, amap: np.ndarray):
    """Split an (N, H, W) pair along images into pieces of about 4M pixels."""
    if mask.ndim == 2:
        yield mask, amap
        return
    per = max(1, _CHUNK_PIXELS // max(1, mask[0].size))
    for i in range(0, mask.shape[0], per):
        yield mask[i : i + per], amap[i : i + per]


# ----------------------------------------------------------------------------- exact
@dataclass
class ExactPixelState:
    """Copies of all scores, the positive scores and the positive region weights (and
    the ids of the images, when given, so that no image is added twice)."""

    values: list = field(default_factory=list)
    pos: list = field(default_factory=list)
    pos_w: list = field(default_factory=list)
    n_regions: int = 0
    n_images: int = 0
    ids: list = field(default_factory=list)
    _summary: ranking.RankSummary | None = field(default=None, repr=False, compare=False)

    def update(self, mask: np.ndarray, amap: np.ndarray) -> None:
        self._summary = None
        self.values.append(np.array(amap, copy=True).reshape(-1))  # sorted in place later
        self.pos.append(amap[mask])
        for m, _ in _chunks(mask, amap):
            w, n = positive_weights(m)
            self.pos_w.append(w)
            self.n_regions += n
        self.n_images += 1 if mask.ndim == 2 else mask.shape[0]

    def merge(self, other: ExactPixelState) -> ExactPixelState:
        return ExactPixelState(
            values=self.values + other.values,
            pos=self.pos + other.pos,
            pos_w=self.pos_w + other.pos_w,
            n_regions=self.n_regions + other.n_regions,
            n_images=self.n_images + other.n_images,
            ids=merged_ids(self.ids, other.ids, "merging pixel-ranking states"),
        )

    def _sorted_values(self) -> np.ndarray:
        if len(self.values) == 1:
            buf = self.values[0]
        else:
            dtype = np.result_type(*self.values) if self.values else np.float64
            buf = np.empty(sum(a.size for a in self.values), dtype=dtype)
            i = 0
            while self.values:  # move piece by piece so that memory is freed as we go
                a = self.values.pop(0)
                buf[i : i + a.size] = a
                i += a.size
        buf.sort()
        self.values = [buf]  # sorted once; a second compute reuses it
        return buf

    def summary(self) -> ranking.RankSummary:
        """The rank summary (computed once; reused until the next update)."""
        if self._summary is not None:
            return self._summary
        allv = self._sorted_values()
        pos = np.concatenate(self.pos) if self.pos else np.zeros(0, allv.dtype)
        pos_w = np.concatenate(self.pos_w) if self.pos_w else np.zeros(0)
        if pos.dtype != allv.dtype:
            pos = pos.astype(allv.dtype)
        self._summary = ranking.summarize_sorted(allv, pos, pos_w, self.n_regions)
        return self._summary


# ---------------------------------------------------------------------------- binned
def _exponent(x: float) -> int:
    """Biased float32 exponent of ``|x|`` (0 for zero and subnormals)."""
    return int(np.abs(np.float32(x)).view(np.uint32)) >> 23


def _accumulate(target: np.ndarray, lo: int, idx: np.ndarray, n: int, weights=None) -> None:
    """``target[lo + idx] += weights`` (or ``+= 1``) for indices ``0 <= idx < n``.

    A dense ``bincount`` costs O(len(idx) + n); when the index range is much wider than
    the number of values (small batches, log-spaced bins) an unbuffered ``np.add.at``
    (O(len(idx))) is cheaper."""
    if n <= 2 * idx.size:
        target[lo : lo + n] += np.bincount(idx, weights, minlength=n)
        return
    np.add.at(target, idx.astype(np.int64) + lo, 1 if weights is None else weights)


def _side_index(x: float, shift: int) -> int:
    """``|x|``'s float32 bit pattern shifted right by ``shift`` (sign dropped)."""
    return int(np.abs(np.float32(x)).view(np.uint32)) >> shift


@dataclass
class BinnedPixelState:
    """Streaming histograms on the float32 bit pattern of the scores.

    A score ``v`` falls in a bin of relative width ``2**-bits`` of ``|v|``: bins are
    log-spaced, so no score range is needed up front. The ``octaves`` octaves below the
    largest magnitude seen so far are resolved; smaller magnitudes (``|v| <
    2**(-octaves) * max|v|``) share one bin around zero. Layout of the arrays (fixed
    size ``2 * octaves * 2**bits + 1``): negative scores (descending magnitude), the zero
    bin, positive scores (ascending). When a larger magnitude arrives, the content
    shifts down and bins falling out of range merge into the zero bin (exact for
    counts). The error this binning causes is bounded at :meth:`summary` time.
    """

    bits: int = 15
    octaves: int = 20
    e_cut: int = -1  # smallest resolved biased exponent; -1 = nothing seen yet
    n_all: np.ndarray | None = None
    n_pos: np.ndarray | None = None
    w_pos: np.ndarray | None = None
    n_regions: int = 0
    n_images: int = 0
    ids: list = field(default_factory=list)

    @property
    def half(self) -> int:
        return self.octaves << self.bits

    @property
    def shift(self) -> int:
        return 23 - self.bits

    def _alloc(self) -> None:
        size = 2 * self.half + 1
        self.n_all = np.zeros(size, np.int64)
        self.n_pos = np.zeros(size, np.int64)
        self.w_pos = np.zeros(size, np.float64)

    def _raise_cut(self, e_cut: int) -> None:
        """Move the resolved range up to start at exponent ``e_cut``."""
        if self.n_all is None:
            self._alloc()
        elif e_cut > self.e_cut >= 0:
            d = (e_cut - self.e_cut) << self.bits
            z = self.half
            for arr in (self.n_all, self.n_pos, self.w_pos):
                if d >= self.half:
                    arr[z] = arr.sum()
                    arr[:z] = 0
                    arr[z + 1 :] = 0
                    continue
                # positive side: index z + pb -> z + pb - d, pb <= d merges into zero
                arr[z] += arr[z + 1 : z + 1 + d].sum() + arr[z - d : z].sum()
                arr[z + 1 : -d] = arr[z + 1 + d :].copy()
                arr[-d:] = 0
                # negative side mirrored: index z - nb -> z - nb + d
                arr[d:z] = arr[: z - d].copy()
                arr[:d] = 0
        self.e_cut = e_cut

    def _bins(self, v: np.ndarray, vmin: float, vmax: float) -> tuple[np.ndarray, int, int]:
        """``(idx - lo, lo, hi)``: the layout index of every score relative to the
        smallest one ``lo`` (int32, ready for ``np.bincount``), and the index range."""
        c = (self.e_cut << self.bits) - 1  # (|v| bits >> shift) - c = index on one side
        shift = np.uint32(self.shift)
        u = v.view(np.uint32)
        if vmin >= 0:  # non-negative scores (the common case): no sign handling
            if vmin == 0:
                u = u & np.uint32(0x7FFFFFFF)  # -0.0 -> +0.0
            else:
                u = u.copy()
            u >>= shift
            b = u.view(np.int32)
            lo = max(_side_index(vmin, self.shift) - c, 0) + self.half
            hi = max(_side_index(vmax, self.shift) - c, 0) + self.half
            b -= np.int32(lo - self.half + c)
            if lo == self.half:  # some scores below the resolved range: zero bin
                np.maximum(b, 0, out=b)
            return b, lo, hi
        mag = (u & np.uint32(0x7FFFFFFF)) >> shift
        b = mag.view(np.int32)
        b -= np.int32(c)
        np.maximum(b, 0, out=b)
        np.negative(b, out=b, where=v < 0)
        lo = self.half - max(_side_index(vmin, self.shift) - c, 0)
        hi = self.half + (
            max(_side_index(vmax, self.shift) - c, 0)
            if vmax > 0
            else -max(_side_index(vmax, self.shift) - c, 0)
        )
        b += np.int32(self.half - lo)
        return b, lo, hi

    def update(self, mask: np.ndarray, amap: np.ndarray) -> None:
        for m, a in _chunks(mask, amap):
            v = a.ravel()
            if v.dtype != np.float32:
                v = v.astype(np.float32)
            vmin, vmax = float(v.min()), float(v.max())
            e_max = max(_exponent(vmin), _exponent(vmax))
            e_cut = max(e_max - self.octaves + 1, 0)
            if e_cut > self.e_cut or self.n_all is None:
                self._raise_cut(max(e_cut, self.e_cut))
            b, lo, hi = self._bins(v, vmin, vmax)
            _accumulate(self.n_all, lo, b, hi - lo + 1)
            idx = np.flatnonzero(m)
            if idx.size:
                bp = b[idx]
                w, nreg = positive_weights(m)
                plo = int(bp.min())
                bp -= plo
                n = int(bp.max()) + 1
                _accumulate(self.n_pos, lo + plo, bp, n)
                _accumulate(self.w_pos, lo + plo, bp, n, w)
                self.n_regions += nreg
            self.n_images += 1 if m.ndim == 2 else m.shape[0]

    def copy(self) -> BinnedPixelState:
        c = BinnedPixelState(
            self.bits,
            self.octaves,
            self.e_cut,
            None,
            None,
            None,
            self.n_regions,
            self.n_images,
            list(self.ids),
        )
        if self.n_all is not None:
            c.n_all, c.n_pos, c.w_pos = self.n_all.copy(), self.n_pos.copy(), self.w_pos.copy()
        return c

    def merge(self, other: BinnedPixelState) -> BinnedPixelState:
        if (self.bits, self.octaves) != (other.bits, other.octaves):
            raise ValueError(
                "cannot merge binned states of different resolution: "
                f"bits/octaves {self.bits}/{self.octaves} vs {other.bits}/{other.octaves}"
            )
        ids = merged_ids(self.ids, other.ids, "merging binned pixel-ranking states")
        a, b = self.copy(), other.copy()
        a.ids = b.ids = ids
        if b.n_all is None:
            return a
        if a.n_all is None:
            return b
        cut = max(a.e_cut, b.e_cut)
        a._raise_cut(cut)
        b._raise_cut(cut)
        a.n_all += b.n_all
        a.n_pos += b.n_pos
        a.w_pos += b.w_pos
        a.n_regions += b.n_regions
        a.n_images += b.n_images
        return a

    def _edges(self, idx: np.ndarray) -> np.ndarray:
        """Lower edge (score) of each bin index (zero bin: 0)."""
        rel = idx - self.half
        mag = (np.abs(rel) - 1 + (self.e_cut << self.bits)).astype(np.uint64)
        lo_mag = (mag << np.uint64(self.shift)).astype(np.uint32).view(np.float32)
        hi_mag = (((mag + 1) << np.uint64(self.shift)) - 1).astype(np.uint32).view(np.float32)
        out = np.where(rel > 0, lo_mag, -hi_mag).astype(np.float64)
        out[rel == 0] = 0.0
        return out

    def summary(self) -> ranking.RankSummary:
        if self.n_all is None:
            self._alloc()
            self.e_cut = 0
        neg = self.n_all - self.n_pos
        neg_ge = np.cumsum(neg[::-1])[::-1]
        neg_gt = neg_ge - neg
        keep = np.flatnonzero(self.n_pos > 0)[::-1]  # descending score
        return ranking.RankSummary(
            thresholds=self._edges(keep),
            m=self.n_pos[keep],
            w=self.w_pos[keep],
            neg_ge=neg_ge[keep],
            neg_gt=neg_gt[keep],
            n_pos=int(self.n_pos.sum()),
            n_neg=int(neg.sum()),
            n_regions=self.n_regions,
        )


# ---------------------------------------------------------------------------- metric
class PixelRanking:
    """Mergeable metric: pixel AUROC, pixel AUPR, AUPRO@L for each L, oracle IoU/F1,
    and the ROC and PRO curves.

    >>> metric = PixelRanking(fpr_limits=(0.3,), mode="exact")
    >>> state = metric.init()
    >>> state = metric.update(state, masks, maps)      # per batch / shard
    >>> state = metric.merge(state, other_state)       # across workers
    >>> metric.compute(state)["aupro@0.3"]
    """

    def __init__(
        self,
        *,
        fpr_limits=(0.3,),
        mode: str = "exact",
        bits: int = 15,
        octaves: int = 20,
        curves: bool = False,
        curve_points: int = 512,
    ):
        if mode not in ("exact", "binned"):
            raise ValueError(f"mode must be 'exact' or 'binned', got {mode!r}")
        for lim in fpr_limits:
            if not 0 < float(lim) <= 1:
                raise ValueError(f"fpr_limits must lie in (0, 1], got {lim!r}")
        if not 1 <= int(bits) <= 23:
            raise ValueError(f"bits must be in 1..23, got {bits!r}")
        self.fpr_limits = tuple(float(x) for x in fpr_limits)
        self.mode = mode
        self.bits = int(bits)
        if not 1 <= int(octaves) <= 254:
            raise ValueError(f"octaves must be in 1..254, got {octaves!r}")
        self.octaves = int(octaves)
        self.curves = curves
        self.curve_points = int(curve_points)

    def init(self):
        if self.mode == "exact":
            return ExactPixelState()
        return BinnedPixelState(bits=self.bits, octaves=self.octaves)

    def update(self, state, masks, maps, ids=None):
        """Add ``masks``/``maps``; ``ids`` (one per image, optional) are checked against
        the ids already in ``state``: an image added twice would weigh double."""
        pairs = paired(masks, maps)
        n = sum(1 if m.ndim == 2 else m.shape[0] for m, _ in pairs)
        ids = check_ids(ids, n, "PixelRanking.update")
        extend_ids(list(state.ids), ids, "PixelRanking.update")
        for m, a in pairs:
            state.update(m, a)
        state.ids.extend(ids)
        return state

    @staticmethod
    def merge(a, b):
        return a.merge(b)

    def compute(self, state) -> dict:
        s = state.summary()
        out: dict = {
            "n_images": state.n_images,
            "n_pos": s.n_pos,
            "n_neg": s.n_neg,
            "n_regions": s.n_regions,
        }
        names = ["pixel_auroc", "pixel_aupr", *(f"aupro@{lim:g}" for lim in self.fpr_limits)]
        if s.n_pos == 0 or s.n_neg == 0:
            why = "no anomalous pixels" if s.n_pos == 0 else "no normal pixels"
            for k in names + ["iou_oracle", "f1_oracle"]:
                out[k] = undefined(k, why)
            return out
        out["pixel_auroc"] = ranking.auroc(s)
        out["pixel_aupr"] = ranking.average_precision(s)
        fx, fy = ranking.pro_points(s)
        for lim in self.fpr_limits:
            out[f"aupro@{lim:g}"] = ranking.area_to(fx, fy, lim)
        out["iou_oracle"], out["iou_oracle_threshold"] = ranking.best_iou(s)
        out["f1_oracle"], out["f1_oracle_threshold"] = ranking.best_f1(s)
        if self.mode == "binned":
            for k, v in ranking.error_bounds(s, fpr_limits=self.fpr_limits).items():
                out[f"error_bound/{k}"] = v
                if not np.isnan(out[k]) and ranking.vacuous_bound(out[k], v):
                    out[k] = undefined(k, _vacuous(out[k], v))
        if self.curves:
            rx, ry = ranking.roc_points(s)
            out["roc_curve"] = _downsample(rx, ry, self.curve_points)
            out["pro_curve"] = _downsample(fx, fy, self.curve_points)
        return out


def _vacuous(value: float, bound: float) -> str:
    return (
        f"binned mode cannot separate the scores: its guaranteed error bound ±{bound:.3g} "
        f"around {value:.3g} covers the whole range [0, 1] (scores tied within bins, e.g. "
        "all in one bin, or float64 detail below float32's resolution); use mode='exact' "
        "or more bits"
    )


def _downsample(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Curve values on ``n`` evenly spaced x (for plotting; the polyline's upper value at
    vertical jumps)."""
    grid = np.linspace(0.0, 1.0, n)
    idx = np.searchsorted(x, grid, side="right") - 1
    idx = np.clip(idx, 0, x.size - 2)
    x0, x1, y0, y1 = x[idx], x[idx + 1], y[idx], y[idx + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(x1 > x0, (grid - x0) / (x1 - x0), 1.0)
    return grid, y0 + np.clip(t, 0, 1) * (y1 - y0)


# ------------------------------------------------------------------------ functional
def _one_shot(masks, maps, key: str, **kw) -> float:
    metric = PixelRanking(**kw)
    state = metric.update(metric.init(), masks, maps)
    return float(metric.compute(state)[key])


def pixel_auroc(masks, maps) -> float:
    """Pixel-level AUROC pooled over the set (higher is better; ties count 1/2).

    ``masks``/``maps``: an (N, H, W) array or a sequence of 2-D arrays (sizes may differ
    between images); maps must already be at the mask's native resolution.
    """
    return _one_shot(masks, maps, "pixel_auroc")


def pixel_aupr(masks, maps) -> float:
    """Pixel-level average precision pooled over the set (higher is better), as
    ``sklearn.metrics.average_precision_score`` on all pixels."""
    return _one_shot(masks, maps, "pixel_aupr")


def aupro(masks, maps, *, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (MVTec AD definition,
    see module docstring; higher is better)."""
    return _one_shot(masks, maps, f"aupro@{float(fpr_limit):g}", fpr_limits=(fpr_limit,))


# ------------------------------------------------------------------ registered metrics
CURVE_POINTS = 201
"""Points of the downsampled ROC / PRO curves kept for figures."""


class _PixelRankingMetric(Metric):
    """Base of the threshold-free pixel metrics: they share one :class:`PixelRanking`
    state (scores sorted once) per ``mode``."""

    family = "localisation"
    needs = frozenset({"masks"})
    higher_is_better = True

    def __init__(self, *, mode: Literal["exact", "binned"] = "exact") -> None:
        if mode not in ("exact", "binned"):
            raise InputError(f"mode must be 'exact' or 'binned', got {mode!r}")
        self.mode = mode

    def shares(self):
        return ("pixel_ranking", self.mode)

    def _ranking(self) -> PixelRanking:
        return PixelRanking(mode=self.mode)

    def init(self):
        return self._ranking().init()

    def update(self, state, record, explanation):
        check_aligned(record, explanation, self.label)
        return self._ranking().update(
            state, record.targets.masks, explanation.native, ids=record.ids
        )

    def merge(self, a, b):
        return a.merge(b)

    def _value(self, s: ranking.RankSummary) -> float:
        raise NotImplementedError

    def _bound_key(self) -> str:
        return self.name

    def compute(self, state) -> MetricValue:
        s = state.summary()
        n = int(state.n_images)
        if s.n_pos == 0 or s.n_neg == 0:
            why = "no anomalous pixels" if s.n_pos == 0 else "no normal pixels"
            return MetricValue(value=undefined(self.label, why), n=n)
        note = "exact"
        value = self._value(s)
        if self.mode == "binned":
            bound = ranking.error_bounds(s, fpr_limits=self._limits()).get(self._bound_key())
            note = f"binned, |error| <= {bound:.1e}" if bound is not None else "binned"
            if bound is not None and ranking.vacuous_bound(value, bound):
                return MetricValue(value=undefined(self.label, _vacuous(value, bound)), n=n)
        out = MetricValue(value=value, n=n, note=note)
        self._curves(s, out)
        return out

    def _limits(self) -> tuple[float, ...]:
        return ()

    def _curves(self, s: ranking.RankSummary, out: MetricValue) -> None:
        pass

    # ------------------------------------------- per-image summary (image bootstrap)
    #: Whether the metric is recomputed on weighted sets of images from per-image
    #: histograms (:mod:`xeval.metrics.pooled`); :meth:`_weighted` gives the values.
    resampled: ClassVar[bool] = False

    def summary_key(self) -> str | None:
        return f"{pooled.PixelHistograms.kind}/{pooled.DEFAULT_BINS}" if self.resampled else None

    def init_summary(self) -> pooled.PixelHistogramCollector:
        return pooled.PixelHistogramCollector(bins=pooled.DEFAULT_BINS)

    def update_summary(self, collector, record, explanation):
        check_aligned(record, explanation, self.label)
        return collector.update(record.targets.masks, explanation.native, ids=record.ids)

    def compute_weighted(self, summary: pooled.PixelHistograms, weights) -> np.ndarray:
        """``(B,)`` values on the weighted binned sets (see :mod:`xeval.metrics.pooled`;
        each bin one tied score)."""
        return self._weighted(*summary.weighted(weights))

    def _weighted(self, neg, pos, cov, n_regions) -> np.ndarray:
        raise NotImplementedError


@METRICS.register
class PixelAUROC(_PixelRankingMetric):
    """Pixel AUROC: area under the ROC curve of all pixels of the set pooled (mask =
    positive), ties counted 1/2 -- equal to ``sklearn.metrics.roc_auc_score`` on the
    flattened pixels; maps at the masks' native resolution. **Higher is better.**
    Reference: Bergmann et al. (2019), "MVTec AD", CVPR."""

    name = "pixel_auroc"
    headline = 1
    resampled = True

    def _value(self, s):
        return ranking.auroc(s)

    def _weighted(self, neg, pos, cov, n_regions):
        return pooled.weighted_auroc(neg, pos)

    def _curves(self, s, out):
        out.curves["roc"] = _downsample(*ranking.roc_points(s), CURVE_POINTS)


@METRICS.register
class PixelAUPR(_PixelRankingMetric):
    """Pixel AUPR: average precision ``sum_k (R_k - R_{k-1}) P_k`` over the distinct
    thresholds of all pixels pooled, as ``sklearn.metrics.average_precision_score``.
    **Higher is better.** Reference: Zhu (2004); used for pixel level in anomalib."""

    name = "pixel_aupr"
    resampled = True

    def _value(self, s):
        return ranking.average_precision(s)

    def _weighted(self, neg, pos, cov, n_regions):
        return pooled.weighted_aupr(neg, pos)


@METRICS.register
class AUPRO(_PixelRankingMetric):
    """AUPRO@L (MVTec AD): regions = 8-connected components of each mask; for each
    distinct score t (positive if ``map >= t``) FPR(t) = false-positive pixels / all
    GT-free pixels of the set and PRO(t) = mean over all regions of the set of
    ``|region ∩ {map >= t}| / |region|``; the curve from (0, 0) to (1, 1), clipped at 1,
    integrated by the trapezoid rule up to FPR = L (value at L interpolated) and divided
    by L. **Higher is better.** Reference: Bergmann et al. (2021), "The MVTec Anomaly
    Detection Dataset", IJCV."""

    name = "aupro"
    headline = 1
    resampled = True

    def __init__(
        self, *, fpr_limit: float = 0.3, mode: Literal["exact", "binned"] = "exact"
    ) -> None:
        super().__init__(mode=mode)
        if isinstance(fpr_limit, bool) or not 0 < float(fpr_limit) <= 1:
            raise InputError(f"fpr_limit must lie in (0, 1], got {fpr_limit!r}")
        self.fpr_limit = float(fpr_limit)

    @property
    def label(self) -> str:
        return f"aupro@{self.fpr_limit:g}"

    def _bound_key(self) -> str:
        return self.label

    def _limits(self):
        return (self.fpr_limit,)

    def _value(self, s):
        fx, fy = ranking.pro_points(s)
        return ranking.area_to(fx, fy, self.fpr_limit)

    def _weighted(self, neg, pos, cov, n_regions):
        return pooled.weighted_aupro(neg, cov, n_regions, fpr_limit=self.fpr_limit)

    def _curves(self, s, out):
        out.curves["pro"] = _downsample(*ranking.pro_points(s), CURVE_POINTS)


@METRICS.register
class IoUOracle(_PixelRankingMetric):
    """Oracle IoU: the largest pooled IoU ``TP / (TP + FP + FN)`` over all thresholds
    ``map >= t``, with the threshold reaching it. The threshold is tuned on the test set
    itself: **optimistic** by construction. **Higher is better.** Reference: the
    "best IoU" reported in industrial anomaly localisation (e.g. Zavrtanik et al.
    2021, DRAEM)."""

    name = "iou_oracle"

    def _value(self, s):
        return ranking.best_iou(s)[0]

    def compute(self, state) -> MetricValue:
        out = super().compute(state)
        s = state.summary()
        if s.n_pos and s.n_neg:
            out.threshold = ranking.best_iou(s)[1]
        out.note = "threshold tuned on the test set (optimistic)"
        return out
