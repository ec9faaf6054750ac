"""Robustness of explanations to small input perturbations: max/avg sensitivity and
local Lipschitz estimates.

These metrics call an **explanation function** on perturbed copies of the images:
``explain_fn(images (n, C, H, W) float32) -> maps (n, ...)`` (any shape per image,
e.g. ``(n, H, W)``), so any xeval explainer fits, e.g.
``lambda x: xeval.explain(detector, x, "saliency")``. All ``B * n_samples`` perturbed
copies of a call are explained in chunks of ``batch_size`` images (plus
``ceil(B / batch_size)`` calls for the unperturbed images).

Perturbations (:func:`linf_perturbations`): ``x' = x + delta`` with ``delta`` drawn
uniformly in the L-infinity ball of radius ``radius`` (every pixel and channel moves
independently by at most ``radius``), as captum's ``default_perturb_func``. Image
``i``'s perturbations depend only on ``(seed, i)``, so the numbers do not depend on
``batch_size``. With ``clip=True`` the perturbed images are clipped to ``[0, 1]``
(the distance ``||x - x'||`` then uses the clipped perturbation).

**Anomaly detection caveat.** Uniform pixel noise is itself a (small) anomaly for a
detector trained on clean normal images: a detector that flags noise changes its map
because the input *became* more anomalous, not because its explanation is unstable.
Keep ``radius`` small relative to the ``[0, 1]`` range (default ``0.02``, about 5 grey
levels of 255; below the sensor noise of most industrial images) and compare
explainers **on the same detector and radius**, not across detectors. Checking that
the perturbed images' scores stay close to the originals' (``detector.score``) is a
cheap way to see whether ``radius`` is small enough.

Lower values = more robust explanations, for all three metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import ClassVar, Literal

import numpy as np

from xeval.checks import check_bool, check_positive_int
from xeval.checks import check_images as _check_images
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics._validation import check_map, pow2_scale
from xeval.metrics.base import PerImageMetric
from xeval.registry import METRICS
from xeval.rng import rng as make_rng

__all__ = [
    "avg_sensitivity",
    "linf_perturbations",
    "local_lipschitz",
    "max_sensitivity",
]

DEFAULT_RADIUS = 0.02
DEFAULT_SAMPLES = 10
DEFAULT_BATCH = 64
NORMS = ("fro", "inf", "l1")


# ----------------------------------------------------------------------------- checks


def _check_radius(radius) -> float:
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise InputError(f"radius must be a positive number, got {radius!r}") from None
    if not np.isfinite(r) or r <= 0:
        raise InputError(f"radius must be a positive finite number, got {radius!r}")
    return r


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise InputError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def _vector_norm(v: np.ndarray, norm: str) -> np.ndarray:
    """Norm of each row of ``v (n, d)``: ``fro`` (L2 of the flattened map), ``inf``, ``l1``."""
    if norm == "fro":
        return np.sqrt(np.einsum("ij,ij->i", v, v))
    if norm == "inf":
        return np.abs(v).max(axis=1)
    return np.abs(v).sum(axis=1)


def _scales(*rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a power of two ``s`` (and ``k`` with ``s = 2**-k``) bringing the largest
    magnitude of the rows near 1 when it is near the float limits (else 1): norms of the
    rescaled rows neither overflow nor underflow, and ``norm = scaled norm * 2**k``."""
    m = np.max([np.abs(r).max(axis=1, initial=0.0) for r in rows], axis=0)
    s = pow2_scale(m)
    return s, 1 - np.frexp(s)[1]


def _unscale(x: np.ndarray, k: np.ndarray, what: str) -> np.ndarray:
    """``x * 2**k``; an InputError when the result exceeds float64's range."""
    out = np.ldexp(x, k)
    if not np.all(np.isfinite(out[np.isfinite(x)])):
        raise InputError(
            f"{what} exceeds float64's range (maps near the float limits); use the "
            "normalised form (normalise=True), which is scale-free"
        )
    return out


