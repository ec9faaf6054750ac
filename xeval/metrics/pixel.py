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
``binned``: streaming, memory independent of the number of images and no score range
needed up front: scores are binned on their float32 bit pattern (``bits`` mantissa bits
kept, i.e. bins of relative width ``2**-bits`` at any magnitude); every bin acts as one
tied score and :meth:`compute` reports a guaranteed bound on the error of each metric
against the exact value (``error_bound/<metric>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xeval.metrics import ranking
from xeval.metrics._validation import paired, undefined
from xeval.metrics.regions import positive_weights

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
    """Negative scores, positive scores and positive region weights seen so far."""

    neg: list = field(default_factory=list)
    pos: list = field(default_factory=list)
    pos_w: list = field(default_factory=list)
    n_regions: int = 0
    n_images: int = 0

    def update(self, mask: np.ndarray, amap: np.ndarray) -> None:
        self.neg.append(amap[~mask])
        self.pos.append(amap[mask])
        for m, _ in _chunks(mask, amap):
            w, n = positive_weights(m)
            self.pos_w.append(w)
            self.n_regions += n
        self.n_images += 1 if mask.ndim == 2 else mask.shape[0]

    def merge(self, other: ExactPixelState) -> ExactPixelState:
        return ExactPixelState(
            neg=self.neg + other.neg,
            pos=self.pos + other.pos,
            pos_w=self.pos_w + other.pos_w,
            n_regions=self.n_regions + other.n_regions,
            n_images=self.n_images + other.n_images,
        )

    def _sorted_negatives(self) -> np.ndarray:
        if len(self.neg) == 1:
            buf = self.neg[0]
        else:
            dtype = np.result_type(*self.neg) if self.neg else np.float64
            buf = np.empty(sum(a.size for a in self.neg), dtype=dtype)
            i = 0
            while self.neg:  # move piece by piece so that memory is freed as we go
                a = self.neg.pop(0)
                buf[i : i + a.size] = a
                i += a.size
        buf.sort()
        self.neg = [buf]  # sorted once; a second compute reuses it
        return buf

    def summary(self) -> ranking.RankSummary:
        neg = self._sorted_negatives()
        pos = np.concatenate(self.pos) if self.pos else np.zeros(0)
        pos_w = np.concatenate(self.pos_w) if self.pos_w else np.zeros(0)
        if pos.dtype != neg.dtype:
            dt = np.result_type(pos, neg)
            pos = pos.astype(dt)
            if neg.dtype != dt:
                neg = neg.astype(dt)
        return ranking.summarize_sorted(neg, pos, pos_w, self.n_regions)


# ---------------------------------------------------------------------------- binned
def _float_keys(values: np.ndarray) -> np.ndarray:
    """Order-preserving uint32 keys of float32 values (-0.0 mapped to +0.0)."""
    v = np.asarray(values, dtype=np.float32) + np.float32(0.0)
    u = v.view(np.uint32)
    flip = (v.view(np.int32) >> 31).view(np.uint32) | np.uint32(0x80000000)
    return u ^ flip


def _key_to_float(keys: np.ndarray) -> np.ndarray:
    keys = keys.astype(np.uint32)
    neg = keys < np.uint32(0x80000000)
    u = np.where(neg, ~keys, keys ^ np.uint32(0x80000000)).astype(np.uint32)
    return u.view(np.float32).astype(np.float64)


@dataclass
class BinnedPixelState:
    """Histograms over bins of the float32 bit pattern: all pixels, positive pixels and
    positive region weights. ``base`` is the first bin held; arrays grow as needed and
    are coarsened (one mantissa bit less) if they would exceed ``max_bins``."""

    bits: int = 16
    max_bins: int = 1 << 22
    base: int = 0
    n_all: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    w_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    n_regions: int = 0
    n_images: int = 0

    @property
    def shift(self) -> int:
        return 23 - self.bits

    def _ensure(self, lo: int, hi: int) -> None:
        """Make bins ``lo..hi`` (inclusive, at the current resolution) addressable."""
        if self.n_all.size == 0:
            new_base, new_end = lo, hi + 1
        else:
            new_base = min(self.base, lo)
            new_end = max(self.base + self.n_all.size, hi + 1)
        while new_end - new_base > self.max_bins and self.bits > 0:
            self._coarsen()
            lo, hi = lo >> 1, hi >> 1
            new_base = min(self.base, lo) if self.n_all.size else lo
            new_end = max(self.base + self.n_all.size, hi + 1) if self.n_all.size else hi + 1
        if self.n_all.size and new_base == self.base and new_end == self.base + self.n_all.size:
            return
        size = new_end - new_base
        off = self.base - new_base
        for name, dt in (("n_all", np.int64), ("n_pos", np.int64), ("w_pos", np.float64)):
            old = getattr(self, name)
            arr = np.zeros(size, dt)
            arr[off : off + old.size] = old
            setattr(self, name, arr)
        self.base = new_base

    def _coarsen(self) -> None:
        """Halve the resolution: merge bins 2k and 2k+1 (exact for counts)."""
        if self.n_all.size:
            idx = ((np.arange(self.n_all.size) + self.base) >> 1) - (self.base >> 1)
            size = int(idx[-1]) + 1
            self.n_all = np.bincount(idx, self.n_all, size).astype(np.int64)
            self.n_pos = np.bincount(idx, self.n_pos, size).astype(np.int64)
            self.w_pos = np.bincount(idx, self.w_pos, size)
            self.base >>= 1
        self.bits -= 1

    def _bins(self, values: np.ndarray) -> np.ndarray:
        return (_float_keys(values.ravel()) >> np.uint32(self.shift)).astype(np.int64)

    def update(self, mask: np.ndarray, amap: np.ndarray) -> None:
        for m, a in _chunks(mask, amap):
            b = self._bins(a)
            lo, hi = int(b.min()), int(b.max())
            bits = self.bits
            self._ensure(lo, hi)
            if self.bits != bits:  # coarsened to stay within max_bins
                b = self._bins(a)
                lo, hi = int(b.min()), int(b.max())
            b -= lo
            s0 = lo - self.base
            self.n_all[s0 : s0 + hi - lo + 1] += np.bincount(b, minlength=hi - lo + 1)
            mflat = m.ravel()
            bp = b[mflat]
            if bp.size:
                w, n = positive_weights(m)
                self.n_pos[s0 : s0 + hi - lo + 1] += np.bincount(bp, minlength=hi - lo + 1)
                self.w_pos[s0 : s0 + hi - lo + 1] += np.bincount(bp, w, minlength=hi - lo + 1)
                self.n_regions += n
            self.n_images += 1 if m.ndim == 2 else m.shape[0]

    def merge(self, other: BinnedPixelState) -> BinnedPixelState:
        a = BinnedPixelState(
            self.bits,
            self.max_bins,
            self.base,
            self.n_all.copy(),
            self.n_pos.copy(),
            self.w_pos.copy(),
            self.n_regions,
            self.n_images,
        )
        b = BinnedPixelState(
            other.bits,
            other.max_bins,
            other.base,
            other.n_all.copy(),
            other.n_pos.copy(),
            other.w_pos.copy(),
            other.n_regions,
            other.n_images,
        )
        while a.bits > b.bits:
            a._coarsen()
        while b.bits > a.bits:
            b._coarsen()
        if b.n_all.size:
            a._ensure(b.base, b.base + b.n_all.size - 1)
            while a.bits > b.bits:  # a coarsened to fit; follow it
                b._coarsen()
                a._ensure(b.base, b.base + b.n_all.size - 1)
            s0 = b.base - a.base
            sl = slice(s0, s0 + b.n_all.size)
            a.n_all[sl] += b.n_all
            a.n_pos[sl] += b.n_pos
            a.w_pos[sl] += b.w_pos
        a.n_regions += b.n_regions
        a.n_images += b.n_images
        return a

    def summary(self) -> ranking.RankSummary:
        neg = self.n_all - self.n_pos
        neg_ge = np.cumsum(neg[::-1])[::-1]
        neg_gt = neg_ge - neg
        keep = np.flatnonzero(self.n_pos > 0)[::-1]  # descending score
        edges = _key_to_float((keep + self.base).astype(np.uint64) << self.shift)
        return ranking.RankSummary(
            thresholds=edges,
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
        bits: int = 16,
        max_bins: int = 1 << 22,
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
        self.max_bins = int(max_bins)
        self.curves = curves
        self.curve_points = int(curve_points)

    def init(self):
        if self.mode == "exact":
            return ExactPixelState()
        return BinnedPixelState(bits=self.bits, max_bins=self.max_bins)

    def update(self, state, masks, maps):
        for m, a in paired(masks, maps):
            state.update(m, a)
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
        if self.curves:
            rx, ry = ranking.roc_points(s)
            out["roc_curve"] = _downsample(rx, ry, self.curve_points)
            out["pro_curve"] = _downsample(fx, fy, self.curve_points)
        return out


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
