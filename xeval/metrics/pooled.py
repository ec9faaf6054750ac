"""Per-image sufficient statistics of the pooled pixel metrics, and the metrics on
*weighted* sets of images (for the image bootstrap of pooled metrics).

Pixel AUROC, pixel AUPR and AUPRO@L are pooled over the pixels of a set: they are not
means of per-image values, so a per-image paired bootstrap does not apply. They are,
however, functions of a few per-image histograms on a common grid of score bins:

- ``neg[i, k]``: normal (mask-free) pixels of image ``i`` whose score falls in bin ``k``;
- ``pos[i, k]``: anomalous pixels of image ``i`` in bin ``k``;
- ``cov[i, k]``: the sum over those anomalous pixels of ``1 / |their region|`` (regions
  = 8-connected components of the image's mask, as in :mod:`xeval.metrics.pixel`), so
  ``sum_k cov[i, k]`` is the number of regions of image ``i`` and a region's coverage
  at a threshold is what its pixels at or above it contribute;
- ``n_regions[i]``.

Given image weights ``c`` (a bootstrap resample counts each image ``c_i`` times), the
set's statistics are ``c @ neg``, ``c @ pos``, ``c @ cov`` and ``c @ n_regions``, and
the metrics follow in closed form (:func:`weighted_auroc`, :func:`weighted_aupr`,
:func:`weighted_aupro`). With ``B`` resamples the weights are a ``(B, n_images)``
matrix and the whole bootstrap is three matrix products and cumulative sums: no loop
over resamples.

Binning
-------
During the stream each image keeps a *fine* histogram of its scores
(:func:`fine_keys`: scores within a relative 0.1% share a fine bin; at most ``2**10``
entries per binade the image's scores span, never a copy of the map). At the end the
grid (:func:`grid_edges`) is fixed per set (one category, one explainer) on the pooled
fine histograms: when they hold at most ``bins`` distinct values, every value is its own
bin; otherwise the lower edges are ``bins / 2`` quantiles of the normal-pixel scores and
``bins / 2`` quantiles of the anomalous-pixel scores (so that each bin spans at most
about ``2 / bins`` of the FPR axis and of the TPR axis). Every bin acts as **one tied
score** (ties count 1/2 in the AUROC, a tied block is one threshold of the PR and PRO
curves): bootstrap replicates are the metrics of the *binned* maps, within about
``1 / bins`` of the exact values (for the AUROC the error is at most half the sum over
bins of ``ΔFPR * ΔTPR``). The point estimates of ``results.csv`` are computed exactly
by :mod:`xeval.metrics.pixel`, never from these.

Exactness: on maps whose values are their own bins (few distinct values, e.g. small
integers), weights of ones give the exact definitions of :mod:`xeval.metrics.pixel` and
integer weights give the exact metric of the set in which each image is repeated that
many times (both tested to 1e-12).

References: the definitions of :mod:`xeval.metrics.pixel` (Bergmann et al., IJCV 2021
for AUPRO); the cluster (image) bootstrap: Davison & Hinkley (1997), *Bootstrap
Methods and their Application*, sec. 3.8 (stratified and multi-stage resampling).
"""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import check_ids, extend_ids, merged_ids, paired
from xeval.metrics.regions import positive_weights

__all__ = [
    "PixelHistograms",
    "PixelHistogramCollector",
    "fine_keys",
    "grid_edges",
    "stratified_weights",
    "weighted_aupr",
    "weighted_aupro",
    "weighted_auroc",
]

DEFAULT_BINS = 512
"""Default number of score bins of a set's grid (see the module docstring)."""

FINE_BITS = 10
"""Resolution of the per-image fine histograms (:func:`fine_keys`): scores within a
relative ``2**-10`` (0.1%) of each other share a fine bin."""


