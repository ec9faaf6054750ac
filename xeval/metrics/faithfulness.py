"""Faithfulness of explanations of anomaly detectors: does the detector's score follow
the attribution when the pixels it points at are removed?

These metrics call the detector (``detector.score``) on perturbed copies of the
images, in batches: every (image, step) perturbation of a set of images goes through
``detector.score`` in chunks of ``batch_size`` perturbed images, so a deletion curve
of ``B`` images with ``steps`` steps costs ``ceil(B * (steps + 1) / batch_size)``
calls.

What replaces removed pixels (the *substrate*) matters for an anomaly detector: black
or blurred pixels are new anomalies (DESIGN.md). The default substrate is a **normal
reference image** (``reference=``: normal training images or their mean); the
detector's reconstruction and ROAD's noisy linear imputation are the other normal
choices; black and blur are available but flagged. See :mod:`xeval.substrates`.

Common conventions
------------------
- ``images``: ``(B, C, H, W)`` float; ``attributions``: ``(B, H, W)`` maps (channels
  already reduced, see :mod:`xeval.explainers.reduce`; ``(B, 1, H, W)`` is accepted).
  :func:`infidelity` also takes ``(B, C, H, W)`` attributions.
- Removing a pixel replaces all its channels. With ``patch_size=p > 1`` the image is
  tiled into ``p x p`` squares (the last row/column may be smaller), each square's
  relevance is the **sum** of its attributions, and whole squares are removed.
- Order: **most relevant first** (MoRF) by the signed attribution value; ties are
  broken by raster order (top-left first) — deterministic. LeRF is the ascending order
  with the same tie rule.
- A constant attribution map (all zero, or all equal) defines no order: its values are
  NaN with an :class:`~xeval.errors.UndefinedMetricWarning`, never a made-up number.
- A ``patch_size`` covering the whole image (a single region) is an
  :class:`~xeval.errors.InputError` naming the option: every map would get the same
  curve (intact, then fully replaced; 0.5 for deletion), whatever it says.
- Scores and attributions near the float limits (``±1e308``, subnormals) are rescaled by
  exact powers of two before differences and sums are taken: the normalised curves,
  AOPC and correlations equal those of the rescaled input (raw-unit AOPC beyond float64's
  range is an error).
- :func:`infidelity` is NaN (with a warning) for an image that no perturbation changed
  (every replaced square already held the substrate's content): nothing was tested.
- Randomness (ROAD noise, random subsets, infidelity perturbations) is seeded by
  ``seed`` and the image's position in the call, so the numbers do not depend on
  ``batch_size``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from xeval.checks import check_images as _check_images
from xeval.checks import check_positive_int
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics._validation import check_map, extend_ids, pow2_scale
from xeval.metrics.base import PerImageMetric, PerImageState, check_aligned, robust_spread
from xeval.metrics.resize import resize_to
from xeval.registry import METRICS
from xeval.rng import rng as make_rng
from xeval.substrates import (
    ANOMALY_NOTE,
    BoundSubstrate,
    Substrate,
    _FixedBound,
    resolve_substrate,
)

__all__ = [
    "PerturbationCurve",
    "perturbation_curve",
    "aopc",
    "deletion_auc",
    "deletion_curve",
    "faithfulness_correlation",
    "infidelity",
    "insertion_auc",
    "insertion_curve",
]

DEFAULT_STEPS = 20
DEFAULT_BATCH = 64


# ----------------------------------------------------------------------------- checks


def _check_attributions(attributions, images: np.ndarray, *, allow_channels: bool = False):
    a = np.asarray(attributions)
    b, c, h, w = images.shape
    if a.ndim == 4 and a.shape[1] == 1 and a.shape[0] == b and a.shape[2:] == (h, w):
        a = a[:, 0]
    ok = a.shape == (b, h, w) or (allow_channels and a.shape == images.shape)
    if not ok:
        expected = f"(B, H, W) = {(b, h, w)}"
        if allow_channels:
            expected += f" or (B, C, H, W) = {images.shape}"
        hint = ""
        if a.ndim == 4 and not allow_channels:
            hint = (
                "; reduce channels first (xeval.explainers.reduce.reduce_channels, "
                "e.g. 'abs_sum' or 'signed_sum')"
            )
        raise InputError(
            f"attributions have shape {a.shape} but images have shape {images.shape}: "
            f"expected attributions of shape {expected}{hint}"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        if a.dtype != bool:
            raise InputError(f"attributions must be real-valued, got dtype {a.dtype}")
    return check_map(a, "attributions").astype(np.float64)


def _keys(keys, b: int) -> list:
    """One key per image (positions by default) seeding its randomness."""
    if keys is None:
        return list(range(b))
    keys = list(keys)
    if len(keys) != b:
        raise InputError(f"keys has {len(keys)} entries for {b} images")
    return keys


def _warn_undefined(metric: str, images: np.ndarray, why: str) -> None:
    if images.size:
        shown = ", ".join(map(str, images[:10].tolist())) + (", ..." if images.size > 10 else "")
        warnings.warn(
            f"{metric} is undefined for image(s) [{shown}]: {why}; returning NaN for them",
            UndefinedMetricWarning,
            stacklevel=3,
        )


# ------------------------------------------------------------------------ regions
def _regions(attr: np.ndarray, patch_size: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (H, W) region index, region relevance (B, R) = sum of attributions)``.

    A single region (``patch_size`` covering the whole image) is an error: every map
    would then give the same curve (intact, then fully replaced), a constant such as
    0.5 for deletion, whatever it says. Maps whose patch sums could overflow are
    rescaled by an exact power of two first (the order of the sums is unchanged)."""
    b, h, w = attr.shape
    p = patch_size
    ny, nx = -(-h // p), -(-w // p)
    if ny * nx == 1:
        raise InputError(
            f"patch_size={p} covers the whole {h}x{w} image: a single region, so {metric} "
            "would not depend on the attribution map (2 points: intact, fully replaced). "
            f"Expected patch_size < max(H, W) = {max(h, w)} (several regions to order)"
        )
    yy, xx = np.mgrid[0:h, 0:w]
    labels = (yy // p) * nx + (xx // p)
    if p == 1:
        return labels, attr.reshape(b, -1)
    mag = np.abs(attr).reshape(b, -1).max(axis=1)
    big = mag > 2.0**1000 / (p * p)
    if big.any():
        attr = attr * np.where(big, pow2_scale(mag), 1.0)[:, None, None]
    padded = np.zeros((b, ny * p, nx * p))
    padded[:, :h, :w] = attr
    rel = padded.reshape(b, ny, p, nx, p).sum(axis=(2, 4)).reshape(b, -1)
    return labels, rel


def _scaled_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores * s, s)`` with ``s`` a power of two per image (row) bringing scores near
    the float limits near 1, so that differences of scores cannot overflow; 1 for
    ordinary scores. Normalised curves and correlations are invariant to ``s``."""
    mag = np.where(np.isnan(scores), 0.0, np.abs(scores)).max(axis=1, initial=0.0)
    s = pow2_scale(mag)
    return scores * s[:, None], s


def _ranks(rel: np.ndarray, *, ascending: bool) -> np.ndarray:
    """Position of each region in the removal order; ties by raster order."""
    order = np.argsort(rel if ascending else -rel, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(rel.shape[1])[None], axis=1)
    return rank


def _constant(attr: np.ndarray) -> np.ndarray:
    flat = attr.reshape(len(attr), -1)
    return flat.max(axis=1) == flat.min(axis=1)


# ------------------------------------------------------------------------- scoring
def _score(detector, x: np.ndarray) -> np.ndarray:
    s = np.asarray(detector.score(x), dtype=np.float64)
    if s.shape != (len(x),):
        raise InputError(
            f"detector.score returned shape {s.shape} for {len(x)} images; expected ({len(x)},)"
        )
    if not np.all(np.isfinite(s)):
        raise InputError(
            f"detector.score returned non-finite scores for perturbed images "
            f"(e.g. {s[~np.isfinite(s)][:3].tolist()}); faithfulness needs finite scores"
        )
    return s


def _score_jobs(
    detector,
    images: np.ndarray,
    bound: BoundSubstrate,
    idx: np.ndarray,
    make_removed: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """Score ``len(idx)`` perturbed images in chunks of ``batch_size``.

    Job ``j`` is image ``idx[j]`` whose pixels ``make_removed(js)[.]`` (bool ``(H, W)``)
    are replaced by the substrate.
    """
    out = np.empty(len(idx))
    for start in range(0, len(idx), batch_size):
        js = np.arange(start, min(start + batch_size, len(idx)))
        ii = idx[js]
        removed = make_removed(js)
        fill = bound.fill(ii, removed, js)
        x = np.where(removed[:, None], fill, images[ii]).astype(np.float32, copy=False)
        out[js] = _score(detector, x)
    return out


def _trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((y[..., 1:] + y[..., :-1]) * 0.5 * np.diff(x)).sum(axis=-1)


def _bind(detector, images, substrate, reference, seed) -> tuple[Substrate, BoundSubstrate]:
    sub = resolve_substrate(substrate)
    return sub, sub.bind(detector, images, reference=reference, seed=int(seed))


def _notes(sub: Substrate) -> tuple[str, ...]:
    return (ANOMALY_NOTE.format(name=sub.name),) if sub.creates_anomalies else ()


def _raw_curves(
    detector,
    images,
    attributions,
    *,
    substrate,
    reference,
    steps,
    patch_size,
    batch_size,
    seed,
    ascending: bool,
    insertion: bool,
    metric: str,
    keys=None,
    constant: str = "exclude",
):
    """Raw scores ``(B, steps+1)`` (NaN rows for constant maps with
    ``constant="exclude"``; a seeded random removal order with ``"random"``),
    fractions, substrate."""
    if constant not in ("exclude", "random"):
        raise InputError(f"constant must be 'exclude' or 'random', got {constant!r}")
    images = _check_images(images)
    attr = _check_attributions(attributions, images)
    steps = check_positive_int(steps, "steps")
    patch_size = check_positive_int(patch_size, "patch_size")
    batch_size = check_positive_int(batch_size, "batch_size")
    sub, bound = _bind(detector, images, substrate, reference, seed)
    b = len(images)
    keys = _keys(keys, b)
    labels, rel = _regions(attr, patch_size, metric)
    n_regions = rel.shape[1]
    counts = np.rint(np.arange(steps + 1) * n_regions / steps).astype(np.int64)
    fractions = counts / n_regions
    rank = _ranks(rel, ascending=ascending)
    const = _constant(attr)
    if constant == "random":  # chance level: a removal order drawn at random, seeded
        for i in np.flatnonzero(const):
            rank[i] = make_rng(int(seed), keys[i], "order").permutation(n_regions)
        const = np.zeros_like(const)
    _warn_undefined(
        metric,
        np.flatnonzero(const),
        "the attribution map is constant (e.g. all zero), so it defines no removal order",
    )
    live = np.flatnonzero(~const)
    k = steps + 1
    # job j -> (image live[j // k], step j % k); keys seed ROAD noise per (image, step)
    job_img = np.repeat(live, k)
    job_step = np.tile(np.arange(k), len(live))

    def make_removed(js: np.ndarray) -> np.ndarray:
        r = rank[job_img[js]][:, labels]  # (n, H, W) rank of each pixel's region
        n = counts[job_step[js]][:, None, None]
        return r >= n if insertion else r < n

    class _Keyed(BoundSubstrate):  # stable noise keys: (sample key, step)
        def fill(self, idx, removed, js):
            return bound.fill(idx, removed, [(keys[job_img[j]], int(job_step[j])) for j in js])

    scores = np.full((b, k), np.nan)
    if len(live):
        s = _score_jobs(detector, images, _Keyed(), job_img, make_removed, batch_size)
        scores[live] = s.reshape(len(live), k)
    return scores, fractions, sub


# ------------------------------------------------------------------ deletion/insertion
@dataclass(frozen=True)
class PerturbationCurve:
    """A deletion or insertion curve of a set of images.

    Attributes
    ----------
    kind:
        ``"deletion"`` (lower AUC = more faithful) or ``"insertion"`` (higher = more
        faithful).
    fractions:
        ``(K,)`` fraction of regions (pixels when ``patch_size=1``) removed (deletion)
        or inserted (insertion) at each step, from 0 to 1.
    scores:
        ``(B, K)`` raw detector scores of the perturbed images (NaN rows for images
        with a constant attribution map).
    curves:
        ``(B, K)`` normalised scores ``(s_k - s_sub) / (s_x - s_sub)`` clipped to
        ``[0, 1]``: ``s_x`` the score of the intact image, ``s_sub`` the score of the
        fully replaced image (the substrate). Deletion goes from 1 to 0, insertion from
        0 to 1. NaN rows for excluded images.
    auc:
        ``(B,)`` trapezoidal area under ``curves`` over ``fractions``, in ``[0, 1]``;
        NaN for excluded images.
    substrate:
        What replaced the removed pixels (e.g. ``"normal (mean normal reference
        image)"``).
    notes:
        Caveats, e.g. that the substrate creates new anomalies (black, blur).
    excluded:
        ``(B,)`` why each image has no value (None where it has one):
        ``"constant map"`` or ``"not separated from its substrate"``.
    overshoot:
        ``(B,)`` the largest unclipped ``(s_k - s_sub) / (s_x - s_sub)`` minus 1 (above
        0: some intermediate image scored above the intact one -- the substitution
        itself looked anomalous), NaN for excluded images.
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    curves: np.ndarray
    auc: np.ndarray
    substrate: str
    notes: tuple[str, ...] = field(default=())
    excluded: tuple = field(default=())
    overshoot: np.ndarray | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "insertion"


def perturbation_curve(
    detector,
    images: np.ndarray,
    attributions: np.ndarray,
    *,
    kind: str,
    substrate: str | Substrate = "normal_sample",
    reference: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    patch_size: int = 1,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    keys=None,
    margin: float = 0.0,
    constant: str = "exclude",
) -> PerturbationCurve:
    """Deletion or insertion curves of a set of images (Petsiuk et al. 2018, RISE).

    Definition: order the ``R`` regions (pixels, or ``patch_size`` squares) by
    decreasing attribution (MoRF; ties in raster order). Deletion: at step ``k`` the
    first ``round(k R / steps)`` regions are replaced by the substrate; insertion: only
    those hold the image's own pixels, the rest the substrate. Each perturbed image is
    scored, ``s_k``, and the curve is normalised per image as
    ``c_k = (s_k - s_sub) / (s_x - s_sub)`` (``s_x`` the intact image's score, ``s_sub``
    the fully replaced image's), so deletion runs from 1 to 0 and insertion from 0 to 1;
    the AUC is the trapezoidal area under ``c`` over the fraction removed / inserted.
    Deletion: **lower = more faithful** (the anomaly evidence goes first); insertion:
    **higher = more faithful**.

    Anomaly scores are unbounded and may be negative, hence this affine normalisation
    rather than ``s_k / s_0``. It is only meaningful when the intact image is clearly
    more anomalous than its substrate: an image with ``s_x - s_sub <= margin`` (e.g. a
    normal image against the normal reference, or an anomaly the detector misses) is
    **excluded** -- NaN with an :class:`~xeval.errors.UndefinedMetricWarning` and the
    reason in :attr:`PerturbationCurve.excluded` -- never turned into a huge ratio; so
    are constant attribution maps (no removal order). The normalised values are clipped
    to ``[0, 1]`` (an intermediate image scoring above the intact one counts as 1, below
    the substrate as 0; :attr:`PerturbationCurve.overshoot` keeps how far they went), so
    every curve and AUC lies in ``[0, 1]`` and no image dominates a mean.

    Parameters
    ----------
    detector:
        A :class:`~xeval.adapters.Detector` (only ``score`` is called).
    images:
        ``(B, C, H, W)`` float images.
    attributions:
        ``(B, H, W)`` attribution maps (higher = more relevant to the anomaly).
    kind:
        ``"deletion"`` or ``"insertion"``.
    substrate:
        ``"normal_sample"`` (default; a normal reference image per image, drawn with a
        seed keyed by the sample), ``"normal"`` (the mean normal image),
        ``"reconstruction"``, ``"road"``, ``"black"`` or ``"blur"`` (flagged), or a
        :class:`~xeval.substrates.Substrate`.
    reference:
        Normal images ``(N, C, H, W)`` or one ``(C, H, W)`` image, for
        ``substrate="normal_sample"`` or ``"normal"``.
    steps:
        Number of equal steps from 0 to 100 % of the regions (``steps + 1`` points).
    patch_size:
        Side of the square regions removed together (1 = pixels).
    batch_size:
        Perturbed images per ``detector.score`` call.
    seed:
        Seed of ROAD's noise (other substrates are deterministic).
    keys:
        One key per image (e.g. sample ids) seeding its noise; default its position.
    margin:
        Minimum ``s_x - s_sub`` (score units) for an image to count; the engine sets it
        from the detector's score spread on normal validation images.
    constant:
        A constant map (all zero, or all equal) defines no removal order: ``"exclude"``
        it (NaN, reason ``"constant map"``), or score it with a ``"random"`` order drawn
        from ``(seed, key)`` -- the chance level, so that a method cannot gain from
        degenerate maps being left out.

    Reference: Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC; substrate "road": Rong et al. (2022), ICML.
    """
    if kind not in ("deletion", "insertion"):
        raise InputError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    insertion = kind == "insertion"
    metric = f"{kind} AUC"
    scores, fractions, sub = _raw_curves(
        detector,
        images,
        attributions,
        substrate=substrate,
        reference=reference,
        steps=steps,
        patch_size=patch_size,
        batch_size=batch_size,
        seed=seed,
        ascending=False,
        insertion=insertion,
        metric=metric,
        keys=keys,
        constant=constant,
    )
    margin = float(margin)
    if not (np.isfinite(margin) and margin >= 0):
        raise InputError(f"margin must be a finite number >= 0, got {margin!r}")
    sc, scale = _scaled_scores(scores)  # scores near the float limits: exact rescaling
    s_x = sc[:, -1] if insertion else sc[:, 0]
    s_sub = sc[:, 0] if insertion else sc[:, -1]
    denom = s_x - s_sub
    close = np.isfinite(denom) & (denom <= margin * scale)
    _warn_undefined(
        metric,
        np.flatnonzero(close),
        f"the intact image does not score clearly above its fully replaced version "
        f"(s(x) - s(substrate) <= {margin:.3g}): nothing to remove (a normal image, or an "
        "anomaly the detector misses)",
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = (sc - s_sub[:, None]) / np.where(close, np.nan, denom)[:, None]
    curves = np.clip(raw, 0.0, 1.0)
    auc = _trapezoid(curves, fractions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        overshoot = np.nanmax(raw, axis=1) - 1.0 if raw.size else np.zeros(0)
    const = np.isnan(scores).all(axis=1)
    excluded = tuple(
        "constant map" if c else ("not separated from its substrate" if f else None)
        for c, f in zip(const, close, strict=True)
    )
    return PerturbationCurve(
        kind=kind,
        fractions=fractions,
        scores=scores,
        curves=curves,
        auc=auc,
        substrate=sub.describe(),
        notes=_notes(sub),
        excluded=excluded,
        overshoot=overshoot,
    )


def deletion_curve(detector, images, attributions, **options) -> PerturbationCurve:
    """Deletion curves: the score as the most relevant pixels are replaced by normal
    content; ``options`` as :func:`perturbation_curve` (``substrate``, ``reference``,
    ``steps``, ``patch_size``, ``batch_size``, ``seed``). **Lower AUC = more faithful.**
    Reference: Petsiuk et al. (2018), RISE, BMVC."""
    return perturbation_curve(detector, images, attributions, kind="deletion", **options)


def insertion_curve(detector, images, attributions, **options) -> PerturbationCurve:
    """Insertion curves: the score as the most relevant pixels are put back into the
    substrate; ``options`` as :func:`perturbation_curve`. **Higher AUC = more
    faithful.** Reference: Petsiuk et al. (2018), RISE, BMVC."""
    return perturbation_curve(detector, images, attributions, kind="insertion", **options)


def deletion_auc(detector, images, attributions, **options) -> np.ndarray:
    """Per-image normalised deletion AUC ``(B,)`` (see :func:`perturbation_curve`);
    **lower = more faithful**; NaN (with a warning) for constant maps and for images
    scoring the same as their substrate. Reference: Petsiuk et al. (2018), RISE."""
    return deletion_curve(detector, images, attributions, **options).auc


def insertion_auc(detector, images, attributions, **options) -> np.ndarray:
    """Per-image normalised insertion AUC ``(B,)`` (see :func:`perturbation_curve`);
    **higher = more faithful**; NaN (with a warning) as :func:`deletion_auc`.
    Reference: Petsiuk et al. (2018), RISE."""
    return insertion_curve(detector, images, attributions, **options).auc


# --------------------------------------------------------------------------- AOPC
def aopc(
    detector,
    images: np.ndarray,
    attributions: np.ndarray,
    *,
    order: str = "morf",
    substrate: str | Substrate = "normal_sample",
    reference: np.ndarray | None = None,
    steps: int = DEFAULT_STEPS,
    patch_size: int = 1,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    keys=None,
    normalise: bool = False,
    margin: float = 0.0,
    constant: str = "exclude",
) -> np.ndarray:
    """Area over the perturbation curve (AOPC), per image ``(B,)``.

    Definition (Samek et al. 2017): ``AOPC = 1/(L+1) sum_{k=0}^{L} (s_0 - s_k)`` where
    ``s_k`` is the detector score after replacing the first ``round(k R / L)`` of the
    ``R`` regions (``L = steps``) by the substrate, in the order given by ``order``:
    ``"morf"`` (most relevant first: decreasing attribution) or ``"lerf"`` (least
    relevant first: increasing attribution); ties in raster order. Samek et al. remove
    ``9 x 9`` regions: use ``patch_size``. In **raw score units** (no normalisation),
    so values are comparable across explanations of the same detector only.

    Direction: MoRF **higher = more faithful** (the score falls fast when the evidence
    goes); LeRF **lower = more faithful** (removing irrelevant pixels changes little).
    ``aopc(morf) - aopc(lerf)`` (ABPC) combines the two. Other parameters as
    :func:`perturbation_curve`.

    ``normalise=True`` divides each drop by ``s_0 - s_sub`` (the drop when everything
    is replaced) and clips it to ``[0, 1]``, so the value lies in ``[0, 1]`` and is
    comparable across images and detectors; images with ``s_0 - s_sub <= margin`` are
    then NaN (not separated from their substrate), as in :func:`perturbation_curve`.

    Reference: Samek, Binder, Montavon, Lapuschkin & Müller (2017), "Evaluating the
    visualization of what a deep neural network has learned", IEEE TNNLS.
    """
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    scores, _, _ = _raw_curves(
        detector,
        images,
        attributions,
        substrate=substrate,
        reference=reference,
        steps=steps,
        patch_size=patch_size,
        batch_size=batch_size,
        seed=seed,
        ascending=order == "lerf",
        insertion=False,
        metric=f"AOPC ({order.upper()})",
        keys=keys,
        constant=constant,
    )
    sc, scale = _scaled_scores(scores)  # scores near the float limits: exact rescaling
    drops = sc[:, :1] - sc
    if not normalise:
        raw = drops.mean(axis=1) / scale
        if not np.all(np.isfinite(raw[~np.isnan(raw)])):
            raise InputError(
                f"AOPC ({order.upper()}) in raw score units exceeds float64's range (scores "
                "near the float limits); use normalise=True, which is scale-free"
            )
        return raw
    total = drops[:, -1]
    close = np.isfinite(total) & (total <= float(margin) * scale)
    _warn_undefined(
        f"AOPC ({order.upper()})",
        np.flatnonzero(close),
        f"the intact image does not score clearly above its fully replaced version "
        f"(s(x) - s(substrate) <= {float(margin):.3g})",
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.clip(drops / np.where(close, np.nan, total)[:, None], 0.0, 1.0)
    return rel.mean(axis=1)


# ------------------------------------------------------------ faithfulness correlation
def faithfulness_correlation(
    detector,
    images: np.ndarray,
    attributions: np.ndarray,
    *,
    substrate: str | Substrate = "normal_sample",
    reference: np.ndarray | None = None,
    n_samples: int = 100,
    subset_size: int | float = 0.1,
    patch_size: int = 1,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    keys=None,
    margin: float | None = None,
) -> np.ndarray:
    """Faithfulness correlation per image ``(B,)``, in ``[-1, 1]``; **higher = more faithful**.

    Definition (Bhatt et al. 2020): draw ``n_samples`` random subsets ``S`` of
    ``subset_size`` regions (without replacement, uniformly, seeded); for each, the sum
    of attributions over ``S`` and the score drop ``s(x) - s(x_S)`` where ``x_S`` has
    ``S`` replaced by the substrate; the metric is the Pearson correlation of the two
    over the subsets. For an anomaly detector a faithful map puts its mass where
    removal lowers the score. NaN with a warning when either quantity is constant over
    the subsets (e.g. a constant map, or a detector that ignores the subsets).

    Reference: Bhatt, Weller & Moura (2020), "Evaluating and Aggregating Feature-based
    Model Explanations", IJCAI.

    Parameters
    ----------
    detector, images, attributions, substrate, reference, patch_size, batch_size:
        As in :func:`deletion_curve`.
    n_samples:
        Random subsets per image (Quantus' ``nr_runs``, default 100).
    subset_size:
        Regions per subset: an int, or a float in ``(0, 1)`` = fraction of the regions
        (default 0.1).
    seed:
        Seed of the subsets (and ROAD noise); subset ``j`` of image ``i`` depends only
        on ``(seed, keys[i])``.
    keys:
        One key per image (e.g. sample ids); default its position in the call.
    margin:
        When given, the image is also scored with every region replaced, and images
        with ``s(x) - s(substrate) <= margin`` are NaN: their score drops are noise.
    """
    images = _check_images(images)
    attr = _check_attributions(attributions, images)
    n_samples = check_positive_int(n_samples, "n_samples", minimum=2)
    patch_size = check_positive_int(patch_size, "patch_size")
    batch_size = check_positive_int(batch_size, "batch_size")
    sub, bound = _bind(detector, images, substrate, reference, seed)
    b = len(images)
    keys = _keys(keys, b)
    labels, rel = _regions(attr, patch_size, "faithfulness correlation")
    n_regions = rel.shape[1]
    # sums of up to n_regions relevances: rescale (exactly; Pearson is scale-free) maps
    # whose sums could overflow
    mag = np.abs(rel).max(axis=1)
    rel = rel * np.where(mag > 2.0**1000 / n_regions, pow2_scale(mag), 1.0)[:, None]
    if isinstance(subset_size, float) and 0 < subset_size < 1:
        m = max(1, int(round(subset_size * n_regions)))
    elif isinstance(subset_size, (int, np.integer)) and not isinstance(subset_size, bool):
        m = int(subset_size)
        if not 1 <= m < n_regions:
            raise InputError(
                f"subset_size must be between 1 and the number of regions - 1 "
                f"({n_regions - 1}), got {subset_size!r}"
            )
    else:
        raise InputError(
            f"subset_size must be an int (regions) or a float in (0, 1) (fraction), "
            f"got {subset_size!r}"
        )
    k = n_samples + 1  # job 0 of each image: the intact image
    full = margin is not None  # one more job: every region replaced
    chosen = np.zeros((b, k + full, n_regions), dtype=bool)
    for i in range(b):
        rng = make_rng(int(seed), keys[i])
        for j in range(1, k):
            chosen[i, j, rng.choice(n_regions, size=m, replace=False)] = True
    if full:
        chosen[:, k] = True
    sums = (chosen[:, 1:k] * rel[:, None, :]).sum(axis=2)  # (B, n_samples)
    kk = k + full
    job_img = np.repeat(np.arange(b), kk)
    job_s = np.tile(np.arange(kk), b)

    def make_removed(js: np.ndarray) -> np.ndarray:
        return chosen[job_img[js], job_s[js]][:, labels]

    class _Keyed(BoundSubstrate):  # stable noise keys: (sample key, subset index)
        def fill(self, idx, removed, js):
            return bound.fill(idx, removed, [(keys[job_img[j]], int(job_s[j])) for j in js])

    s = _score_jobs(detector, images, _Keyed(), job_img, make_removed, batch_size).reshape(b, kk)
    s, scale = _scaled_scores(s)  # exact rescaling of scores near the float limits
    drops = s[:, :1] - s[:, 1:k]
    out = np.full(b, np.nan)
    flat = (sums.std(axis=1) == 0) | (drops.std(axis=1) == 0)
    if full:
        close = (s[:, 0] - s[:, k]) <= float(margin) * scale
        _warn_undefined(
            "faithfulness correlation",
            np.flatnonzero(close & ~flat),
            f"the intact image does not score clearly above its fully replaced version "
            f"(s(x) - s(substrate) <= {float(margin):.3g}): its score drops are noise",
        )
        flat |= close
    _warn_undefined(
        "faithfulness correlation",
        np.flatnonzero(flat),
        "the attribution sums or the score drops are constant over the random subsets "
        "(Pearson correlation undefined)",
    )
    for i in np.flatnonzero(~flat):
        out[i] = np.corrcoef(sums[i], drops[i])[0, 1]
    return out


# ----------------------------------------------------------------------- infidelity
def infidelity(
    detector,
    images: np.ndarray,
    attributions: np.ndarray,
    *,
    perturbation: str = "patches",
    substrate: str | Substrate = "normal",
    reference: np.ndarray | None = None,
    n_samples: int = 32,
    patch_size: int | None = None,
    noise_std: float = 0.01,
    multiply_by_inputs: bool | None = None,
    normalize: bool = False,
    batch_size: int = DEFAULT_BATCH,
    seed: int = 0,
    keys=None,
) -> np.ndarray:
    """Infidelity (Yeh et al. 2019) per image ``(B,)``, via ``captum.metrics.infidelity``;
    **lower = more faithful** (0 = the attribution predicts every perturbation exactly).

    Definition: ``INFD = E_I[(I . a - (f(x) - f(x - I)))^2]`` for random perturbations
    ``I`` (captum's convention: the perturbed input is ``x - I``), ``f`` the detector's
    differentiable score ``detector.torch_score()``.

    Perturbations:

    ``"patches"`` (default; Yeh et al.'s square removal with normal content)
        Each sample replaces one ``patch_size x patch_size`` square at a uniform random
        position by the substrate ``r`` (the mean normal ``reference`` by default, or the
        detector's reconstruction); ``x - I = x`` outside the square and ``r`` inside.
        With ``multiply_by_inputs=True`` (default) the attributions are taken to be
        relative to ``r`` — gradient x (input - reference), Integrated Gradients or SHAP
        with the reference as baseline — and captum gets ``I`` = the square's indicator
        (then a linear score gives ``INFD = 0`` exactly); with ``False`` (gradient-type
        attributions) ``I = 1_square * (x - r)``.
    ``"noise"``
        ``I ~ N(0, noise_std^2)`` per pixel, for gradient-type attributions
        (``multiply_by_inputs`` must be False, the default for this mode).

    ``attributions`` may be ``(B, C, H, W)`` (per channel), or ``(B, H, W)`` maps read
    as the **signed** channel sum: perturbations are then the same on all channels and
    the map is spread as ``a / C`` over the channels, so that ``I . a`` is the sum over
    pixels. An unsigned map (``abs_sum``) is not what this metric expects.

    Undefined (NaN with an :class:`~xeval.errors.UndefinedMetricWarning`) for an image
    that none of its perturbations changed (``x - I == x`` every time, e.g. squares
    replaced by a reference equal to the image): there is nothing to compare ``I . a``
    with, and 0 would read as a perfect explanation.

    Reference: Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), "On the (In)fidelity and
    Sensitivity of Explanations", NeurIPS; captum ``infidelity``.

    Parameters
    ----------
    detector:
        A detector whose ``torch_score()`` returns a differentiable callable.
    perturbation:
        ``"patches"`` or ``"noise"``.
    substrate, reference:
        Content of the patches (``"normal"`` needs ``reference``; ``"reconstruction"``;
        ``"black"``/``"blur"`` flagged). ROAD is not supported here (the replacement
        would depend on each square).
    n_samples:
        Perturbations per image (captum's ``n_perturb_samples``).
    patch_size:
        Side of the squares (default: a quarter of the smaller image side).
    noise_std:
        Standard deviation of the ``"noise"`` perturbation.
    multiply_by_inputs:
        See above; None = True for patches, False for noise.
    normalize:
        captum's ``normalize``: rescale the attributions by the optimal scalar first.
    batch_size:
        Perturbed images per forward call (captum's ``max_examples_per_batch``).
    seed:
        Seed of the perturbations; image ``i``'s depend only on ``(seed, keys[i])``.
    keys:
        One key per image (e.g. sample ids); default its position in the call.
    """
    import torch
    from captum.metrics import infidelity as captum_infidelity

    images = _check_images(images)
    attr = _check_attributions(attributions, images, allow_channels=True)
    fn = detector.torch_score() if hasattr(detector, "torch_score") else None
    if fn is None:
        raise InputError(
            f"infidelity needs a differentiable detector: {type(detector).__name__} "
            f"{getattr(detector, 'name', '')!r} has torch_score() = None. It works with the "
            "built-in ConvAutoencoder and PatchFeatures, torch modules wrapped with "
            "xeval.adapters (differentiable=True) and any Detector whose torch_score() "
            "returns a (B, C, H, W) -> (B,) torch callable; for black boxes use "
            "deletion_auc, insertion_auc, aopc or faithfulness_correlation (score only)"
        )
    if perturbation not in ("patches", "noise"):
        raise InputError(f"perturbation must be 'patches' or 'noise', got {perturbation!r}")
    if multiply_by_inputs is None:
        multiply_by_inputs = perturbation == "patches"
    if perturbation == "noise" and multiply_by_inputs:
        raise InputError(
            "perturbation='noise' pairs with gradient-type attributions "
            "(multiply_by_inputs=False); for input-multiplied attributions use "
            "perturbation='patches' (squares replaced by the normal reference)"
        )
    n_samples = check_positive_int(n_samples, "n_samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    b, c, h, w = images.shape
    keys = _keys(keys, b)
    if patch_size is None:
        patch_size = max(1, min(h, w) // 4)
    patch_size = check_positive_int(patch_size, "patch_size")
    if patch_size > min(h, w):
        raise InputError(f"patch_size must be <= min(H, W) = {min(h, w)}, got {patch_size}")
    if not float(noise_std) > 0:
        raise InputError(f"noise_std must be > 0, got {noise_std!r}")

    per_channel = attr.ndim == 4
    attr_full = attr if per_channel else np.repeat(attr[:, None] / c, c, axis=1)
    content = None
    if perturbation == "patches":
        sub, bound = _bind(detector, images, substrate, reference, seed)
        if not isinstance(bound, _FixedBound):
            raise InputError(
                f"infidelity patches need a fixed substrate ('normal', 'reconstruction', "
                f"'black', 'blur'), got {sub.name!r}"
            )
        content = np.broadcast_to(bound.content, images.shape).astype(np.float32)

    out = np.empty(b)
    g = min(b, batch_size)
    for start in range(0, b, g):
        ids = np.arange(start, min(start + g, b))
        x = torch.from_numpy(images[ids])
        a = torch.from_numpy(attr_full[ids].astype(np.float32))
        rngs = [make_rng(int(seed), keys[int(i)]) for i in ids]
        # square corners drawn up front: the same squares whatever captum's chunking
        corners = [
            (
                rng.integers(0, h - patch_size + 1, n_samples),
                rng.integers(0, w - patch_size + 1, n_samples),
            )
            for rng in rngs
        ]
        done = [0]
        cont = None if content is None else torch.from_numpy(content[ids])
        n_ids = len(ids)
        changed = np.zeros(n_ids, dtype=bool)  # did any perturbation move the image?

        def perturb(
            inp: torch.Tensor, _rngs=rngs, _cont=cont, _n=n_ids, _c=corners, _d=done, _ch=changed
        ):
            # captum passes each image repeated `cur` times (repeat_interleave order);
            # each image draws from its own generator, so chunking does not matter
            cur = inp.shape[0] // _n
            pert = torch.empty_like(inp)
            perturbed = torch.empty_like(inp)
            for r_i, rng in enumerate(_rngs):
                rows = slice(r_i * cur, (r_i + 1) * cur)
                if perturbation == "noise":
                    shape = (cur, c, h, w) if per_channel else (cur, 1, h, w)
                    eps = rng.standard_normal(shape).astype(np.float32) * noise_std
                    pert[rows] = torch.from_numpy(eps).expand(cur, c, h, w)
                    perturbed[rows] = inp[rows] - pert[rows]
                    continue
                ys = _c[r_i][0][_d[0] : _d[0] + cur]
                xs = _c[r_i][1][_d[0] : _d[0] + cur]
                m = torch.zeros((cur, 1, h, w), dtype=inp.dtype)
                for q in range(cur):
                    m[q, :, ys[q] : ys[q] + patch_size, xs[q] : xs[q] + patch_size] = 1
                step = m * (inp[rows] - _cont[r_i : r_i + 1])  # x - step = r in the square
                perturbed[rows] = inp[rows] - step
                pert[rows] = m.expand(cur, c, h, w) if multiply_by_inputs else step
            for r_i in range(len(_rngs)):
                rows = slice(r_i * cur, (r_i + 1) * cur)
                _ch[r_i] |= bool((perturbed[rows] != inp[rows]).any())
            _d[0] += cur
            return pert, perturbed

        max_ex = min(max(batch_size, len(ids)), len(ids) * n_samples)
        with torch.no_grad():
            val = captum_infidelity(
                fn,
                perturb,
                x,
                a,
                n_perturb_samples=n_samples,
                max_examples_per_batch=max_ex,
                normalize=bool(normalize),
            )
        out[ids] = val.detach().cpu().double().numpy()
        out[ids[~changed]] = np.nan
        _warn_undefined(
            "infidelity",
            ids[~changed],
            "no perturbation changed the image (every replaced square already holds the "
            "substrate's content), so there is nothing to compare the attribution with",
        )
    return out


# ------------------------------------------------------------------ registered metrics
Removal = Literal["normal", "normal_sample", "reconstruction", "road", "black", "blur"]


class _ProbeMetric(PerImageMetric):
    """Base of the faithfulness metrics: they score the detector on perturbed copies of
    a stratified subset of anomalous test images (``max_images`` of them).

    Only images whose score is clearly above their substrate's count: ``s(x) -
    s(substrate) > separation * spread``, with ``spread`` a robust standard deviation
    (IQR / 1.349) of the detector's scores on the normal validation images -- a
    difference within the normal score noise carries no evidence about the
    explanation. Other images are excluded with the reason, never turned into large
    ratios. With fewer than 2 normal validation scores the spread, hence the margin, is
    undefined (unless ``separation=0``): every image is then excluded with that reason."""

    family = "faithfulness"
    needs = frozenset({"detector", "reference"})
    subset = True
    population = "anomalous"
    separated: ClassVar[bool] = True  # uses the separation margin

    def _common(self, *, substrate, patch_size, max_images, separation=1.0) -> None:
        """Check and keep the options every faithfulness metric has."""
        self.substrate = resolve_substrate(substrate).name
        self.patch_size = (
            None if patch_size is None else check_positive_int(patch_size, "patch_size")
        )
        check_positive_int(max_images, "max_images")
        if isinstance(separation, bool) or not float(separation) >= 0:
            raise InputError(f"separation must be a number >= 0, got {separation!r}")
        self.separation = float(separation)

    def calibrations(self) -> list[tuple]:
        return [("detector_scores",)] if self.separated else []

    def _margin(self, explanation) -> float:
        """``separation x`` the robust spread of the normal validation scores; NaN when
        fewer than 2 of them exist (their spread, hence the margin, is undefined)."""
        scores = explanation.calibration.get(("detector_scores",))
        if scores is None or self.separation == 0:
            return 0.0
        v = np.asarray(scores, dtype=float)
        if np.count_nonzero(np.isfinite(v)) < 2:
            return math.nan
        return self.separation * robust_spread(v)

    def _no_margin(self, record, explanation):
        """``(NaN values, reasons)`` when the separation margin is undefined, else None."""
        if not math.isnan(self._margin(explanation)):
            return None
        n = len(record)
        why = "no separation margin (fewer than 2 normal validation scores to spread)"
        _warn_undefined(self.label, np.arange(n), why)
        return np.full(n, np.nan), [why] * n

    def _separation_note(self) -> str:
        return (
            f"images with s(x) - s(substrate) <= {self.separation:g} x the robust spread "
            "of normal validation scores excluded"
        )

    def _run(self, fn, record, explanation, **options):
        """``fn(detector, images, attributions, ...)`` on the record, with the normal
        reference, the run's seed and batch size, and the samples' ids as keys."""
        probe = explanation.probe
        if probe is None:
            raise InputError(f"metric {self.name!r} needs the detector (a ProbeContext)")
        images = record.inputs.images
        att = explanation.maps
        if att.shape[-2:] != images.shape[-2:]:
            att = resize_to(att, images.shape[-2:])
        return fn(
            probe.detector,
            images,
            att,
            substrate=self.substrate,
            reference=probe.reference,
            patch_size=self.patch_size,
            batch_size=probe.batch_size * 4,
            seed=probe.seed,
            keys=list(record.ids),
            **options,
        )


@dataclass
class CurveState(PerImageState):
    """Per-image AUCs and reasons, plus each image's clipped normalised curve (None for
    excluded images), for the mean curve with its band."""

    curves: list = field(default_factory=list)
    fractions: np.ndarray | None = None

    def merge(self, other: CurveState) -> CurveState:
        base = PerImageState.merge(self, other)
        fr = self.fractions if self.fractions is not None else other.fractions
        return CurveState(base.ids, base.values, base.reasons, self.curves + other.curves, fr)


class _CurveMetric(_ProbeMetric):
    kind: ClassVar[str] = "deletion"

    def init(self) -> CurveState:
        return CurveState()

    def update(self, state: CurveState, record, explanation) -> CurveState:
        check_aligned(record, explanation, self.label)
        extend_ids(list(state.ids), record.ids, f"metric {self.label!r}")
        none = self._no_margin(record, explanation)
        if none is not None:
            state.ids.extend(record.ids)
            state.values.extend(none[0].tolist())
            state.reasons.extend(none[1])
            state.curves.extend([None] * len(record))
            return state
        pc = self._run(
            perturbation_curve,
            record,
            explanation,
            kind=self.kind,
            steps=self.steps,
            margin=self._margin(explanation),
            constant="random",
        )
        state.ids.extend(record.ids)
        state.values.extend(np.asarray(pc.auc, dtype=float).tolist())
        state.reasons.extend(pc.excluded)
        state.curves.extend(
            None if np.isnan(a) else c for a, c in zip(pc.auc, pc.curves, strict=True)
        )
        state.fractions = pc.fractions
        return state

    def compute(self, state: CurveState):
        out = super().compute(state)
        kept = [c for c in state.curves if c is not None]
        if kept and state.fractions is not None:
            y = np.vstack(kept)
            mean = y.mean(axis=0)
            half = 1.96 * y.std(axis=0, ddof=1) / np.sqrt(len(y)) if len(y) > 1 else 0 * mean
            out.curves[self.label] = (state.fractions, mean, mean - half, mean + half)
        return out

    def __init__(
        self,
        *,
        steps: int = DEFAULT_STEPS,
        substrate: Removal = "normal_sample",
        patch_size: int = 1,
        separation: float = 1.0,
        max_images: int = 16,
    ) -> None:
        self.steps = check_positive_int(steps, "steps")
        self._common(
            substrate=substrate, patch_size=patch_size, max_images=max_images, separation=separation
        )

    def values(self, record, explanation):  # pragma: no cover - update() is overridden
        raise NotImplementedError

    def note(self) -> str:
        patch = f"; {self.patch_size} px patches" if self.patch_size > 1 else ""
        return (
            f"normalised score (s_k - s_sub) / (s_x - s_sub) clipped to [0, 1]; removed "
            f"pixels replaced by '{self.substrate}' substrate; {self.steps} steps{patch}; "
            "constant maps scored with a random removal order (chance level); "
            + self._separation_note()
        )


@METRICS.register
class DeletionAUC(_CurveMetric):
    """Deletion AUC (Petsiuk et al. 2018, RISE, BMVC): the most relevant pixels are
    replaced by normal content (by default a normal training image drawn per test
    image, ``substrate="normal_sample"``) in ``steps`` equal steps; the detector's
    score, normalised per image as ``(s_k - s_sub) / (s_x - s_sub)`` and clipped to
    [0, 1], is integrated over the fraction removed. **Lower is better** (the anomaly
    evidence goes first). Images whose score is not clearly above their substrate's are
    excluded with the reason; constant maps get a random order (chance level)."""

    name = "deletion_auc"
    higher_is_better = False
    headline = 2
    kind = "deletion"
    curve_kind: ClassVar[str] = "deletion"


@METRICS.register
class InsertionAUC(_CurveMetric):
    """Insertion AUC (Petsiuk et al. 2018, RISE, BMVC): starting from the substrate (by
    default a normal training image drawn per test image), the most relevant pixels are
    put back first; the normalised score ``(s_k - s_sub) / (s_x - s_sub)``, clipped to
    [0, 1], is integrated over the fraction inserted. **Higher is better.** Exclusions
    as :class:`DeletionAUC`."""

    name = "insertion_auc"
    higher_is_better = True
    headline = 2
    kind = "insertion"


@METRICS.register
class AOPC(_ProbeMetric):
    """Area over the perturbation curve (Samek et al. 2017, IEEE TNNLS), normalised:
    ``1/(L+1) sum_k clip((s_0 - s_k) / (s_0 - s_sub), 0, 1)`` as regions are replaced by
    normal content in ``order`` (``"morf"``: most relevant first, **higher is better**;
    ``"lerf"``: least relevant first, **lower is better**); in [0, 1], images not
    separated from their substrate excluded (the functional :func:`aopc` also gives
    Samek's raw-unit value)."""

    name = "aopc"
    higher_is_better = True

    def __init__(
        self,
        *,
        order: Literal["morf", "lerf"] = "morf",
        steps: int = DEFAULT_STEPS,
        substrate: Removal = "normal_sample",
        patch_size: int = 1,
        separation: float = 1.0,
        max_images: int = 16,
    ) -> None:
        if order not in ("morf", "lerf"):
            raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
        self.order = order
        self.steps = check_positive_int(steps, "steps")
        self._common(
            substrate=substrate, patch_size=patch_size, max_images=max_images, separation=separation
        )
        # the direction depends on the order: an instance attribute shadows the class one
        self.higher_is_better = order == "morf"  # type: ignore[misc]

    @property
    def label(self) -> str:
        return f"aopc_{self.order}"

    def values(self, record, explanation):
        none = self._no_margin(record, explanation)
        if none is not None:
            return none
        return self._run(
            aopc,
            record,
            explanation,
            order=self.order,
            steps=self.steps,
            normalise=True,
            margin=self._margin(explanation),
            constant="random",
        )

    def note(self) -> str:
        return (
            f"mean drop relative to the full drop, clipped to [0, 1]; '{self.substrate}' "
            f"substrate; {self.steps} steps; {self.order.upper()}; " + self._separation_note()
        )


@METRICS.register
class FaithfulnessCorrelation(_ProbeMetric):
    """Faithfulness correlation (Bhatt et al. 2020, IJCAI): the Pearson correlation,
    over ``n_samples`` random subsets of ``subset_size`` regions, between the sum of
    attributions in the subset and the score drop when it is replaced by normal content.
    **Higher is better**, in [-1, 1]."""

    name = "faithfulness_correlation"
    higher_is_better = True

    def __init__(
        self,
        *,
        n_samples: int = 100,
        subset_size: int | float = 0.1,
        substrate: Removal = "normal_sample",
        patch_size: int = 1,
        separation: float = 1.0,
        max_images: int = 16,
    ) -> None:
        self.n_samples = check_positive_int(n_samples, "n_samples", minimum=2)
        self.subset_size = subset_size
        self._common(
            substrate=substrate, patch_size=patch_size, max_images=max_images, separation=separation
        )

    def values(self, record, explanation):
        none = self._no_margin(record, explanation)
        if none is not None:
            return none
        return self._run(
            faithfulness_correlation,
            record,
            explanation,
            n_samples=self.n_samples,
            subset_size=self.subset_size,
            margin=self._margin(explanation),
        )

    def note(self) -> str:
        return (
            f"{self.n_samples} random subsets; '{self.substrate}' substrate; "
            + self._separation_note()
        )


@METRICS.register
class Infidelity(_ProbeMetric):
    """Infidelity (Yeh et al. 2019, NeurIPS; captum ``infidelity``):
    ``E_I[(I . a - (f(x) - f(x - I)))^2]`` over random squares replaced by the normal
    reference. **Lower is better** (0 = the attribution predicts every perturbation).
    Needs a differentiable detector score."""

    name = "infidelity"
    higher_is_better = False
    needs = frozenset({"detector", "reference", "gradients"})
    separated = False

    def __init__(
        self,
        *,
        n_samples: int = 32,
        patch_size: int | None = None,
        substrate: Literal["normal", "reconstruction", "black", "blur"] = "normal",
        max_images: int = 16,
    ) -> None:
        self.n_samples = check_positive_int(n_samples, "n_samples")
        self._common(substrate=substrate, patch_size=patch_size, max_images=max_images)

    def values(self, record, explanation):
        return self._run(infidelity, record, explanation, n_samples=self.n_samples)

    def note(self) -> str:
        return f"{self.n_samples} squares replaced by '{self.substrate}' content"
