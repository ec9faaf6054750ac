"""Localisation of explanations: attribution maps against ground-truth anomaly masks.

Inputs: ``masks`` and ``attributions`` are both an ``(N, H, W)`` array, one ``(H, W)``
array, or a sequence of 2-D arrays whose sizes may differ. Masks are bool or 0/1;
attributions are real, finite, one channel (reduce channels first, e.g. the sum of
``|a|``, and say which) and **already at the mask's native resolution**
(:func:`xeval.metrics.resize_to`); any shape mismatch raises
:class:`~xeval.errors.InputError` naming both shapes. Attributions are used as given
(signed): no abs, no clamping, no per-batch normalisation. Every metric below is
invariant to per-image positive scaling (pointing game, relevance rank and top-k
intersection to any strictly increasing transform of the map), so per-sample
normalisation is unnecessary and none is applied.

Per image (all **higher is better**, in ``[0, 1]``):

- **Pointing game** (Zhang et al. 2018, "Top-down neural attention by excitation
  backprop", IJCV): a hit (1) when the maximum of the map lies within ``tolerance``
  pixels (Euclidean distance to the nearest mask pixel ``<= tolerance``) of the mask,
  else a miss (0). Ties for the maximum: see :func:`pointing_game_per_image`.
- **Relevance mass accuracy** (Arras et al. 2022, "CLEVR-XAI", Information Fusion):
  ``sum_{GT} a+ / sum a+`` with ``a+ = max(a, 0)``.
- **Relevance rank accuracy** (Arras et al. 2022): ``|top_K(a) ∩ GT| / |GT|`` with
  ``K = |GT|``; ties at the K-th value counted fractionally (expected overlap under a
  uniformly random order of the tied pixels).
- **Top-k intersection** (Theiner et al. 2021, as Quantus ``TopKIntersection``):
  ``|top_k(a) ∩ GT| / k``, same tie rule.

Undefined values are NaN, never hits and never zeros: every metric is NaN for an image
with an empty mask (a normal image: there is nothing to localise; excluded from the
mean explicitly, unlike Quantus 0.6 whose pointing game counts them as hits); the
pointing game is also NaN for a constant map (e.g. all zeros: it has no maximum), and
relevance mass for a map without positive attribution, each with an
:class:`~xeval.errors.UndefinedMetricWarning` naming the images. The set-level value is
the mean over the images where the metric is defined; the per-image functions and
:class:`LocalisationMetrics` keep every image's value for bootstrap CIs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from xeval.errors import InputError
from xeval.metrics._validation import (
    check_ids,
    exact_mean,
    extend_ids,
    merged_ids,
    paired,
    pow2_scale,
    undefined,
)
from xeval.metrics.base import PerImageMetric
from xeval.registry import METRICS

#: Direction of every localisation metric (all: higher is better).
HIGHER_IS_BETTER = {
    "pointing_game": True,
    "relevance_mass": True,
    "relevance_rank": True,
    "top_k_intersection": True,
}

_TIES = ("all", "any", "fraction")
_FLAT = (
    "the attribution map is constant (e.g. all zeros): it has no maximum to point with; "
    "not counted as a hit"
)
_NO_POSITIVE = "the attribution map has no positive value (sum of max(a, 0) is 0)"


# --------------------------------------------------------------------------- helpers
def _stacks(masks, attributions):
    """Checked ``(n, H, W)`` (mask bool, attribution float) stacks: one for a 3-D
    input, one per image for a sequence of 2-D arrays."""
    for m, a in paired(masks, attributions, maps_name="attributions"):
        if m.ndim == 2:
            m, a = m[None], a[None]
        yield m.reshape(len(m), -1), a.reshape(len(a), -1), m.shape


def _warn_undefined(metric: str, bad: np.ndarray, why: str) -> None:
    idx = np.flatnonzero(bad)
    if idx.size:
        shown = ", ".join(map(str, idx[:10].tolist())) + (", ..." if idx.size > 10 else "")
        undefined(f"{metric} for {idx.size} image(s) (index {shown})", why)


def _mean(metric: str, values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return undefined(metric, "no image with a non-empty mask where it is defined")
    return exact_mean(v)  # exact: independent of the image order


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
        raise InputError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    t = float(tolerance)
    if not (math.isfinite(t) and t >= 0):
        raise InputError(f"tolerance must be a finite number of pixels >= 0, got {tolerance!r}")
    return t


def _check_ties(ties) -> str:
    if ties not in _TIES:
        raise InputError(f"ties must be one of {_TIES}, got {ties!r}")
    return ties


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise InputError(
            f"k must be a pixel count (int >= 1) or a fraction of the image (0 < k < 1), got {k!r}"
        )
    if isinstance(k, numbers.Integral):
        if k < 1:
            raise InputError(f"k must be >= 1 pixel, got {k!r}")
        return int(k)
    k = float(k)
    if not 0.0 < k < 1.0:
        raise InputError(
            f"a float k is a fraction of the image's pixels and must lie in (0, 1), got {k!r}; "
            "pass an int for a pixel count"
        )
    return k


def _expected_top_overlap(m: np.ndarray, a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Expected ``|top_k(a_i) ∩ m_i|`` per row when the pixels tied at the k-th largest
    value are ordered uniformly at random (``m``, ``a``: ``(n, P)``; ``1 <= k <= P``)."""
    n, p = a.shape
    if np.all(k == k[0]):  # one k for all rows: a linear-time partition suffices
        kth = np.partition(a, p - k[0], axis=1)[:, p - k[0], None]
    else:
        kth = np.sort(a, axis=1)[np.arange(n), p - k][:, None]  # the k-th largest value
    above = a > kth
    tied = a == kth
    n_above = above.sum(1)
    n_tied = tied.sum(1)  # >= 1: the k-th value itself
    gt_above = (above & m).sum(1)
    gt_tied = (tied & m).sum(1)
    # k - n_above of the n_tied tied pixels are drawn into the top k
    return gt_above + (k - n_above) * gt_tied / n_tied