# --------------------------------------------------------------------------- grid
def grid_edges(
    neg: np.ndarray,
    pos: np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    neg_counts: np.ndarray | None = None,
    pos_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Ascending inner edges of the score grid of a set: bin ``k`` holds the scores
    ``edges[k - 1] <= v < edges[k]`` (``np.searchsorted(edges, v, side="right")``).

    ``neg`` / ``pos``: the normal / anomalous pixel scores (or :func:`fine_keys`) of the
    whole set, each value counted ``neg_counts`` / ``pos_counts`` times (default once).
    At most ``bins`` distinct values: one bin per value (exact). Otherwise the union of
    ``bins // 2`` lower empirical quantiles of each class (observed values: the
    ``floor(q (n - 1))``-th smallest of the ``n`` counted values, ``q = 1/m, ..., 1``)."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InputError(f"bins must be an integer >= 2, got {bins!r}")
    classes = []
    for v, c in ((neg, neg_counts), (pos, pos_counts)):
        v = np.asarray(v).ravel()
        c = np.ones(v.size, np.int64) if c is None else np.asarray(c, np.int64).ravel()
        if c.shape != v.shape:
            raise InputError(f"counts must match the values: {c.shape} vs {v.shape}")
        keep = c > 0
        if keep.any():
            order = np.argsort(v[keep], kind="stable")
            classes.append((v[keep][order], np.cumsum(c[keep][order])))
    if not classes:
        return np.zeros(0, np.float64)
    distinct = np.unique(np.concatenate([v for v, _ in classes]))
    if distinct.size <= bins:
        return distinct[1:]
    q = np.arange(1, bins // 2 + 1) / (bins // 2)
    edges = []
    for v, cum in classes:
        rank = np.floor(q * (cum[-1] - 1)).astype(np.int64)  # 0-based rank of the quantile
        edges.append(v[np.searchsorted(cum, rank, side="right")])
    edges = np.unique(np.concatenate(edges))
    return edges[edges > distinct[0]]


def fine_keys(values: np.ndarray, *, bits: int = FINE_BITS) -> np.ndarray:
    """Order-preserving integer keys of scores, equal for scores within a relative
    ``2**-bits`` of each other (each float32 binade split into ``2**bits`` bins): the
    float32 bit pattern (negative scores reversed, ``-0.0`` as ``0.0``) shifted right by
    ``23 - bits``. ``a <= b`` implies ``key(a) <= key(b)``; float32 values with at most
    ``bits + 1`` significant bits (e.g. integers below ``2**(bits + 1)``) keep distinct
    keys."""
    v = np.asarray(values, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0
    u = v.view(np.uint32).astype(np.int64)
    key = np.where(u >= 2**31, (2**32 - 1) - u, u + 2**31)
    return key >> (23 - int(bits))


# ------------------------------------------------------------------- summaries
@dataclass
class PixelHistograms:
    """Per-image histograms of a set on one score grid (see the module docstring).

    ``neg``, ``pos``: ``(n_images, n_bins)`` int64 counts; ``cov``: ``(n_images,
    n_bins)`` float64 region-coverage weights; ``n_regions``: ``(n_images,)``;
    ``edges``: the grid's inner edges (``n_bins - 1``) as :func:`fine_keys`; ``ids``: the
    images, in row order."""

    kind = "pixel_histograms"

    edges: np.ndarray
    neg: np.ndarray
    pos: np.ndarray
    cov: np.ndarray
    n_regions: np.ndarray
    ids: list
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return int(self.neg.shape[0])

    @property
    def strata(self) -> np.ndarray:
        """``(n_images,)`` 1 for an image with anomalous pixels, 0 for one without (the
        strata of the image bootstrap)."""
        return (self.pos.sum(axis=1) > 0).astype(np.int64)

    def weighted(self, weights: np.ndarray):
        """``(neg, pos, cov, n_regions)`` of the weighted sets: ``weights`` is ``(B,
        n_images)`` (or ``(n_images,)``, one set); rows are bins in ascending score
        order. The last call is cached (the metrics of one summary share it)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim == 1:
            w = w[None]
        if w.ndim != 2 or w.shape[1] != self.n_images:
            raise InputError(
                f"weights must have shape (B, {self.n_images}) (one column per image of "
                f"the set), got {np.shape(weights)}"
            )
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise InputError("weights must be finite and non-negative")
        hit = self._cache.get("weighted")
        if hit is not None and hit[0].shape == w.shape and np.array_equal(hit[0], w):
            return hit[1]
        stack = self._cache.get("stack")
        if stack is None:  # one float64 matrix: a single BLAS product per weight matrix
            stack = np.concatenate(
                [self.neg, self.pos, self.cov, self.n_regions[:, None]], axis=1
            ).astype(np.float64)
            self._cache["stack"] = stack
        k = self.neg.shape[1]
        prod = w @ stack
        out = (prod[:, :k], prod[:, k : 2 * k], prod[:, 2 * k : 3 * k], prod[:, 3 * k])
        self._cache["weighted"] = (w.copy(), out)
        return out

    # ------------------------------------------------------------- serialisation
    def to_payload(self) -> dict:
        """A JSON-able dict (arrays as base64 of zlib-compressed ``.npy`` bytes, no
        pickle) that :meth:`from_payload` reads back exactly."""
        return {
            "kind": self.kind,
            "ids": [str(i) for i in self.ids],
            "arrays": {
                "edges": _pack(self.edges.astype(np.int64)),
                "neg": _pack(_narrow(self.neg)),
                "pos": _pack(_narrow(self.pos)),
                "cov": _pack(self.cov.astype(np.float64)),
                "n_regions": _pack(_narrow(self.n_regions)),
            },
        }

    @classmethod
    def from_payload(cls, payload: dict) -> PixelHistograms:
        if not isinstance(payload, dict) or payload.get("kind") != cls.kind:
            got = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
            raise InputError(f"not a {cls.kind!r} summary (kind {got!r})")
        a = {k: _unpack(v) for k, v in payload["arrays"].items()}
        out = cls(
            edges=a["edges"].astype(np.int64),
            neg=a["neg"].astype(np.int64),
            pos=a["pos"].astype(np.int64),
            cov=a["cov"].astype(np.float64),
            n_regions=a["n_regions"].astype(np.int64),
            ids=list(payload["ids"]),
        )
        n, k = out.neg.shape
        if out.pos.shape != (n, k) or out.cov.shape != (n, k) or out.n_regions.shape != (n,):
            raise InputError(f"damaged {cls.kind!r} summary: array shapes disagree")
        return out


def _narrow(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.size and int(a.max()) >= 2**31:
        return a.astype(np.int64)
    return a.astype(np.int32)


def _pack(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return base64.b64encode(zlib.compress(buf.getvalue(), 6)).decode("ascii")


def _unpack(s: str) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(s.encode("ascii"), validate=True))
    return np.load(io.BytesIO(raw), allow_pickle=False)


SUMMARY_KINDS = {PixelHistograms.kind: PixelHistograms}
"""Summary classes by ``kind`` (the ``"kind"`` of a payload)."""


def summary_from_payload(payload: dict):
    """The summary object of a payload written by its ``to_payload``."""
    kind = payload.get("kind") if isinstance(payload, dict) else None
    if kind not in SUMMARY_KINDS:
        raise InputError(
            f"unknown pooled summary kind {kind!r}; expected one of {sorted(SUMMARY_KINDS)}"
        )
    return SUMMARY_KINDS[kind].from_payload(payload)


# ------------------------------------------------------------------- collector
class PixelHistogramCollector:
    """Collects, per image, a fine histogram of its normal and of its anomalous pixel
    scores (:func:`fine_keys`: scores within 0.1% share a fine bin) with the anomalous
    pixels' region weights, and builds :class:`PixelHistograms` on the set's grid at
    :meth:`finish` (the grid needs the whole set's scores). Memory per image: at most
    ``2**FINE_BITS`` entries per binade its scores span, never a copy of the map."""

    def __init__(self, *, bins: int = DEFAULT_BINS) -> None:
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
            raise InputError(f"bins must be an integer >= 2, got {bins!r}")
        self.bins = int(bins)
        self.ids: list = []
        self._images: list[tuple] = []  # (neg keys, counts, pos keys, counts, weights, regions)

    def update(self, masks, maps, ids: Sequence | None = None) -> PixelHistogramCollector:
        """Add images (``(N, H, W)`` arrays or sequences of 2-D arrays, maps at the
        masks' native size); ``ids``: one per image (an image added twice is refused)."""
        pairs = paired(masks, maps)
        n = sum(1 if m.ndim == 2 else m.shape[0] for m, _ in pairs)
        ids = check_ids(ids, n, "PixelHistogramCollector.update")
        extend_ids(list(self.ids), ids, "PixelHistogramCollector.update")
        for m, a in pairs:
            for mi, ai in zip(m if m.ndim == 3 else [m], a if a.ndim == 3 else [a], strict=True):
                w, nreg = positive_weights(mi)
                keys = fine_keys(ai.ravel())
                mask = np.asarray(mi, bool).ravel()
                kn, cn = np.unique(keys[~mask], return_counts=True)
                kp, inv, cp = np.unique(keys[mask], return_inverse=True, return_counts=True)
                wp = np.bincount(inv.ravel(), weights=w, minlength=kp.size)
                self._images.append((kn, cn, kp, cp, wp, int(nreg)))
        self.ids.extend(ids)
        return self

    def merge(self, other: PixelHistogramCollector) -> PixelHistogramCollector:
        if self.bins != other.bins:
            raise InputError(f"cannot merge collectors of {self.bins} and {other.bins} bins")
        out = PixelHistogramCollector(bins=self.bins)
        out.ids = merged_ids(self.ids, other.ids, "merging pixel-histogram collectors")
        out._images = self._images + other._images
        return out

    def finish(self) -> PixelHistograms:
        """The per-image histograms on the set's grid (:func:`grid_edges` of the pooled
        fine histograms)."""
        n = len(self._images)
        empty = np.zeros(0, np.int64)
        cols = list(zip(*self._images, strict=True)) if n else [[empty]] * 6
        edges = grid_edges(
            np.concatenate(cols[0]),
            np.concatenate(cols[2]),
            bins=self.bins,
            neg_counts=np.concatenate(cols[1]),
            pos_counts=np.concatenate(cols[3]),
        ).astype(np.int64)
        k = edges.size + 1
        hn = np.zeros((n, k), np.int64)
        hp = np.zeros((n, k), np.int64)
        hc = np.zeros((n, k), np.float64)
        for i, (kn, cn, kp, cp, wp, _) in enumerate(self._images):
            hn[i] = np.bincount(np.searchsorted(edges, kn, side="right"), cn, minlength=k)
            if kp.size:
                bp = np.searchsorted(edges, kp, side="right")
                hp[i] = np.bincount(bp, cp, minlength=k)
                hc[i] = np.bincount(bp, wp, minlength=k)
        return PixelHistograms(
            edges=edges,
            neg=hn,
            pos=hp,
            cov=hc,
            n_regions=np.asarray([im[5] for im in self._images], np.int64).reshape(n),
            ids=list(self.ids),
        )


# ------------------------------------------------------------ weighted metrics
def _descending(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)[..., ::-1]


def weighted_auroc(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Pixel AUROC of weighted binned sets: ``(B, K)`` (or ``(K,)``) pixel counts per
    bin, ascending score; each bin one tied score (ties count 1/2):
    ``sum_k pos_k (neg_{<k} + neg_k / 2) / (P N)``. NaN where a set has no anomalous or
    no normal pixel."""
    neg = np.asarray(neg, np.float64)
    pos = np.asarray(pos, np.float64)
    below = np.cumsum(neg, axis=-1) - neg
    p, n = pos.sum(axis=-1), neg.sum(axis=-1)
    num = np.sum(pos * (2.0 * below + neg), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p > 0) & (n > 0), num / (2.0 * p * n), np.nan)


def weighted_aupr(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` of weighted binned sets, one
    threshold per bin (scikit-learn's definition on the binned scores). NaN where a set
    has no anomalous or no normal pixel."""
    nd, pd_ = _descending(neg), _descending(pos)
    tp = np.cumsum(pd_, axis=-1)
    fp = np.cumsum(nd, axis=-1)
    p, n = tp[..., -1], fp[..., -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(pd_ > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        return np.where((p > 0) & (n > 0), np.sum(pd_ * prec, axis=-1) / p, np.nan)


def weighted_aupro(
    neg: np.ndarray, cov: np.ndarray, n_regions: np.ndarray, *, fpr_limit: float = 0.3
) -> np.ndarray:
    """AUPRO@L of weighted binned sets: the PRO curve through ``(FPR_k, PRO_k)`` after
    each bin in descending score order (``FPR_k`` = normal pixels at or above the bin /
    all normal pixels, ``PRO_k`` = covered region weight / regions, clipped at 1), from
    (0, 0) to (1, 1), trapezoidal area up to FPR = L (value at L interpolated) divided
    by L -- :func:`xeval.metrics.ranking.area_to` on :func:`~xeval.metrics.ranking.
    pro_points`, one bin per tied block. NaN where a set has no region or no normal
    pixel."""
    if not 0 < float(fpr_limit) <= 1:
        raise InputError(f"fpr_limit must lie in (0, 1], got {fpr_limit!r}")
    lim = float(fpr_limit)
    nd, cd = _descending(neg), _descending(cov)
    regions = np.asarray(n_regions, np.float64)
    cum_n = np.cumsum(nd, axis=-1)
    n = cum_n[..., -1:]
    ok = (n[..., 0] > 0) & (regions > 0)
    lead = np.zeros(cum_n.shape[:-1] + (1,))
    one = np.ones_like(lead)
    x = np.concatenate([lead, np.minimum(cum_n / np.where(n > 0, n, 1.0), 1.0), one], axis=-1)
    # only segments starting below L count: keep the points up to the last such start
    j = int((x < lim).sum(axis=-1).max())
    x = x[..., : j + 1]
    pro = np.cumsum(cd[..., : min(j, cd.shape[-1])], axis=-1)
    pro /= np.where(regions > 0, regions, 1.0)[..., None]
    y = np.concatenate([lead, np.minimum(pro, 1.0), one], axis=-1)[..., : j + 1]
    x0, x1, y0, y1 = x[..., :-1], x[..., 1:], y[..., :-1], y[..., 1:]
    cut = x1 > lim
    with np.errstate(invalid="ignore", divide="ignore"):
        y_end = np.where(cut, y0 + (y1 - y0) * (lim - x0) / np.where(cut, x1 - x0, 1.0), y1)
    x_end = np.minimum(x1, lim)
    area = np.where(x0 < lim, 0.5 * (y0 + y_end) * (x_end - x0), 0.0).sum(axis=-1) / lim
    return np.where(ok, area, np.nan)


# ------------------------------------------------------------------- resampling
def stratified_weights(strata: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` bootstrap counts: within each stratum (e.g. normal / anomalous
    images) its images are drawn with replacement as many times as it holds, so every
    resample keeps the stratum sizes (Davison & Hinkley 1997, sec. 3.8)."""
    strata = np.asarray(strata)
    out = np.zeros((int(n_boot), strata.size), np.float64)
    for s in np.unique(strata):
        cols = np.flatnonzero(strata == s)
        out[:, cols] = rng.multinomial(cols.size, np.full(cols.size, 1.0 / cols.size), n_boot)
    return out