def _call_explain(explain_fn: Callable, x: np.ndarray) -> np.ndarray:
    out = explain_fn(x)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    a = np.asarray(out)
    if a.ndim < 2 or a.shape[0] != len(x):
        raise InputError(
            f"explain_fn returned shape {a.shape} for {len(x)} images; expected "
            f"({len(x)}, H, W) maps (one per image)"
        )
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"explain_fn returned dtype {a.dtype}; expected real-valued maps")
    try:
        a = check_map(a.reshape(len(x), -1), "explain_fn's maps")
    except InputError as e:
        raise InputError(f"explain_fn returned unusable maps: {e}") from None
    return a.astype(np.float64, copy=False)


# ----------------------------------------------------------------------- perturbations
def linf_perturbations(
    image: np.ndarray,
    index: int | str,
    *,
    radius: float = DEFAULT_RADIUS,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    clip: bool = False,
) -> np.ndarray:
    """The ``n_samples`` perturbed copies ``(n_samples, C, H, W)`` float32 of one image.

    ``x + delta``, ``delta ~ U[-radius, radius]`` independently per pixel and channel
    (the L-infinity ball of captum's ``default_perturb_func``), drawn from the generator
    of ``(seed, index)`` (:func:`xeval.rng.rng`): the image keyed ``index`` -- its
    position in a call, or a sample id -- always gets the same perturbations.
    ``clip=True`` clips the result to ``[0, 1]``.
    """
    rng = make_rng(int(seed), index)
    delta = rng.uniform(-radius, radius, size=(n_samples, *image.shape)).astype(np.float32)
    out = image[None].astype(np.float32) + delta
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def _sample_distances(
    explain_fn: Callable,
    images,
    *,
    radius: float,
    n_samples: int,
    norm: str,
    seed: int,
    batch_size: int,
    clip: bool,
    keys=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(d, d_k, ||x - x'||_2 (B, K), n0, n0_k)``: ``||Phi(x) - Phi(x')|| = d * 2**d_k``
    (``(B, K)``) and ``||Phi(x)|| = n0 * 2**n0_k`` (``(B,)``), norms kept with a
    power-of-two exponent so that maps near the float limits lose nothing."""
    if not callable(explain_fn):
        raise InputError(f"explain_fn must be callable images -> maps, got {explain_fn!r}")
    x = _check_images(images)
    radius = _check_radius(radius)
    k = check_positive_int(n_samples, "n_samples")
    norm = _check_norm(norm)
    batch_size = check_positive_int(batch_size, "batch_size")
    b = len(x)
    if keys is None:
        keys = list(range(b))
    elif len(keys) != b:
        raise InputError(f"keys has {len(keys)} entries for {b} images")
    phi0 = np.concatenate(
        [_call_explain(explain_fn, x[i : i + batch_size]) for i in range(0, b, batch_size)]
    )
    s0, k0 = _scales(phi0)
    phi0_norm = _vector_norm(phi0 * s0[:, None], norm)
    d_phi = np.empty((b, k))
    d_exp = np.zeros((b, k), dtype=np.int64)
    d_x = np.empty((b, k))
    # jobs (image i, sample s) in image-major order, explained in chunks of batch_size
    buf: list[np.ndarray] = []
    owners: list[tuple[int, int]] = []

    def flush() -> None:
        xs = np.concatenate(buf)
        phis = _call_explain(explain_fn, xs)
        if phis.shape[1] != phi0.shape[1]:
            raise InputError(
                f"explain_fn returned maps of {phis.shape[1]} values for perturbed images "
                f"but {phi0.shape[1]} for the originals"
            )
        ii = np.fromiter((o[0] for o in owners), dtype=np.int64, count=len(owners))
        ss = np.fromiter((o[1] for o in owners), dtype=np.int64, count=len(owners))
        sc, kk = _scales(phis, phi0[ii])
        d_phi[ii, ss] = _vector_norm(phis * sc[:, None] - phi0[ii] * sc[:, None], norm)
        d_exp[ii, ss] = kk
        diff = (xs - x[ii]).reshape(len(xs), -1).astype(np.float64)
        d_x[ii, ss] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        buf.clear()
        owners.clear()

    pending = 0
    for i in range(b):
        xp = linf_perturbations(
            x[i], keys[i], radius=radius, n_samples=k, seed=seed, clip=clip
        )  # (K, C, H, W)
        start = 0
        while start < k:
            take = min(k - start, batch_size - pending)
            buf.append(xp[start : start + take])
            owners.extend((i, s) for s in range(start, start + take))
            pending += take
            start += take
            if pending == batch_size:
                flush()
                pending = 0
    if pending:
        flush()
    return d_phi, d_exp, d_x, phi0_norm, k0


def _normalised(dist, metric: str, normalise: bool) -> np.ndarray:
    """``||Phi(x) - Phi(x')|| (/ ||Phi(x)||)`` per (image, sample); NaN with a warning
    where the unperturbed explanation is all zero and ``normalise`` divides by 0."""
    d_phi, d_exp, _, phi0_norm, k0 = dist
    if not normalise:
        return _unscale(d_phi, d_exp, f"{metric} (normalise=False)")
    zero = phi0_norm == 0
    if zero.any():
        warnings.warn(
            f"{metric} is undefined for image(s) {np.flatnonzero(zero)[:10].tolist()}: the "
            "explanation of the unperturbed image is all zero (||Phi(x)|| = 0), so a "
            "relative change is 0/0 or x/0; returning NaN for them (normalise=False gives "
            "the change in map units)",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d_phi / np.where(zero, 1.0, phi0_norm)[:, None]
    out = np.ldexp(ratio, d_exp - k0[:, None])
    out[zero] = np.nan
    return out


def max_sensitivity(
    explain_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    radius: float = DEFAULT_RADIUS,
    n_samples: int = DEFAULT_SAMPLES,
    norm: str = "fro",
    normalise: bool = True,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    clip: bool = False,
    keys=None,
) -> np.ndarray:
    """Max-sensitivity (Yeh et al. 2019) per image ``(B,)``. **Lower = more robust.**

    Definition: ``SENS_max(x) = max_k ||Phi(x + delta_k) - Phi(x)|| / ||Phi(x)||`` over
    ``n_samples`` perturbations ``delta_k`` drawn uniformly in the L-infinity ball of
    radius ``radius`` (Monte-Carlo estimate of the sup over the ball: a lower bound
    that grows with ``n_samples``).

    Normalisation: ``normalise=True`` (default) divides by ``||Phi(x)||`` as Quantus
    and captum 0.9 (``captum.metrics.sensitivity_max``, checked) do; ``normalise=False``
    gives Yeh et al.'s unnormalised definition, in the explanation's units. Where
    ``||Phi(x)|| = 0`` (an all-zero explanation) the relative change is undefined: NaN
    with an :class:`~xeval.errors.UndefinedMetricWarning`, whether or not the perturbed
    explanations move (captum silently divides by 1 there); ``normalise=False`` gives
    the change in map units. Norms are computed with an exact power-of-two rescaling, so
    maps near the float limits (1e300, subnormals) give the same value as rescaled ones;
    an unnormalised value beyond float64's range is an :class:`~xeval.errors.InputError`.

    Parameters
    ----------
    explain_fn:
        ``explain_fn(images (n, C, H, W) float32) -> (n, H, W)`` explanation maps (any
        per-image shape is accepted and flattened), e.g.
        ``lambda x: xeval.explain(detector, x, "saliency")``. It must be deterministic
        for the metric to mean anything (seed stochastic explainers).
    images:
        ``(B, C, H, W)`` float images in ``[0, 1]``.
    radius:
        Radius of the L-infinity ball the perturbations are drawn from (default 0.02,
        small relative to ``[0, 1]`` images: noise is itself anomalous to a detector).
    n_samples:
        Perturbations per image.
    norm:
        Norm of the explanation difference: ``"fro"`` (L2 of the flattened map,
        captum's default), ``"inf"`` (largest absolute change) or ``"l1"``.
    normalise:
        Divide by ``||Phi(x)||`` (same norm), making the value independent of the
        explanation's scale (comparable across explainers).
    seed:
        Seed of the perturbations; image ``i``'s depend only on ``(seed, keys[i])``.
    batch_size:
        Images per ``explain_fn`` call.
    clip:
        Clip perturbed images to ``[0, 1]``.
    keys:
        One key per image (sample ids, or ints) seeding its perturbations; default its
        position in the call. With ids, an image gets the same perturbations whatever
        batch or worker it is in.
    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64.

    References
    ----------
    Yeh, Hsieh, Suggala, Inouye, Ravikumar (2019), "On the (In)fidelity and Sensitivity
    of Explanations", NeurIPS; captum ``captum.metrics.sensitivity_max``.
    """
    dist = _sample_distances(
        explain_fn,
        images,
        radius=radius,
        n_samples=n_samples,
        norm=norm,
        seed=seed,
        batch_size=batch_size,
        clip=clip,
        keys=keys,
    )
    return _normalised(dist, "max-sensitivity", normalise).max(axis=1)


def avg_sensitivity(
    explain_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    radius: float = DEFAULT_RADIUS,
    n_samples: int = DEFAULT_SAMPLES,
    norm: str = "fro",
    normalise: bool = True,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    clip: bool = False,
    keys=None,
) -> np.ndarray:
    """Average sensitivity (Yeh et al. 2019) per image ``(B,)``. **Lower = more robust.**

    Definition: ``SENS_avg(x) = mean_k ||Phi(x + delta_k) - Phi(x)|| / ||Phi(x)||``, the
    Monte-Carlo mean over ``n_samples`` perturbations drawn uniformly in the
    L-infinity ball of radius ``radius``; normalisation as in :func:`max_sensitivity`
    (``normalise=True`` by default, as Quantus' ``AvgSensitivity``).

    Parameters
    ----------
    explain_fn, images, radius, n_samples, norm, normalise, seed, batch_size, clip, keys:
        As in :func:`max_sensitivity`.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64.

    References
    ----------
    Yeh et al. (2019), "On the (In)fidelity and Sensitivity of Explanations", NeurIPS.
    """
    dist = _sample_distances(
        explain_fn,
        images,
        radius=radius,
        n_samples=n_samples,
        norm=norm,
        seed=seed,
        batch_size=batch_size,
        clip=clip,
        keys=keys,
    )
    return _normalised(dist, "average sensitivity", normalise).mean(axis=1)


def local_lipschitz(
    explain_fn: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    radius: float = DEFAULT_RADIUS,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    clip: bool = False,
    keys=None,
) -> np.ndarray:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018) per image ``(B,)``.

    Definition: ``L(x) = max_k ||Phi(x) - Phi(x'_k)||_2 / ||x - x'_k||_2`` over
    ``n_samples`` neighbours ``x'_k = x + delta_k``, ``delta_k`` uniform in the
    L-infinity ball of radius ``radius`` (the same perturbations as
    :func:`max_sensitivity` for the same ``seed``). Alvarez-Melis & Jaakkola maximise
    over the ball (by optimisation for differentiable explainers); random sampling, as
    here and in Quantus, gives a lower bound of that maximum. Norms: L2 of the
    flattened map and of the flattened ``(C, H, W)`` image difference. Not
    normalised: in units of the explanation per unit of input. **Lower = more robust.**

    Parameters
    ----------
    explain_fn, images, radius, n_samples, seed, batch_size, clip, keys:
        As in :func:`max_sensitivity`.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64 (NaN, with a warning, for an image whose perturbations all
        vanished, e.g. clipped away on a saturated image).

    References
    ----------
    Alvarez-Melis & Jaakkola (2018), "On the Robustness of Interpretability Methods",
    ICML Workshop on Human Interpretability; Quantus ``LocalLipschitzEstimate``.
    """
    d_phi, d_exp, d_x, _, _ = _sample_distances(
        explain_fn,
        images,
        radius=radius,
        n_samples=n_samples,
        norm="fro",
        seed=seed,
        batch_size=batch_size,
        clip=clip,
        keys=keys,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_x > 0, d_phi / np.where(d_x > 0, d_x, 1.0), np.nan)
    ratio = _unscale(ratio, d_exp, "the local Lipschitz estimate")
    empty = np.all(np.isnan(ratio), axis=1)
    if empty.any():
        warnings.warn(
            f"local Lipschitz estimate is undefined for image(s) "
            f"{np.flatnonzero(empty)[:10].tolist()}: every perturbation is zero "
            "(||x - x'|| = 0, e.g. clipped away); returning NaN for them",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    out = np.full(len(ratio), np.nan)
    if (~empty).any():
        out[~empty] = np.nanmax(ratio[~empty], axis=1)
    return out


# ------------------------------------------------------------------ registered metrics
class _Sensitivity(PerImageMetric):
    """Base of the robustness metrics: the explanation of a subset of anomalous test
    images and of uniformly perturbed copies (L-infinity ball of ``radius``)."""

    family = "robustness"
    higher_is_better = False
    needs = frozenset({"detector"})
    stage = "probe"
    #: an input-independent map is perfectly stable: compare with input-dependent controls
    verdict_comparators: ClassVar[str] = "input-dependent controls"
    subset = True
    population = "anomalous"
    function: ClassVar[Callable]

    def __init__(
        self,
        *,
        radius: float = DEFAULT_RADIUS,
        n_samples: int = DEFAULT_SAMPLES,
        norm: Literal["fro", "inf", "l1"] = "fro",
        normalise: bool = True,
        max_images: int = 4,
    ) -> None:
        self.radius = _check_radius(radius)
        self.n_samples = check_positive_int(n_samples, "n_samples")
        self.norm = _check_norm(norm)
        self.normalise = check_bool(normalise, "normalise")
        check_positive_int(max_images, "max_images")

    def _kwargs(self) -> dict:
        return {"norm": self.norm, "normalise": self.normalise}

    def values(self, record, explanation):
        probe = explanation.probe
        if probe is None or probe.explain_fn is None:
            raise InputError(f"metric {self.name!r} needs an explanation function")
        kinds = explanation.degenerate()
        values = self._sensitivity(record, probe)
        reasons = [None if k is None else f"degenerate map ({k})" for k in kinds]
        values = np.where([k is not None for k in kinds], np.nan, values)
        return values, reasons

    def _sensitivity(self, record, probe):
        return type(self).function(
            lambda x: probe.explain_fn(probe.detector, x),
            record.inputs.images,
            radius=self.radius,
            n_samples=self.n_samples,
            seed=probe.seed,
            batch_size=probe.batch_size,
            keys=list(record.ids),
            **self._kwargs(),
        )

    def note(self) -> str:
        what = "||map change|| / ||map||" if self.normalise else "||map change||"
        return (
            f"{self.name.split('_')[0]} over {self.n_samples} uniform perturbations of "
            f"radius {self.radius:g} of {what} ({self.norm} norm); degenerate maps (all "
            "zero, constant) are excluded: they are stable by construction"
        )


@METRICS.register
class MaxSensitivity(_Sensitivity):
    """Max-sensitivity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS; captum ``sensitivity_max``): ``max_k ||Phi(x + d_k) -
    Phi(x)|| / ||Phi(x)||`` over ``n_samples`` perturbations uniform in the L-infinity
    ball of ``radius``. **Lower is better** (more robust)."""

    name = "max_sensitivity"
    function = staticmethod(max_sensitivity)


@METRICS.register
class AvgSensitivity(_Sensitivity):
    """Average sensitivity (Yeh et al. 2019, NeurIPS): the mean over ``n_samples``
    uniform perturbations of ``||Phi(x + d_k) - Phi(x)|| / ||Phi(x)||``. **Lower is
    better** (more robust)."""

    name = "avg_sensitivity"
    function = staticmethod(avg_sensitivity)


@METRICS.register
class LocalLipschitz(_Sensitivity):
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018): ``max_k ||Phi(x) -
    Phi(x'_k)||_2 / ||x - x'_k||_2`` over ``n_samples`` uniform neighbours (a lower
    bound of the supremum), in map units per unit of input. **Lower is better**."""

    name = "local_lipschitz"
    function = staticmethod(local_lipschitz)

    def __init__(
        self,
        *,
        radius: float = DEFAULT_RADIUS,
        n_samples: int = DEFAULT_SAMPLES,
        max_images: int = 4,
    ) -> None:
        super().__init__(radius=radius, n_samples=n_samples, max_images=max_images)

    def _kwargs(self) -> dict:
        return {}

    def note(self) -> str:
        return (
            f"max over {self.n_samples} uniform neighbours of radius {self.radius:g} of "
            "||map change||_2 / ||image change||_2"
        )
