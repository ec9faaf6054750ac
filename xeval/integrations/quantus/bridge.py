"""Run any Quantus metric on an xeval :class:`~xeval.adapters.base.Detector`.

>>> from xeval.integrations.quantus import run_quantus
>>> scores = run_quantus(quantus.PixelFlipping(features_in_step=16), detector, images,
...                      maps, reference=normal_images)
>>> scores = run_quantus("MaxSensitivity", detector, images, maps,
...                      explain_method="saliency", metric_kwargs={"nr_samples": 5})

Quantus (Hedström et al. 2023, JMLR, ``pip install quantus``; optional for xeval) is
written for classifiers ``(B, n_classes)``; an anomaly detector gives one score per
image. Used as is, several of its defaults silently give wrong numbers on a detector
(DESIGN.md, "Known pitfalls"). :func:`run_quantus` applies the fixes below; each was
checked on **Quantus 0.6.0** (numpy 2.4, torch 2.x CPU) by reading its source and by
``tests/integrations/test_quantus_bridge.py``.

Fixes and deviations from calling Quantus directly
--------------------------------------------------
1. **Single output.** The detector is wrapped in :class:`ScoreAsLogit`, an
   ``nn.Module`` returning ``(B, 1)``: the anomaly score is the one "logit"; ``y_batch``
   (the target) is 0 for every image. A black box (``torch_score()`` is None) is wrapped
   around ``detector.score`` without gradients.
2. **softmax off.** ``softmax=False`` is passed to every ``__call__`` (in 0.6.0 softmax is
   a call argument only; PixelFlipping, RegionPerturbation, IROF, Monotonicity,
   Selectivity, SensitivityN, ... default to ``True``): the softmax of a single logit is
   always 1, so every curve would be flat and every score constant.
3. **No batch-wide normalisation.** Quantus' default ``normalise_func`` (``normalise_by_max``
   without axes) divides the whole batch by one maximum, so an image's score depends on
   the other images in the batch. The bridge passes ``normalise=False`` by default (xeval
   normalises per sample, never per batch). ``normalise="per_sample"`` divides each map
   by its own ``max |a|`` (installed as Quantus' ``normalise_func``, so explanations that
   Quantus recomputes through ``explain_func`` get the same treatment);
   ``normalise=True`` keeps Quantus' batch-wide behaviour (for comparison only).
   ``abs`` is left at the metric's default unless given in ``metric_kwargs`` /
   ``overrides``. ``disable_warnings=True``, ``display_progressbar=False`` and
   ``return_aggregate=False`` (FaithfulnessCorrelation, IROF and SensitivityN default to
   one mean for the batch; the bridge returns per-image values; an explicit
   ``return_aggregate=True`` is refused).
4. **Empty masks are not hits.** Localisation metrics (Quantus' ``LOCALISATION``
   category: PointingGame, RelevanceMassAccuracy, RelevanceRankAccuracy,
   TopKIntersection, AUC, AttributionLocalisation, Focus) get the masks as ``s_batch``
   ``(B, 1, H, W)``; images whose mask is empty are **dropped before Quantus is called**
   and their score is NaN (no warning, as :mod:`xeval.metrics.localisation`). Quantus
   0.6.0's PointingGame writes NaN into a *bool* array for them, which stores True: an
   empty mask is counted as a hit. (PointingGame's ``weighted=True`` has the same bool
   problem and stays unfixed: it returns 0/1.)
5. **Normal substrate.** For perturbation metrics whose perturbation replaces pixels by a
   baseline (PixelFlipping, RegionPerturbation, Selectivity, SensitivityN, IROF,
   MonotonicityCorrelation, FaithfulnessCorrelation, FaithfulnessEstimate, Infidelity,
   Completeness, NonSensitivity), when ``reference=`` (normal images
   ``(N, C, H, W)`` or their mean ``(C, H, W)``) is given, Quantus' baseline
   ("black", "mean", "uniform", ...) is replaced by a ``perturb_func`` that writes the
   **mean normal reference image's** pixels (the same substrate as xeval's
   ``substrate="normal"``; padded like the image for the patch-based metrics). Without
   ``reference`` Quantus' baseline is kept and a
   :class:`~xeval.substrates.SubstrateWarning` says that it creates new
   anomalies. An explicit ``perturb_baseline`` / ``perturb_func`` in ``metric_kwargs`` is
   respected (with the same warning). Continuity's translation is left alone.
6. **Recomputed explanations.** Metrics that re-explain perturbed inputs or models
   (robustness: MaxSensitivity, AvgSensitivity, LocalLipschitzEstimate, Continuity,
   RelativeInput/Output/RepresentationStability; randomisation: MPRT, EfficientMPRT)
   get an ``explain_func`` with Quantus' signature
   ``(model, inputs, targets, **kwargs) -> (B, 1, H, W)`` that calls
   :func:`xeval.explainers.api.explain` with ``explain_method`` / ``explain_params``
   (``reference`` is forwarded as the explainer's normal baseline unless
   ``explain_params`` sets one). They need ``explain_method``.
7. **Randomisation reaches the detector.** MPRT-style metrics randomise the *wrapper
   model's* layers (``deepcopy`` of the model, then ``reset_parameters()`` per layer) and
   explain the copy. :class:`ScoreAsLogit` registers ``detector.torch_module()`` as its
   child ``inner``, and a copy runs the detector's own score function with the original
   module's parameters and buffers **swapped** for the copy's
   (:func:`torch.func.functional_call`), so randomising ``inner.*`` changes the score even
   when ``torch_score()`` is a closure over the original module. The copy is explained
   through a view detector whose ``torch_module()`` is the original module (so Grad-CAM
   and DeepLIFT hooks fire during the swapped call). Before running, the bridge
   randomises every layer of a copy and checks that the score changes; if it does not
   (the score does not run through the module's parameters), or the detector has no
   torch module, or no layer with ``reset_parameters``, it raises
   :class:`~xeval.errors.InputError` instead of reporting a perfectly "stable"
   explanation. ``explain_method="native"`` cannot be randomised and is refused there.
8. **Refused metrics** (:data:`REFUSED_METRICS`, :class:`~xeval.errors.InputError` with
   the reason). Meaningless for one output, they compare ``argmax`` class predictions
   (always 0) or need other classes: ROAD (use
   ``xeval.metrics.deletion_curve(substrate="road")``), Sufficiency, BatchSufficiency,
   Consistency, RandomLogit. Broken or not bridgeable in 0.6.0: Monotonicity (writes the
   baseline into the all-baseline image: always True), SmoothMPRT (explains with its own
   ``quantus.explain``, bypassing ``explain_func``), InputInvariance (edits the bias of
   the model's first module, which a detector's score does not have). On a black box
   (``torch_score()`` None), metrics that recompute explanations with a gradient
   method, randomisation metrics and RelativeRepresentationStability are refused too.
9. **numpy 2.x.** Quantus 0.6.0's ``utils.calculate_auc`` calls ``np.trapz``, removed in
   numpy 2.4; during the call it is replaced by the same trapezoid rule
   (``np.trapezoid``) and restored afterwards.
10. **Reproducible, no side effects.** The call runs with numpy's and torch's global RNGs
    seeded by ``seed`` and restores them afterwards (Quantus draws noise from
    ``np.random`` and seeds torch globally in MPRT). A metric *instance* is not modified
    (the bridge works on a shallow copy); the detector's torch module keeps its
    train/eval mode (:meth:`ScoreAsLogit.train` does not recurse into it).

Shapes: ``images`` ``(B, C, H, W)`` float; ``attributions`` ``(B, H, W)``,
``(B, 1, H, W)`` or ``(B, C, H, W)``; ``masks`` ``(B, H, W)`` at the images' resolution
(Quantus needs images, maps and masks on one grid: upsample maps and images to the
mask's native size first, never downsample masks).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector, find_torch_module
from xeval.checks import check_images
from xeval.errors import InputError
from xeval.substrates import SubstrateWarning, mean_reference

__all__ = [
    "EXPLAIN_FUNC_METRICS",
    "PARAMETER_METRICS",
    "REFUSED_METRICS",
    "ScoreAsLogit",
    "make_explain_func",
    "run_quantus",
    "wrap_detector",
]

#: Quantus version the fixes of this module were checked on.
CHECKED_ON = "0.6.0"

DEFAULT_BATCH = 64

#: Metrics that recompute explanations and so need ``explain_method`` (checked on 0.6.0;
#: robustness and randomisation categories are added by category at run time).
EXPLAIN_FUNC_METRICS = frozenset(
    {
        "MaxSensitivity",
        "AvgSensitivity",
        "LocalLipschitzEstimate",
        "Continuity",
        "Consistency",
        "RelativeInputStability",
        "RelativeOutputStability",
        "RelativeRepresentationStability",
        "MPRT",
        "ModelParameterRandomisation",
        "SmoothMPRT",
        "EfficientMPRT",
        "RandomLogit",
        "InputInvariance",
    }
)

#: Metrics that explain modified *copies* of the model (randomised or shifted layers).
PARAMETER_METRICS = frozenset(
    {"MPRT", "ModelParameterRandomisation", "SmoothMPRT", "EfficientMPRT", "InputInvariance"}
)

#: Metrics refused for a single-output detector, with the reason.
REFUSED_METRICS: dict[str, str] = {
    "ROAD": (
        "it reports the fraction of perturbed images whose argmax class is unchanged; with "
        "one output column the argmax is always 0, so it is 100% for any explanation. Use "
        "xeval.metrics.deletion_curve(..., substrate='road') for ROAD's imputation"
    ),
    "Sufficiency": (
        "it compares argmax class predictions; with one output column they always agree"
    ),
    "BatchSufficiency": (
        "it compares argmax class predictions; with one output column they always agree"
    ),
    "Consistency": (
        "it compares argmax class predictions; with one output column they always agree"
    ),
    "RandomLogit": (
        "it explains a randomly chosen *other* class; an anomaly detector has one output"
    ),
    "Monotonicity": (
        "in Quantus 0.6.0 it writes the baseline into the all-baseline image (its "
        "perturb_func never sees the original pixels), so the image never changes and "
        "every explanation is 'monotonic' (True); use MonotonicityCorrelation or "
        "xeval.metrics.insertion_curve"
    ),
    "SmoothMPRT": (
        "Quantus 0.6.0 explains its noisy copies with its own quantus.explain (captum), "
        "not with explain_func, so xeval's explanation method would not be the one tested; "
        "use MPRT or EfficientMPRT"
    ),
    "InputInvariance": (
        "Quantus 0.6.0 shifts the input and compensates in the bias of the model's first "
        "module (named_modules()[1] must be a conv/linear layer applied to the raw input); "
        "an anomaly detector's score (e.g. a distance to normal data) gives no such layer"
    ),
}

_BLACK_BOX_ONLY_WITH_MODULE = frozenset({"RelativeRepresentationStability"})

# Quantus' baseline-replacement perturbations (by function name: robust to re-imports).
_BASELINE_FUNCS = frozenset(
    {
        "batch_baseline_replacement_by_indices",
        "baseline_replacement_by_indices",
        "baseline_replacement_by_mask",
    }
)

# Call arguments the bridge owns.
_OWNED_CALL = frozenset({"model", "x_batch", "y_batch", "a_batch", "s_batch", "self"})


# --------------------------------------------------------------------------- quantus
def _quantus():
    try:
        import quantus
    except ImportError as e:  # pragma: no cover - exercised only without quantus
        raise InputError(
            "the Quantus bridge needs the optional dependency quantus: pip install quantus "
            f"(checked on quantus {CHECKED_ON}); import failed: {e}"
        ) from None
    return quantus


def _category(metric) -> str:
    cat = getattr(type(metric), "evaluation_category", None)
    return str(getattr(cat, "value", cat) or "").lower()


# --------------------------------------------------------------------------- wrapper
class _Shared:
    """What every (deep) copy of a :class:`ScoreAsLogit` shares: never deep-copied."""

    def __init__(self, detector: Detector, score_fn: Callable | None, module: nn.Module | None):
        self.detector = detector
        self.score_fn = score_fn
        self.module = module
        self.runner: nn.Module | None = None
        if score_fn is not None and module is not None:
            self.runner = _Runner(module, score_fn)

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


class _Runner(nn.Module):
    """Runs ``score_fn`` with ``m`` (the detector's original module) as a child, so that
    ``functional_call`` can swap the module's parameters during the call."""

    def __init__(self, module: nn.Module, score_fn: Callable) -> None:
        super().__init__()
        self.m = module
        self.score_fn = score_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_fn(x)


class ScoreAsLogit(nn.Module):
    """``(B, C, H, W) -> (B, 1)``: the detector's anomaly score as the single logit.

    Parameters
    ----------
    detector:
        The xeval detector.
    score_fn:
        Its differentiable ``torch_score()``; None for a black box, whose ``score``
        (numpy) is called under ``torch.no_grad()`` (no gradients).
    module:
        The torch module ``score_fn`` runs (``detector.torch_module()``), registered as
        the child ``inner`` so that Quantus' layer randomisation reaches it; None if
        unknown.

    Notes
    -----
    The original wrapper calls ``score_fn`` directly. A deep copy (Quantus' randomised
    models) has its own copy of ``inner``; it calls the same ``score_fn`` with the
    original module's parameters and buffers swapped for the copy's through
    :func:`torch.func.functional_call`, so a ``score_fn`` that closes over the original
    module still sees the randomised weights. :meth:`train` only sets this wrapper's
    flag (Quantus requires ``model.training`` False), never the detector module's mode.
    """

    def __init__(
        self,
        detector: Detector,
        score_fn: Callable | None = None,
        module: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self._shared = _Shared(detector, score_fn, module)
        self.inner = module if score_fn is not None else None
        # Quantus removes a *last* nn.Softmax module when softmax=False: never the
        # detector's own (e.g. attention) softmax.
        self.tail = nn.Identity()

    @property
    def detector(self) -> Detector:
        return self._shared.detector

    @property
    def differentiable(self) -> bool:
        return self._shared.score_fn is not None

    def is_original(self) -> bool:
        """True for the wrapper built by the bridge, False for Quantus' copies."""
        return self.inner is None or self.inner is self._shared.module

    def train(self, mode: bool = True) -> ScoreAsLogit:
        self.training = bool(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh = self._shared
        if sh.score_fn is None:
            with torch.no_grad():
                s = sh.detector.score(x.detach().cpu().numpy().astype(np.float32, copy=False))
            out = torch.as_tensor(np.asarray(s, dtype=np.float32), device=x.device)
        elif self.is_original():
            out = sh.score_fn(x)
        else:
            tensors = dict(self.inner.named_parameters())
            tensors.update(self.inner.named_buffers())
            params = {f"m.{k}": v for k, v in tensors.items()}
            out = torch.func.functional_call(sh.runner, params, (x,))
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(np.asarray(out), device=x.device)
        if out.numel() != x.shape[0]:
            raise InputError(
                f"detector {sh.detector.name!r} returned {tuple(out.shape)} scores for "
                f"{x.shape[0]} images; expected one score per image"
            )
        return self.tail(out.reshape(-1, 1))


def _find_module(detector: Detector) -> nn.Module | None:
    return find_torch_module(detector)


def wrap_detector(detector: Detector) -> ScoreAsLogit:
    """The detector as a Quantus-ready ``(B, 1)`` torch model (in eval mode).

    Uses ``detector.torch_score()`` (differentiable) when it is not None, with
    ``detector.torch_module()`` (or the module found by
    :func:`xeval.adapters.base.find_torch_module`) as the randomisable child;
    otherwise a no-grad wrapper around ``detector.score``.
    """
    fn = detector.torch_score()
    fn = fn if callable(fn) else None
    module = _find_module(detector) if fn is not None else None
    return ScoreAsLogit(detector, fn, module).eval()


class _ModelView(Detector):
    """A Detector view of a (randomised / shifted) copy of a :class:`ScoreAsLogit`."""

    differentiable = True
    has_map = False

    def __init__(self, model: ScoreAsLogit) -> None:
        self.model = model
        base = model.detector
        self.name = f"{base.name}[quantus copy]"
        self.input_size = getattr(base, "input_size", (128, 128))

    def fit(self, batches):
        return self

    def predict(self, images):
        with torch.no_grad():
            s = self.model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
        s = s[:, 0].detach().cpu().numpy().astype(np.float32)
        return s, np.zeros((len(images), 0, 0), np.float32)

    def torch_score(self):
        model = self.model
        return lambda x: model(x)[:, 0]

    def torch_module(self):
        # The original module: a copy runs it with swapped parameters, so hooks placed on
        # its layers (Grad-CAM, DeepLIFT) fire.
        return self.model._shared.module


# --------------------------------------------------------------------------- explain
def make_explain_func(
    wrapper: ScoreAsLogit,
    method: str,
    params: Mapping[str, Any] | None = None,
) -> Callable[..., np.ndarray]:
    """A Quantus ``explain_func`` ``(model, inputs, targets, **kwargs) -> (B, 1, H, W)``.

    Calls :func:`xeval.explainers.api.explain` with ``method`` and ``params`` on the
    original detector when Quantus passes the bridge's own wrapper, and on a view of the
    model copy otherwise (randomised layers). ``targets`` are ignored (one output);
    ``kwargs`` other than Quantus' ``device`` are added to ``params``.
    """
    from xeval.explainers.api import explain

    base = dict(params or {})

    def explain_func(model, inputs, targets=None, **kwargs) -> np.ndarray:
        kw = {**base, **{k: v for k, v in kwargs.items() if k != "device"}}
        if isinstance(model, ScoreAsLogit) and model.is_original():
            det: Detector = model.detector
        elif isinstance(model, ScoreAsLogit):
            if method == "native":
                raise InputError(
                    "explain_method='native' (the detector's own anomaly map) cannot be "
                    "recomputed on a randomised copy of the model; use an attribution method"
                )
            det = _ModelView(model)
        else:
            raise InputError(
                f"explain_func got a {type(model).__name__}; expected the bridge's ScoreAsLogit"
            )
        x = np.ascontiguousarray(np.asarray(inputs), dtype=np.float32)
        maps = explain(det, x, method, **kw)
        return np.asarray(maps, dtype=np.float32)[:, None]

    return explain_func


# --------------------------------------------------------------------------- perturbation
class _WriteReference:
    """Quantus ``perturb_func`` writing the mean normal reference at the perturbed pixels.

    Handles Quantus 0.6.0's three call forms: ``(arr (B, F), indices (B, k))`` (flat,
    possibly padded with ``edge`` padding for patch-based metrics), ``(arr (C, H, W),
    indices, indexed_axes)`` and ``(arr (B, C, H, W), mask (B, 1, H, W))`` (IROF).
    """

    __name__ = "write_normal_reference"

    def __init__(self, ref: np.ndarray, patch_sizes: tuple[int, ...] = ()) -> None:
        self.ref = ref.astype(np.float32)  # (C, H, W)
        self.patch_sizes = patch_sizes
        self._flat: dict[int, np.ndarray] = {ref.size: self.ref.reshape(-1)}

    def _padded(self, n: int) -> np.ndarray:
        if n in self._flat:
            return self._flat[n]
        from quantus.helpers.utils import get_padding_size

        c, h, w = self.ref.shape
        candidates = [*self.patch_sizes, *range(1, max(h, w) + 1)]
        for p in candidates:
            ph, pw = get_padding_size(h, p), get_padding_size(w, p)
            if c * (h + sum(ph)) * (w + sum(pw)) == n:
                flat = np.pad(self.ref, ((0, 0), ph, pw), mode="edge").reshape(-1)
                self._flat[n] = flat
                return flat
        raise InputError(
            f"perturb_func: cannot map {n} perturbed features onto the reference image "
            f"{self.ref.shape} (padded layout unknown)"
        )

    def __call__(self, arr, indices=None, mask=None, indexed_axes=None, **kwargs):
        arr = np.asarray(arr)
        out = arr.copy()
        if mask is not None:  # IROF: (B, C, H, W), mask (B, 1, H, W)
            m = np.broadcast_to(np.asarray(mask, bool), arr.shape)
            ref = np.broadcast_to(self.ref, arr.shape)
            out[m] = ref[m]
            return out
        if indices is None:
            raise InputError("perturb_func called without indices or mask")
        if arr.ndim == 2:  # (B, F) with (B, k) or (k,) indices
            ref = self._padded(arr.shape[1])
            idx = np.asarray(indices)
            if idx.ndim == 1:
                out[:, idx] = ref[idx]
            else:
                out[np.arange(len(arr))[:, None], idx] = ref[idx]
            return out
        from quantus.helpers.utils import expand_indices

        ref = self.ref.reshape(arr.shape) if self.ref.size == arr.size else None
        if ref is None:
            raise InputError(
                f"perturb_func: array of shape {arr.shape} does not match the reference "
                f"{self.ref.shape}"
            )
        axes = indexed_axes if indexed_axes is not None else list(range(arr.ndim))
        idx = expand_indices(arr, indices, axes)
        out[idx] = ref[idx]
        return out


def _is_baseline_perturbation(pf) -> bool:
    func = getattr(pf, "func", pf)
    return getattr(func, "__name__", "") in _BASELINE_FUNCS


def _patch_sizes(metric) -> tuple[int, ...]:
    sizes: list[int] = []
    for attr in ("patch_size", "perturb_patch_sizes"):
        v = getattr(metric, attr, None)
        if isinstance(v, int | np.integer):
            sizes.append(int(v))
        elif isinstance(v, list | tuple):
            sizes.extend(int(s) for s in v if isinstance(s, int | np.integer))
    return tuple(sizes)


# --------------------------------------------------------------------------- normalise
def _normalise_per_sample(a: np.ndarray, *args, **kwargs) -> np.ndarray:
    """Divide each sample (first axis) by its own ``max |a|``; all-zero samples stay 0."""
    a = np.asarray(a)
    flat = np.abs(a.reshape(len(a), -1))
    m = flat.max(axis=1) if flat.size else np.zeros(len(a))
    m = np.where(m > 0, m, 1.0).reshape((len(a),) + (1,) * (a.ndim - 1))
    return a / m


# --------------------------------------------------------------------------- checks
def _check_attributions(a, images: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    b, c, h, w = images.shape
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[0] != b or a.shape[2:] != (h, w) or a.shape[1] not in (1, c):
        raise InputError(
            f"attributions must have shape ({b}, {h}, {w}), ({b}, 1, {h}, {w}) or "
            f"({b}, {c}, {h}, {w}) for images {images.shape}, got {np.shape(a)}"
        )
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise InputError("attributions must be finite numbers")
    return np.ascontiguousarray(a, dtype=np.float64 if a.dtype == np.float64 else np.float32)


def _check_masks(masks, images: np.ndarray) -> np.ndarray:
    m = np.asarray(masks)
    b, _, h, w = images.shape
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3 or m.shape != (b, h, w):
        raise InputError(
            f"masks must have shape ({b}, {h}, {w}) (the images' grid: Quantus compares "
            f"maps and masks pixel by pixel), got {np.shape(masks)}"
        )
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise InputError("masks must be bool or 0/1")
        m = m.astype(bool)
    return m


def _init_params(cls) -> dict[str, inspect.Parameter]:
    """Explicit ``__init__`` parameters of a metric class (first class in the MRO that
    names them: ``ModelParameterRandomisation(*args, **kwargs)`` -> MPRT's)."""
    for k in cls.__mro__:
        init = k.__dict__.get("__init__")
        if init is None:
            continue
        ps = {
            n: p
            for n, p in inspect.signature(init).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        if ps:
            return ps
    return {}


def _call_params(cls) -> dict[str, inspect.Parameter]:
    return {
        n: p
        for n, p in inspect.signature(cls.__call__).parameters.items()
        if n not in _OWNED_CALL and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _resolve_metric(metric, metric_kwargs: Mapping[str, Any] | None):
    """(class, instance-or-None, init kwargs) from a class, instance, name or (cls, kw)."""
    q = _quantus()
    kwargs = dict(metric_kwargs or {})
    if isinstance(metric, tuple) and len(metric) == 2 and isinstance(metric[1], Mapping):
        metric, extra = metric
        kwargs = {**dict(extra), **kwargs}
    if isinstance(metric, str):
        cls = getattr(q, metric, None)
        if not (isinstance(cls, type) and issubclass(cls, q.Metric)):
            raise InputError(f"quantus has no metric named {metric!r}")
        metric = cls
    if isinstance(metric, type):
        if not issubclass(metric, q.Metric):
            raise InputError(f"metric must be a quantus.Metric subclass, got {metric!r}")
        return metric, None, kwargs
    if isinstance(metric, q.Metric):
        if kwargs:
            raise InputError(
                "metric_kwargs are init arguments: pass the metric class (or a name) with "
                f"them, not an instance ({type(metric).__name__}) ; got {sorted(kwargs)}"
            )
        return type(metric), metric, kwargs
    raise InputError(
        "metric must be a quantus metric class, instance, name or (class, init_kwargs); "
        f"got {type(metric).__name__}"
    )


def _scores_array(raw) -> np.ndarray:
    """Quantus' return value as a float array; None -> NaN; dict -> columns in key order."""
    if isinstance(raw, dict):
        cols = [_scores_array(v) for v in raw.values()]
        if not cols:
            return np.zeros((0,), float)
        return np.stack([c.reshape(len(c), -1)[:, 0] if c.ndim > 1 else c for c in cols], 1)

    def conv(v):
        if v is None:
            return np.nan
        if isinstance(v, list | tuple | np.ndarray):
            return [conv(u) for u in v]
        try:
            return float(v)
        except (TypeError, ValueError):
            return np.nan

    vals = [conv(v) for v in (raw if isinstance(raw, list | tuple | np.ndarray) else [raw])]
    if vals and isinstance(vals[0], list):
        width = max(len(np.ravel(v)) for v in vals)
        out = np.full((len(vals), width), np.nan)
        for i, v in enumerate(vals):
            r = np.ravel(np.asarray(v, float))
            out[i, : len(r)] = r
        return out
    return np.asarray(vals, dtype=float)


@contextlib.contextmanager
def _quantus_context(seed: int | None) -> Iterator[None]:
    """Seeded global RNGs (restored after), the np.trapz shim, filtered Quantus warnings."""
    from quantus.helpers import utils as q_utils

    np_state = np.random.get_state()  # noqa: NPY002 - Quantus draws from it
    original_auc = q_utils.calculate_auc
    if not hasattr(np, "trapz"):

        def calculate_auc(values, dx: int = 1, batched: bool = False):
            return np.trapezoid(np.array(values), dx=dx, axis=1 if batched else -1)

        q_utils.calculate_auc = calculate_auc
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The combination of the value of the passed")
            if seed is not None:
                np.random.seed(seed)  # noqa: NPY002
                torch.manual_seed(seed)
            yield
    finally:
        q_utils.calculate_auc = original_auc
        np.random.set_state(np_state)  # noqa: NPY002


def _check_randomisation(wrapper: ScoreAsLogit, images: np.ndarray, name: str) -> None:
    det = wrapper.detector
    if not wrapper.differentiable:
        raise InputError(
            f"quantus.{name} modifies the model's parameters (randomised / shifted layers) "
            f"and re-explains it; detector {det.name!r} is a black box (torch_score() is "
            "None). It needs a differentiable detector with a torch module"
        )
    if wrapper.inner is None:
        raise InputError(
            f"quantus.{name} randomises the model's layers, but detector {det.name!r} "
            "gives no torch module (torch_module() is None and no model_/model/module/net "
            "attribute): randomisation could not reach its score. Implement torch_module()"
        )
    layers = [m for _, m in wrapper.inner.named_modules() if hasattr(m, "reset_parameters")]
    if not layers:
        raise InputError(
            f"quantus.{name}: detector {det.name!r}'s torch module has no layer with "
            "reset_parameters(); Quantus would randomise nothing"
        )
    copy_ = copy.deepcopy(wrapper)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        for m in copy_.inner.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    x = torch.from_numpy(images[: min(len(images), 4)])
    with torch.no_grad():
        before = wrapper(x).double().cpu().numpy()
        after = copy_(x).double().cpu().numpy()
    if np.allclose(before, after, rtol=1e-7, atol=1e-12):
        raise InputError(
            f"quantus.{name}: randomising every layer of detector {det.name!r}'s torch "
            "module does not change its torch_score(): the score does not run through the "
            "module's parameters, so the randomisation test would report perfectly stable "
            "explanations. Make torch_module() return the module the score uses"
        )


# --------------------------------------------------------------------------- run
def run_quantus(
    metric,
    detector: Detector,
    images: np.ndarray,
    attributions: np.ndarray | None = None,
    *,
    masks: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    explain_method: str | None = None,
    explain_params: Mapping[str, Any] | None = None,
    metric_kwargs: Mapping[str, Any] | None = None,
    normalise: bool | str = False,
    batch_size: int = DEFAULT_BATCH,
    device: str = "cpu",
    seed: int | None = 0,
    **overrides: Any,
) -> np.ndarray:
    """Run a Quantus metric on ``detector`` and its explanations, with the single-output fixes.

    Parameters
    ----------
    metric:
        A Quantus metric class (``quantus.PixelFlipping``), its name (``"PixelFlipping"``),
        a ``(class, init_kwargs)`` pair, or an instance (used on a shallow copy; its
        settings are kept except ``normalise``, ``disable_warnings`` and a baseline
        perturbation replaced by the normal reference, see the module notes).
    detector:
        An xeval :class:`~xeval.adapters.base.Detector` (higher score = more anomalous).
    images:
        ``(B, C, H, W)`` float images.
    attributions:
        ``(B, H, W)`` (or ``(B, 1, H, W)`` / ``(B, C, H, W)``) maps; None to compute them
        with ``explain_method``.
    masks:
        ``(B, H, W)`` bool ground truth at the images' resolution; required by
        localisation metrics. Images with an empty mask are **not given to Quantus**:
        their score is NaN (Quantus 0.6.0 counts them as pointing-game hits).
    reference:
        Normal images ``(N, C, H, W)`` or their mean ``(C, H, W)``: the substrate written
        by perturbation metrics (mean normal image), and the default baseline of
        ``explain_method``. Without it, perturbation metrics keep Quantus' baseline with a
        :class:`~xeval.substrates.SubstrateWarning`.
    explain_method, explain_params:
        An :func:`xeval.explainers.api.explain` method name and its parameters: used to
        compute missing ``attributions`` and as Quantus' ``explain_func`` for metrics
        that recompute explanations (robustness, randomisation); required by those.
    metric_kwargs:
        Init arguments of the metric class (not with an instance).
    normalise:
        ``False`` (default: maps used as given), ``"per_sample"`` (each map divided by its
        own ``max |a|``) or ``True`` (Quantus' ``normalise_func``: by default one maximum
        for the whole batch — the pitfall, for comparison only).
    batch_size:
        Quantus' ``batch_size`` (images per evaluation batch).
    device:
        Quantus' ``device`` for the input tensors.
    seed:
        Seeds numpy's and torch's global RNGs for the call (restored afterwards); None
        leaves them alone.
    **overrides:
        Further keyword arguments, each sent where the metric accepts it: a ``__call__``
        argument (``softmax``, ``channel_first``, ``explain_func``, ``custom_batch``,
        ``model_predict_kwargs``...) or an ``__init__`` argument (``abs``,
        ``features_in_step``...; for an instance only attributes it already has).
        ``softmax=True`` is accepted but reproduces the flat-curve pitfall.

    Returns
    -------
    numpy.ndarray
        Float scores as Quantus returns them, one row per image: ``(B,)`` for one value
        per image, ``(B, T)`` for curves (PixelFlipping, RegionPerturbation...), ``(B, L)``
        for dict results (MPRT: columns in the dict's order, ``"original"`` first, then
        the randomised layers). NaN where Quantus gives None/NaN and for dropped images.
        A few metrics are not per image by definition and are returned as Quantus gives
        them: SensitivityN gives one correlation (over the batch) per subset size.

    Raises
    ------
    InputError
        quantus not installed, bad shapes, a metric that is meaningless for one output
        (ROAD, Sufficiency, Consistency, RandomLogit), a metric that needs gradients or a
        torch module on a black box, a missing ``explain_method`` / ``masks``, an unknown
        override, or ``return_aggregate=True`` (aggregate the per-image values yourself,
        e.g. ``np.nanmean``).
    """
    _quantus()
    cls, instance, init_kwargs = _resolve_metric(metric, metric_kwargs)
    name = cls.__name__
    if name in REFUSED_METRICS:
        raise InputError(
            f"quantus.{name} is meaningless for a single-output anomaly detector: "
            f"{REFUSED_METRICS[name]}"
        )
    if normalise not in (False, True, "per_sample"):
        raise InputError(f"normalise must be False, True or 'per_sample', got {normalise!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
    x = check_images(images)
    b = len(x)

    # ---- where every override goes
    init_ps = _init_params(cls)
    call_ps = _call_params(cls)
    call_kwargs: dict[str, Any] = {}
    for k, v in overrides.items():
        if k in call_ps:
            call_kwargs[k] = v
        elif k in init_ps:
            init_kwargs[k] = v
        else:
            raise InputError(
                f"quantus.{name} accepts no argument {k!r}; init: {sorted(init_ps)}; call: "
                f"{sorted(call_ps)}"
            )
    for owned in ("normalise", "normalise_func"):
        if owned in init_kwargs:
            raise InputError(
                f"{owned!r} is set by the bridge: use run_quantus(normalise=False | "
                "'per_sample' | True)"
            )
    if init_kwargs.get("return_aggregate"):
        raise InputError(
            "return_aggregate=True gives one number for the batch; the bridge returns per-image "
            "values (aggregate them with np.nanmean)"
        )

    # ---- build the metric (a shallow copy of an instance)
    user_perturb = "perturb_func" in init_kwargs or "perturb_baseline" in init_kwargs
    if instance is None:
        defaults = {
            "disable_warnings": True,
            "display_progressbar": False,
            "return_aggregate": False,
        }
        kw = {k: v for k, v in defaults.items() if k in init_ps}
        kw.update(init_kwargs)
        if "normalise" in init_ps:
            kw["normalise"] = normalise is not False
            if normalise == "per_sample":
                kw["normalise_func"] = _normalise_per_sample
        try:
            m = cls(**kw)
        except (TypeError, ValueError, AssertionError) as e:
            raise InputError(f"quantus.{name}({sorted(kw)}): {e}") from None
    else:
        m = copy.copy(instance)
        m.evaluation_scores, m.all_evaluation_scores = [], []
        for k, v in init_kwargs.items():
            if not hasattr(m, k):
                raise InputError(
                    f"cannot set {k!r} on a quantus.{name} instance; pass the class with "
                    "metric_kwargs instead"
                )
            setattr(m, k, v)
        m._disable_warnings = True
        m._display_progressbar = False
        m.return_aggregate = False
        m.normalise = normalise is not False
        if normalise == "per_sample":
            m.normalise_func = _normalise_per_sample
        elif normalise is True and getattr(m, "normalise_func", None) is None:
            from quantus.functions.normalise_func import normalise_by_max

            m.normalise_func = normalise_by_max

    category = _category(m)
    needs_explain = (
        name in EXPLAIN_FUNC_METRICS or category in ("robustness", "randomisation")
    ) and "explain_func" not in call_kwargs
    param_metric = name in PARAMETER_METRICS or category == "randomisation"

    # ---- the model
    wrapper = wrap_detector(detector)
    if not wrapper.differentiable:
        if param_metric:
            _check_randomisation(wrapper, x, name)  # raises the black-box message
        if name in _BLACK_BOX_ONLY_WITH_MODULE:
            raise InputError(
                f"quantus.{name} reads the model's internal representations (its layers); "
                f"detector {detector.name!r} is a black box (torch_score() is None)"
            )
    if needs_explain and explain_method is None:
        raise InputError(
            f"quantus.{name} recomputes explanations (of perturbed inputs or randomised "
            "models): pass explain_method= (an xeval explain method, e.g. 'saliency') and "
            "explain_params="
        )
    if explain_method is not None and explain_method != "native":
        from xeval.explainers.api import method_names
        from xeval.explainers.pairing import unsupported_reason
        from xeval.registry import EXPLAINERS

        if explain_method not in EXPLAINERS:
            raise InputError(f"unknown explain_method {explain_method!r}; known: {method_names()}")
        why = unsupported_reason(EXPLAINERS[explain_method], detector)
        if why is not None and needs_explain:
            raise InputError(
                f"quantus.{name} recomputes explanations with explain_method="
                f"{explain_method!r}, which needs gradients, and detector {detector.name!r} "
                f"cannot give them: {why}. Use a perturbation method (occlusion, "
                "feature_ablation, kernel_shap) or a differentiable detector"
            )
    if param_metric:
        if explain_method == "native":
            raise InputError(
                f"quantus.{name} re-explains randomised copies of the model; "
                "explain_method='native' (the detector's own map) cannot be randomised"
            )
        _check_randomisation(wrapper, x, name)

    eparams = dict(explain_params or {})
    if reference is not None and explain_method not in (None, "native"):
        eparams.setdefault("reference", reference)
    if attributions is None:
        if explain_method is None:
            raise InputError("attributions is None: pass them or explain_method=")
        from xeval.explainers.api import explain

        attributions = explain(detector, x, explain_method, **eparams)
    a = _check_attributions(attributions, x)

    # ---- perturbation substrate
    pf = getattr(m, "perturb_func", None)
    if pf is not None and _is_baseline_perturbation(pf):
        if reference is not None and not (instance is None and user_perturb):
            ref = mean_reference(reference, x.shape)[0]
            m.perturb_func = _WriteReference(ref, _patch_sizes(m))
        else:
            base = (getattr(pf, "keywords", None) or {}).get("perturb_baseline", "?")
            warnings.warn(
                f"quantus.{name} replaces pixels with Quantus' baseline {base!r}, which "
                "creates new anomalies for an anomaly detector (DESIGN.md); pass reference= "
                "(normal images) to write normal content instead",
                SubstrateWarning,
                stacklevel=2,
            )

    # ---- masks (localisation): drop empty ones
    keep = np.arange(b)
    s_batch = None
    if category == "localisation":
        if masks is None:
            raise InputError(f"quantus.{name} is a localisation metric: pass masks=")
        mk = _check_masks(masks, x)
        keep = np.flatnonzero(mk.reshape(b, -1).any(axis=1))
        s_batch = mk[keep][:, None].astype(np.float32)

    if len(keep) == 0:
        return np.full(b, np.nan)

    # ---- call
    if "softmax" in call_ps:
        call_kwargs.setdefault("softmax", False)
    if needs_explain:
        call_kwargs["explain_func"] = make_explain_func(wrapper, explain_method, eparams)
    if "channel_first" in call_ps:
        call_kwargs.setdefault("channel_first", True)
    if "device" in call_ps:
        call_kwargs.setdefault("device", device)
    if "batch_size" in call_ps:
        call_kwargs.setdefault("batch_size", int(batch_size))
    y = np.zeros(len(keep), dtype=np.int64)
    with _quantus_context(seed):
        try:
            raw = m(
                model=wrapper,
                x_batch=x[keep],
                y_batch=y,
                a_batch=a[keep],
                s_batch=s_batch,
                **call_kwargs,
            )
        except AssertionError as e:
            raise InputError(f"quantus.{name} rejected the inputs: {e}") from None
    out = _scores_array(raw)
    if len(keep) == b:
        return out
    full = np.full((b, *out.shape[1:]), np.nan)
    full[keep] = out
    return full