# ------------------------------------------------------------------- pointing game
def _pointing(m, a, shape, tolerance: float, ties: str):
    ngt = m.sum(1)
    amax = a.max(1, keepdims=True)
    flat = (amax[:, 0] == a.min(1)) & (ngt > 0)
    is_max = a == amax
    if tolerance > 0 and ngt.any():
        n, h, w = shape
        # Euclidean distance of every pixel to the nearest mask pixel of its own image:
        # one 3-D transform whose step between images exceeds any in-image distance and
        # the tolerance, so a neighbouring image's mask is never the nearest within reach
        step = float(h + w) + tolerance + 1.0
        dist = ndimage.distance_transform_edt(~m.reshape(shape), sampling=(step, 1.0, 1.0))
        region = dist.reshape(n, -1) <= tolerance
    else:
        region = m
    if ties == "all":
        hit = ~(is_max & ~region).any(1)
        values = hit.astype(float)
    elif ties == "any":
        values = (is_max & region).any(1).astype(float)
    else:
        values = (is_max & region).sum(1) / is_max.sum(1)
    values[(ngt == 0) | flat] = np.nan
    return values, flat


def pointing_game_per_image(masks, attributions, *, tolerance=0, ties="all") -> np.ndarray:
    """Pointing-game hit (1.0) or miss (0.0) of each image; NaN where undefined.

    A hit when the maximum of the attribution map lies in the mask dilated by a disk of
    radius ``tolerance`` (Euclidean distance to the nearest mask pixel
    ``<= tolerance``; ``tolerance=0``: inside the mask). Zhang et al. (2018) use 15 px
    on PASCAL VOC / COCO; xeval defaults to 0 (anomaly masks are precise). TorchRay
    accepts a strict ``distance < tolerance``: its ``tolerance=15`` equals
    xeval's ``tolerance=14.99``.

    Parameters
    ----------
    masks, attributions
        ``(N, H, W)`` arrays or sequences of 2-D arrays of equal shapes (see module).
    tolerance : float, keyword-only
        Pixels of slack around the mask, ``>= 0``.
    ties : {"all", "any", "fraction"}, keyword-only
        When several pixels share the maximum. ``"all"`` (default, the strictest):
        a hit only if every maximal pixel lies in the (dilated) mask, so the result
        does not depend on the pixel order and a flat plateau spilling outside the
        mask is a miss; it is never above the first-argmax rule (TorchRay) nor the
        any-maximum rule (Quantus 0.6, under which a map with a large plateau scores
        hits for free). ``"any"``: Quantus's rule. ``"fraction"``: the expected hit
        under a uniformly random choice among the maximal pixels.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float: 1.0 hit, 0.0 miss (a fraction with ``ties="fraction"``), NaN for
        an empty mask (normal image; no warning) and for a constant map, all zeros
        included (no maximum: an :class:`~xeval.errors.UndefinedMetricWarning`).
        Higher is better.
    """
    tolerance = _check_tolerance(tolerance)
    ties = _check_ties(ties)
    vals, flats = [], []
    for m, a, shape in _stacks(masks, attributions):
        v, f = _pointing(m, a, shape, tolerance, ties)
        vals.append(v)
        flats.append(f)
    _warn_undefined(
        "pointing_game",
        np.concatenate(flats),
        _FLAT,
    )
    return np.concatenate(vals)


