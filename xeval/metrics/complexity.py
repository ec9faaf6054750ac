"""Complexity of explanations: how concentrated an attribution map is (no mask needed).

Input: ``attributions`` is an ``(N, H, W)`` array, one ``(H, W)`` array or a sequence
of 2-D arrays whose sizes may differ (one channel: reduce channels first and say how);
real and finite, else :class:`~xeval.errors.InputError`. Both metrics work on ``|a|``
of each image separately and are invariant to its positive scaling, so no
normalisation is applied (and none across the batch).

Per image:

- **Gini sparseness** (Chalasani et al. 2020, "Concise explanations of neural networks
  using adversarial training", ICML; Hurley & Rickard 2009): with ``x`` the ``n = H W``
  values of ``|a|`` sorted ascending, ``G = sum_i (2 i - n - 1) x_i / (n sum_i x_i)``,
  ``i = 1..n``. 0 for a uniform map, ``(n - 1) / n`` (-> 1) when one pixel holds all
  the attribution. Higher = sparser.
- **Entropy** (Bhatt et al. 2020, "Evaluating and aggregating feature-based model
  explanations", IJCAI): Shannon entropy in nats of ``p = |a| / sum |a|``,
  ``H = -sum p ln p`` with ``0 ln 0 = 0``; in ``[0, ln n]``: 0 when one pixel holds
  everything, ``ln n`` for a uniform map. Lower = simpler. It grows with the number of
  pixels: compare maps at the same resolution.

Both are NaN for an all-zero map (no distribution to measure), with an
:class:`~xeval.errors.UndefinedMetricWarning` naming the images.

Direction. Whether sparser is *better* depends on the use: a sparse map is easier to
read, but on a large defect it under-covers the anomaly, and a single-pixel map is
maximally "simple" yet useless. xeval reports the raw values with the conventional
directions of the papers (:data:`GINI_HIGHER_IS_BETTER` = True: sparser;
:data:`ENTROPY_HIGHER_IS_BETTER` = False: lower entropy, simpler), and reports should
read them together with the localisation and faithfulness metrics, not alone.

Deviations from Quantus 0.6 (``Sparseness``, ``Complexity`` with ``abs=True``):
Quantus adds 1e-7 to every attribution before the Gini index (a bias towards 0 for
small-valued maps, and a finite 0 instead of NaN for all-zero maps) and 1e-12 inside
the logarithm of the entropy (an all-zero map then gives NaN there too, silently;
a batch whose maps are all zero is refused outright);
its default ``normalise=True`` divides by a batch-wide maximum, which does not change
these two scale-invariant metrics. Otherwise the formulas agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from xeval.errors import InputError
from xeval.metrics._validation import (
    as_image_list,
    check_ids,
    check_map,
    exact_mean,
    extend_ids,
    merged_ids,
    pow2_scale,
    undefined,
)
from xeval.metrics.base import PerImageMetric
from xeval.registry import METRICS

#: Gini sparseness: higher = sparser, reported as better (Chalasani et al. 2020).
GINI_HIGHER_IS_BETTER = True
#: Entropy: lower = simpler, reported as better (Bhatt et al. 2020).
ENTROPY_HIGHER_IS_BETTER = False
#: Direction of each complexity metric by its result name (see the module docstring).
HIGHER_IS_BETTER = {
    "gini_sparseness": GINI_HIGHER_IS_BETTER,
    "entropy_complexity": ENTROPY_HIGHER_IS_BETTER,
}

_ALL_ZERO = "the attribution map is all zeros (no distribution of |a| to measure)"


def _abs_stacks(attributions):
    """``(n, H*W)`` float64 stacks of ``|a|``: one for a 3-D input, one per 2-D image.
    Each map is rescaled by a power of two (exact) when its magnitude is near the float
    limits, so that its sum neither overflows nor underflows (both metrics are
    scale-invariant)."""
    for x in _raw_abs_stacks(attributions):
        yield x * pow2_scale(x.max(1, initial=0.0))[:, None]


def _raw_abs_stacks(attributions):
    arrs = as_image_list(attributions, "attributions")
    if len(arrs) == 0:
        raise InputError("attributions is empty: nothing to evaluate")
    if isinstance(arrs, np.ndarray):
        a = check_map(arrs, "attributions")
        yield np.abs(a.reshape(len(a), -1), dtype=np.float64)
        return
    for i, a in enumerate(arrs):
        a = check_map(a, f"attributions[{i}]")
        yield np.abs(a.reshape(1, -1), dtype=np.float64)


def _warn_zero(metric: str, zero: np.ndarray) -> None:
    idx = np.flatnonzero(zero)
    if idx.size:
        shown = ", ".join(map(str, idx[:10].tolist())) + (", ..." if idx.size > 10 else "")
        undefined(f"{metric} for {idx.size} image(s) (index {shown})", _ALL_ZERO)


def _gini(x: np.ndarray):
    n = x.shape[1]
    x = np.sort(x, axis=1)
    total = x.sum(1)
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    zero = total == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (x @ weights) / (n * total)
    g[zero] = np.nan
    return g, zero


def _entropy(x: np.ndarray):
    total = x.sum(1, keepdims=True)
    zero = total[:, 0] == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        h = special.entr(x / total).sum(1)  # entr(p) = -p ln p, entr(0) = 0
    h[zero] = np.nan
    return h, zero


def gini_sparseness(attributions) -> np.ndarray:
    """Gini index of ``|a|`` per image (Chalasani et al. 2020). Higher = sparser.

    ``G = sum_i (2 i - n - 1) x_i / (n sum x)`` over the ascending ``|a|`` values
    ``x_1 <= ... <= x_n``; 0 = uniform, ``(n - 1) / n`` = one pixel holds everything.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float in ``[0, 1)``; NaN (with an
        :class:`~xeval.errors.UndefinedMetricWarning`) for an all-zero map.
    """
    vals, zeros = zip(*(_gini(x) for x in _abs_stacks(attributions)), strict=True)
    _warn_zero("gini_sparseness", np.concatenate(zeros))
    return np.concatenate(vals)


def entropy_complexity(attributions) -> np.ndarray:
    """Shannon entropy (nats) of ``p = |a| / sum |a|`` per image (Bhatt et al. 2020).
    Lower = simpler (more concentrated).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float in ``[0, ln(H W)]``; NaN (with an
        :class:`~xeval.errors.UndefinedMetricWarning`) for an all-zero map.
    """
    vals, zeros = zip(*(_entropy(x) for x in _abs_stacks(attributions)), strict=True)
    _warn_zero("entropy_complexity", np.concatenate(zeros))
    return np.concatenate(vals)


@dataclass
class ComplexityState:
    """Per-image values (NaN where undefined) and ids, in update order."""

    ids: list = field(default_factory=list)
    gini_sparseness: list = field(default_factory=list)
    entropy_complexity: list = field(default_factory=list)

    def merge(self, o: ComplexityState) -> ComplexityState:
        return ComplexityState(
            merged_ids(self.ids, o.ids, "merging complexity states"),
            self.gini_sparseness + o.gini_sparseness,
            self.entropy_complexity + o.entropy_complexity,
        )


class ComplexityMetrics:
    """Mergeable Gini sparseness and entropy; keeps per-image values for bootstrap CIs.

    ``compute`` returns, per ``name`` in :attr:`names`: ``name`` (mean over the defined
    images, exact and order-free), ``name + "_per_image"`` and ``"n/" + name``, plus
    ``"ids"``. Directions: :data:`HIGHER_IS_BETTER`.
    """

    names = ("gini_sparseness", "entropy_complexity")
    higher_is_better = HIGHER_IS_BETTER

    def init(self) -> ComplexityState:
        return ComplexityState()

    def update(self, state: ComplexityState, attributions, ids=None) -> ComplexityState:
        gini, ent, zeros = [], [], []
        for x in _abs_stacks(attributions):  # inputs checked once
            g, z = _gini(x)
            gini.append(g)
            ent.append(_entropy(x)[0])
            zeros.append(z)
        n = sum(len(g) for g in gini)
        ids = check_ids(ids, n, "ComplexityMetrics.update")
        extend_ids(list(state.ids), ids, "ComplexityMetrics.update")
        zeros = np.concatenate(zeros)
        _warn_zero("gini_sparseness", zeros)
        _warn_zero("entropy_complexity", zeros)
        state.gini_sparseness.extend(np.concatenate(gini).tolist())
        state.entropy_complexity.extend(np.concatenate(ent).tolist())
        state.ids.extend(ids)
        return state

    @staticmethod
    def merge(a: ComplexityState, b: ComplexityState) -> ComplexityState:
        return a.merge(b)

    def compute(self, state: ComplexityState) -> dict:
        out: dict = {"ids": list(state.ids)}
        for name in self.names:
            per = np.asarray(getattr(state, name), dtype=float)
            ok = per[~np.isnan(per)]
            out[name + "_per_image"] = per
            out["n/" + name] = int(ok.size)
            out[name] = (
                exact_mean(ok)
                if ok.size
                else undefined(name, "no image with a non-zero attribution map")
            )
        return out


# ------------------------------------------------------------------ registered metrics
@METRICS.register
class GiniSparseness(PerImageMetric):
    """Gini sparseness of ``|a|`` per image (Chalasani et al. 2020, ICML; Hurley &
    Rickard 2009): ``G = sum_i (2 i - n - 1) x_i / (n sum x)`` over the ascending
    values ``x_i`` of ``|a|`` at the mask's native resolution; 0 = uniform, -> 1 = one
    pixel holds everything; NaN for an all-zero map. **Higher is better** (sparser, by
    the paper's convention -- read it with localisation: a single-pixel map is sparse
    and useless)."""

    name = "gini_sparseness"
    higher_is_better = GINI_HIGHER_IS_BETTER
    family = "complexity"
    excluded_note = "Gini sparseness of |map| (higher = sparser)"

    def values(self, record, explanation):
        return gini_sparseness(explanation.native)


@METRICS.register
class EntropyComplexity(PerImageMetric):
    """Entropy complexity per image (Bhatt et al. 2020, IJCAI): the Shannon entropy in
    nats of ``p = |a| / sum |a|`` at the mask's native resolution, in ``[0, ln n]``;
    NaN for an all-zero map. **Lower is better** (simpler); it grows with the number of
    pixels, so compare maps at the same resolution."""

    name = "entropy_complexity"
    higher_is_better = ENTROPY_HIGHER_IS_BETTER
    family = "complexity"
    excluded_note = "entropy of |map| / sum |map| (lower = simpler)"

    def values(self, record, explanation):
        return entropy_complexity(explanation.native)


@METRICS.register
class DegenerateMaps(PerImageMetric):
    """Degenerate-map rate: the fraction of images whose explanation map is degenerate
    -- all zero, constant, or non-finite (NaN/inf, replaced by zeros so that every other
    metric scores it as a degenerate map) -- with the kinds counted in the note. Such
    maps explain nothing; metrics score them at chance level (or exclude them, saying
    so), so a high rate must be read next to every other number. **Lower is better.**
    Reference: the degenerate explanations of Adebayo et al. (2018), "Sanity Checks for
    Saliency Maps", NeurIPS (e.g. all-zero Grad-CAM maps)."""

    name = "degenerate_maps"
    higher_is_better = False
    family = "complexity"

    def values(self, record, explanation):
        kinds = explanation.degenerate()
        return np.array([0.0 if k is None else 1.0 for k in kinds]), kinds

    def compute(self, state):
        out = super().compute(state)
        kinds = [r for r in state.reasons if r]
        counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
        detail = ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"
        out.note = f"fraction of degenerate maps ({detail} of {len(state.values)})"
        out.excluded = {}
        return out