def pointing_game(masks, attributions, *, tolerance=0, ties="all") -> float:
    """Pointing-game accuracy: the fraction of hits over the images with a non-empty
    mask and a non-constant map (see :func:`pointing_game_per_image`; higher is
    better; Zhang et al. 2018).

    Deviation from Quantus 0.6 ``PointingGame``: Quantus writes NaN into a boolean
    array for empty masks, which turns them into hits; it uses the any-maximum tie
    rule (``ties="any"`` here) and so also scores a constant map as a hit; and it
    has no tolerance.
    """
    return _mean(
        "pointing_game",
        pointing_game_per_image(masks, attributions, tolerance=tolerance, ties=ties),
    )


# ------------------------------------------------------------------ relevance mass
def _mass(m, a):
    ngt = m.sum(1)
    # a ratio of sums: rescale each map by a power of two (exact) so that maps near the
    # float limits neither overflow (inf / inf) nor underflow
    ap = np.maximum(a, 0) * pow2_scale(np.abs(a).max(1, initial=0.0))[:, None]
    total = ap.sum(1, dtype=np.float64)
    within = np.where(m, ap, 0).sum(1, dtype=np.float64)
    none = (total == 0) & (ngt > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = within / total
    values[(ngt == 0) | none] = np.nan
    return values, none


def relevance_mass_per_image(masks, attributions) -> np.ndarray:
    """Relevance mass accuracy of each image: ``sum_{GT} a+ / sum a+``,
    ``a+ = max(a, 0)`` (Arras et al. 2022, CLEVR-XAI). Higher is better, in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float; NaN for an empty mask (no warning) and for a map without
        positive attribution (``sum a+ == 0``: an
        :class:`~xeval.errors.UndefinedMetricWarning`).
    """
    vals, nones = [], []
    for m, a, _ in _stacks(masks, attributions):
        v, n = _mass(m, a)
        vals.append(v)
        nones.append(n)
    _warn_undefined(
        "relevance_mass",
        np.concatenate(nones),
        _NO_POSITIVE,
    )
    return np.concatenate(vals)


def relevance_mass(masks, attributions) -> float:
    """Relevance mass accuracy averaged over the images where it is defined (see
    :func:`relevance_mass_per_image`; higher is better; Arras et al. 2022).

    Deviation from Quantus 0.6 ``RelevanceMassAccuracy``: Quantus divides the signed
    sums ``sum_{GT} a / sum a`` (the paper's positive part only with ``abs=True``,
    which folds negative relevance in instead), so on signed maps it can leave [0, 1];
    on non-negative maps the two agree.
    """
    return _mean("relevance_mass", relevance_mass_per_image(masks, attributions))


# ------------------------------------------------------------------ relevance rank
def _rank(m, a):
    ngt = m.sum(1)
    values = np.full(len(m), np.nan)
    ok = ngt > 0
    if ok.any():
        k = ngt[ok]
        values[ok] = _expected_top_overlap(m[ok], a[ok], k) / k
    return values


def relevance_rank_per_image(masks, attributions) -> np.ndarray:
    """Relevance rank accuracy of each image: ``|top_K(a) ∩ GT| / |GT|`` with
    ``K = |GT|`` (Arras et al. 2022, CLEVR-XAI). Higher is better, in [0, 1].

    Ties at the K-th largest value are counted fractionally: of the ``T`` pixels tied
    there, ``K - (number above)`` enter the top K, each tied GT pixel with probability
    ``(K - above) / T`` -- the expected overlap under a uniformly random order of the
    tied pixels. This is deterministic and order-free; a constant map scores the chance
    level ``|GT| / (H W)`` (so does a random map in expectation).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float; NaN for an empty mask.
    """
    return np.concatenate([_rank(m, a) for m, a, _ in _stacks(masks, attributions)])


def relevance_rank(masks, attributions) -> float:
    """Relevance rank accuracy averaged over the images with a non-empty mask (see
    :func:`relevance_rank_per_image`; higher is better; Arras et al. 2022).

    Deviation from Quantus 0.6 ``RelevanceRankAccuracy``: Quantus breaks ties by
    ``np.argsort`` (an unspecified order, in practice row-major position), so a map with
    plateaus scores according to where the mask sits in the image; xeval counts ties
    fractionally. Without ties the two agree.
    """
    return _mean("relevance_rank", relevance_rank_per_image(masks, attributions))


# -------------------------------------------------------------- top-k intersection
def _topk(m, a, shape, k):
    n, h, w = shape
    p = h * w
    kk = k if isinstance(k, int) else max(1, math.ceil(k * p - 1e-9))
    if kk > p:
        raise InputError(
            f"k = {kk} exceeds the {p} pixels of an attribution map of shape {(h, w)}; "
            "pass a smaller k or a fraction 0 < k < 1"
        )
    values = np.full(n, np.nan)
    ok = m.sum(1) > 0
    if ok.any():
        values[ok] = _expected_top_overlap(m[ok], a[ok], np.full(int(ok.sum()), kk)) / kk
    return values


def top_k_intersection_per_image(masks, attributions, *, k=0.05) -> np.ndarray:
    """Top-k intersection of each image: ``|top_k(a) ∩ GT| / k`` (Theiner et al. 2021,
    as Quantus ``TopKIntersection`` without concept influence). Higher is better.

    Parameters
    ----------
    k : int or float, keyword-only
        A float in (0, 1): a fraction of each image's pixels,
        ``k_i = ceil(k * H_i * W_i)`` (default 0.05: 5% of the pixels, comparable across
        resolutions). An int: a pixel count (Quantus' default is 1000; an image with
        fewer pixels raises :class:`~xeval.errors.InputError`).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float in ``[0, min(1, |GT| / k)]`` (an oracle map scores 1 only when
        ``k <= |GT|``); NaN for an empty mask. Ties at the k-th value are counted
        fractionally as in :func:`relevance_rank_per_image`.
    """
    k = _check_k(k)
    return np.concatenate([_topk(m, a, shape, k) for m, a, shape in _stacks(masks, attributions)])


def top_k_intersection(masks, attributions, *, k=0.05) -> float:
    """Top-k intersection averaged over the images with a non-empty mask (see
    :func:`top_k_intersection_per_image`; higher is better).

    Deviation from Quantus 0.6 ``TopKIntersection``: ties broken by ``np.argsort``
    there (position-dependent), fractionally here; identical without ties.
    """
    return _mean("top_k_intersection", top_k_intersection_per_image(masks, attributions, k=k))


# ---------------------------------------------------------------------------- state
@dataclass
class LocalisationState:
    """Per-image values (NaN where undefined) and ids, in update order."""

    ids: list = field(default_factory=list)
    pointing_game: list = field(default_factory=list)
    relevance_mass: list = field(default_factory=list)
    relevance_rank: list = field(default_factory=list)
    top_k_intersection: list = field(default_factory=list)

    def merge(self, o: LocalisationState) -> LocalisationState:
        return LocalisationState(
            merged_ids(self.ids, o.ids, "merging localisation states"),
            self.pointing_game + o.pointing_game,
            self.relevance_mass + o.relevance_mass,
            self.relevance_rank + o.relevance_rank,
            self.top_k_intersection + o.top_k_intersection,
        )


class LocalisationMetrics:
    """Mergeable pointing game, relevance mass, relevance rank and top-k intersection.

    Keeps every image's value (NaN where undefined) so that the engine can bootstrap
    confidence intervals and run paired tests. ``compute`` returns, per metric
    ``name`` in :attr:`names`: ``name`` (the mean over defined images, order-exact),
    ``name + "_per_image"`` (``(N,)`` array in update order) and ``"n/" + name``
    (the number of defined images), plus ``"ids"``.

    Parameters
    ----------
    tolerance, ties
        Pointing-game options (:func:`pointing_game_per_image`).
    k
        Top-k option (:func:`top_k_intersection_per_image`); default 5% of the pixels.
    """

    names = ("pointing_game", "relevance_mass", "relevance_rank", "top_k_intersection")
    higher_is_better = HIGHER_IS_BETTER

    def __init__(self, *, tolerance=0, ties="all", k=0.05):
        self.tolerance = _check_tolerance(tolerance)
        self.ties = _check_ties(ties)
        self.k = _check_k(k)

    def init(self) -> LocalisationState:
        return LocalisationState()

    def update(self, state: LocalisationState, masks, attributions, ids=None):
        cols: dict = {name: [] for name in self.names}
        flat, no_pos = [], []
        for m, a, shape in _stacks(masks, attributions):  # inputs checked once
            v, f = _pointing(m, a, shape, self.tolerance, self.ties)
            cols["pointing_game"].append(v)
            flat.append(f)
            v, f = _mass(m, a)
            cols["relevance_mass"].append(v)
            no_pos.append(f)
            cols["relevance_rank"].append(_rank(m, a))
            cols["top_k_intersection"].append(_topk(m, a, shape, self.k))
        cols = {name: np.concatenate(v) for name, v in cols.items()}
        n = len(cols["pointing_game"])
        ids = check_ids(ids, n, "LocalisationMetrics.update")
        extend_ids(list(state.ids), ids, "LocalisationMetrics.update")
        _warn_undefined("pointing_game", np.concatenate(flat), _FLAT)
        _warn_undefined("relevance_mass", np.concatenate(no_pos), _NO_POSITIVE)
        for name, v in cols.items():
            getattr(state, name).extend(v.tolist())
        state.ids.extend(ids)
        return state

    @staticmethod
    def merge(a: LocalisationState, b: LocalisationState) -> LocalisationState:
        return a.merge(b)

    def compute(self, state: LocalisationState) -> dict:
        out: dict = {"ids": list(state.ids)}
        for name in self.names:
            per = np.asarray(getattr(state, name), dtype=float)
            out[name + "_per_image"] = per
            out["n/" + name] = int(np.count_nonzero(~np.isnan(per)))
            out[name] = _mean(name, per)
        return out


# ------------------------------------------------------------------ registered metrics
_EXCLUDED = "mean over anomalous images (empty masks excluded); maps at mask resolution"


class _MaskMetric(PerImageMetric):
    family = "localisation"
    needs = frozenset({"masks"})
    higher_is_better = True
    excluded_note = _EXCLUDED


def _chance(masks, values: np.ndarray, tolerance: float = 0.0) -> tuple[np.ndarray, list]:
    """Replace NaN values of anomalous images (a degenerate map: constant, or without
    positive attribution) by the chance level -- the share of pixels that count as a hit
    (the mask, dilated by ``tolerance``) -- and say so in the reasons."""
    out = np.asarray(values, dtype=float).copy()
    reasons: list = [None] * len(out)
    for i, m in enumerate(masks):
        m = np.asarray(m, dtype=bool)
        if not np.isnan(out[i]) or not m.any():
            continue
        if tolerance > 0:
            hit = ndimage.distance_transform_edt(~m) <= tolerance
        else:
            hit = m
        out[i] = float(hit.mean())
        reasons[i] = "degenerate map scored at chance level"
    return out, reasons


@METRICS.register
class PointingGame(_MaskMetric):
    """Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation
    backprop", IJCV): per anomalous image, a hit (1) when the maximum of the map lies
    within ``tolerance`` pixels of the mask, else 0 (``ties="all"``: every maximal pixel
    must lie in the mask); the mean over anomalous images. Empty masks are NaN (never
    hits); a constant map has no maximum and is scored at chance level (the share of
    pixels that would be a hit), so degenerate maps can neither be excluded nor count
    as hits. **Higher is better.**"""

    name = "pointing_game"
    headline = 2

    def __init__(
        self,
        *,
        tolerance: float = 0,
        ties: Literal["all", "any", "fraction"] = "all",
    ) -> None:
        self.tolerance = _check_tolerance(tolerance)
        self.ties = _check_ties(ties)

    def values(self, record, explanation):
        v = pointing_game_per_image(
            record.targets.masks, explanation.native, tolerance=self.tolerance, ties=self.ties
        )
        return _chance(record.targets.masks, v, self.tolerance)

    def note(self) -> str:
        return f"{_EXCLUDED}; a constant map is scored at chance level (the share of hit pixels)"


@METRICS.register
class RelevanceMass(_MaskMetric):
    """Relevance mass accuracy (Arras et al. 2022, "CLEVR-XAI", Information Fusion):
    ``sum_GT a+ / sum a+`` with ``a+ = max(a, 0)`` per anomalous image, averaged; NaN for
    an empty mask; a map without positive attribution is scored at chance level
    (``|GT| / N``, what a uniform map gets). **Higher is better**, in [0, 1]."""

    name = "relevance_mass"
    headline = 2

    def values(self, record, explanation):
        v = relevance_mass_per_image(record.targets.masks, explanation.native)
        return _chance(record.targets.masks, v)

    def note(self) -> str:
        return f"{_EXCLUDED}; a map without positive attribution is scored at chance (|GT| / N)"


@METRICS.register
class RelevanceRank(_MaskMetric):
    """Relevance rank accuracy (Arras et al. 2022, "CLEVR-XAI"): ``|top_K(a) ∩ GT| / |GT|``
    with ``K = |GT|`` per anomalous image (ties at the K-th value counted fractionally),
    averaged. **Higher is better**, in [0, 1]."""

    name = "relevance_rank"
    headline = 2

    def values(self, record, explanation):
        return relevance_rank_per_image(record.targets.masks, explanation.native)


@METRICS.register
class TopKIntersection(_MaskMetric):
    """Top-k intersection (Theiner et al. 2021, as Quantus ``TopKIntersection``):
    ``|top_k(a) ∩ GT| / k`` per anomalous image, averaged; ``k`` a pixel count or a
    fraction of the image (default 5%). **Higher is better.**"""

    name = "top_k_intersection"

    def __init__(self, *, k: int | float = 0.05) -> None:
        self.k = _check_k(k)

    def note(self) -> str:
        if isinstance(self.k, int):
            return f"{_EXCLUDED}; k = {self.k} pixels"
        return f"{_EXCLUDED}; k = {self.k * 100:g}% of the pixels"

    def values(self, record, explanation):
        return top_k_intersection_per_image(record.targets.masks, explanation.native, k=self.k)
