"""Model-parameter randomisation test (MPRT; Adebayo et al. 2018), cascading.

Question: does the explanation depend on what the detector learned? Randomise the
detector's parameters layer by layer, from the output side toward the input
(**cascading**: randomisations accumulate), recompute the explanation of the same
images after each step, and measure how similar it still is to the original
explanation. An explanation that stays the same while the model is destroyed
(an edge detector, a saliency method that mostly reflects the input) fails the
sanity check.

How a step is run (:func:`model_parameter_randomisation`):

- the detector is **deep-copied** once; the user's detector is never modified;
- layers = the modules of the detector's torch module (``torch_module()``, else a
  ``model_``/``model``/``module``/``net`` attribute) that own parameters, in reverse
  order of their first call in a forward pass (output side first; registration
  order if a probe forward fails);
- a layer is re-initialised with its own ``reset_parameters()`` under a fixed seed
  (``(seed, step)``), i.e. drawn from the initialisation distribution the layer was
  trained from; a module owning parameters but without ``reset_parameters`` gets
  Gaussian weights with the same standard deviation as its current ones;
- detectors whose scoring depends on **fitted statistics** (a memory bank or Gaussian
  fitted on normal features: anomalib PaDiM/PatchCore, a ``TorchModuleDetector``
  with a ``fit_fn``, the Mahalanobis OOD adapter) are **re-fitted** after each step
  with ``detector.fit(refit_batches)`` (normal images), so the statistics describe the
  randomised features; without ``refit_batches`` they are reported **untestable**
  (comparing randomised features with statistics of the trained ones would measure
  the mismatch, not the explanation). A refit that re-initialises the layers (a
  ``fit`` that trains from scratch, e.g. :class:`~xeval.adapters.ConvAutoencoder`
  forced with ``fitted_statistics=True``) is detected and reported untestable, never
  silently passed;
- detectors without a torch module (black boxes, scikit-learn) are untestable.

:class:`~xeval.adapters.PatchFeatures`: its feature extractor is **not learned** (a
fixed filter bank without parameters, and/or a random CNN whose weights are random by
design and rebuilt from ``seed`` by ``fit``); what the detector learned from normal
data is its **normal statistics** (the kNN memory bank, or the Gaussian). MPRT then
has one step, ``"normal statistics"``: the scoring statistics are replaced by
uninformative ones in the standardised feature space the detector scores in (where
the training features have zero mean and unit variance per dimension): the memory
bank by as many i.i.d. ``N(0, I)`` patches (seeded), the Gaussian(s) by ``N(0, I)``
(mean 0, precision the identity). The per-dimension standardisation is kept (it
defines the units). What remains of the explanation then is what a detector that
learned nothing about normality would give.

:class:`~xeval.adapters.ConvAutoencoder`: its native map is the reconstruction error,
so the map is itself the explanation. Once the decoder is random its output is
nearly input-independent (``AE(x) ~ c``), so the randomised map is about ``(x - c)^2``,
a function of the input alone: the similarity drops for a well-trained AE (whose
error map is small and structured) but stays high for a poorly trained one whose
"reconstruction" was already nearly constant (its map was dominated by the input:
the test then rightly fails).

Similarity of the original map ``a`` and the randomised map ``b`` (per image, per
step): Spearman rank correlation of ``|a|`` and ``|b|`` (``spearman_abs``) and of
``a`` and ``b`` (``spearman_signed``; equal to the former for non-negative maps, e.g.
xeval's default ``abs_sum`` channel reduction: pass ``params={"reduce":
"sum"}`` for signed maps), and SSIM (``skimage.metrics.structural_similarity``,
``data_range=1``, 7x7 window) of ``|a|`` and ``|b|`` each min-max normalised per
sample to ``[0, 1]`` (a constant map becomes all zeros). Constant maps make Spearman
undefined (NaN with an :class:`~xeval.errors.UndefinedMetricWarning`).

Reference: Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim (2018), "Sanity Checks for
Saliency Maps", NeurIPS.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from xeval.adapters.base import find_torch_module, has_fitted_statistics, overrides
from xeval.checks import check_images
from xeval.errors import InputError, UndefinedMetricWarning, XevalError
from xeval.metrics._validation import extend_ids, merged_ids, pow2_scale, undefined
from xeval.metrics.base import Metric, MetricValue, check_aligned
from xeval.registry import METRICS
from xeval.rng import derived_seed, torch_seeded

__all__ = [
    "MPRTSummary",
    "RandomisationResult",
    "UntestableError",
    "model_parameter_randomisation",
    "mprt_summary",
]

ORIGINAL = "original"
STATISTICS = "normal statistics"
DEFAULT_THRESHOLD = 0.5


class UntestableError(XevalError):
    """MPRT cannot be run on this detector (``on_untestable="raise"``)."""


@dataclass(frozen=True)
class RandomisationResult:
    """Result of :func:`model_parameter_randomisation`.

    Attributes
    ----------
    layers:
        Step names, ``L`` of them: ``layers[0] == "original"`` (nothing randomised:
        the explanation recomputed on the copy, re-fitted when refitting is on; its
        similarity is the **noise floor**, 1 for a deterministic explainer and fit),
        then the layers in randomisation order (output side first; cumulative: step
        ``j`` has layers ``1..j`` randomised). Empty when untestable.
    spearman_abs, spearman_signed, ssim:
        ``(B, L)`` similarity of each image's original map with its map at each step
        (see the module docstring). **Higher = more similar**; a faithful explainer's
        similarity drops as layers are randomised.
    status:
        ``"ok"`` or ``"untestable: <reason>"``.
    method:
        The explanation method's name.
    refitted:
        True when the detector was re-fitted after each step.
    notes:
        Caveats (what was randomised, ignored arguments).
    """

    layers: list[str]
    spearman_abs: np.ndarray
    spearman_signed: np.ndarray
    ssim: np.ndarray
    status: str = "ok"
    method: str = ""
    refitted: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def testable(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class MPRTSummary:
    """Per-step mean similarities and a heuristic verdict (see :func:`mprt_summary`)."""

    layers: list[str]
    mean_spearman_abs: np.ndarray
    mean_spearman_signed: np.ndarray
    mean_ssim: np.ndarray
    passes: bool | None
    threshold: float
    reason: str
    status: str


# ----------------------------------------------------------------------- similarity
def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (average ranks for ties); NaN if constant."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    num = (ra * rb).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _minmax(a: np.ndarray) -> np.ndarray:
    """Each map min-max scaled to [0, 1] (exactly rescaled first when near the float
    limits); NaN for a constant map, which has no range to scale."""
    a = a * pow2_scale(np.abs(a).max(axis=(1, 2), initial=0.0))[:, None, None]
    lo = a.min(axis=(1, 2), keepdims=True)
    span = a.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), np.nan)


def _ssim_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    h, w = a.shape[1:]
    win = min(7, h, w)
    win -= 1 - win % 2  # odd
    if win < 3:
        undefined("SSIM", f"maps of {h}x{w} pixels are smaller than its 3x3 window")
        return np.full(len(a), np.nan)
    na, nb = _minmax(np.abs(a)), _minmax(np.abs(b))
    flat = np.isnan(na[:, 0, 0]) | np.isnan(nb[:, 0, 0])
    if flat.any():
        undefined(
            f"SSIM for image(s) {np.flatnonzero(flat)[:10].tolist()}",
            "a constant map has no range to scale to [0, 1] (its SSIM would only say how "
            "flat the other map is)",
        )
    return np.array(
        [
            math.nan if f else structural_similarity(x, y, data_range=1.0, win_size=win)
            for x, y, f in zip(na, nb, flat, strict=True)
        ]
    )


def _similarities(a: np.ndarray, b: np.ndarray, bad: set[int]) -> tuple[np.ndarray, ...]:
    flat_a, flat_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    s_abs = _spearman_rows(np.abs(flat_a), np.abs(flat_b))
    s_sig = _spearman_rows(flat_a, flat_b)
    bad.update(np.flatnonzero(np.isnan(s_abs) | np.isnan(s_sig)).tolist())
    return s_abs, s_sig, _ssim_rows(a, b)


# ------------------------------------------------------------------------- helpers
def _explainer(method: str | Callable, params: dict | None) -> tuple[Callable, str]:
    if callable(method):
        if params:
            raise InputError("params= applies to a method name; bind them in your callable")
        return method, getattr(method, "__name__", type(method).__name__)
    if not isinstance(method, str):
        raise InputError(
            f"method must be an explanation method name or a callable (detector, images) -> "
            f"maps, got {method!r}"
        )
    import xeval  # the public API: metrics do not reach into explainer internals

    p = dict(params or {})

    def fn(detector, images):
        return xeval.explain(detector, images, method, **p)

    return fn, method


def _maps(fn: Callable, detector, x: np.ndarray) -> np.ndarray:
    out = fn(detector, x)
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    a = np.asarray(out, dtype=np.float64)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[0] != len(x):
        raise InputError(
            f"the explanation returned shape {a.shape} for {len(x)} images; expected "
            f"({len(x)}, H, W) maps"
        )
    if not np.all(np.isfinite(a)):
        raise InputError("the explanation holds non-finite values (NaN or inf)")
    return a


def _param_layers(module) -> list[tuple[str, Any]]:
    """Modules owning parameters directly (recurse=False), in registration order."""
    return [
        (name, m)
        for name, m in module.named_modules()
        if name and any(True for _ in m.parameters(recurse=False))
    ] or ([("", module)] if any(True for _ in module.parameters(recurse=False)) else [])


def _execution_order(detector, module, candidates, x: np.ndarray) -> tuple[list, bool]:
    """Candidates sorted by first call in a probe forward (``detector.score``)."""
    order: list[str] = []
    handles = []
    for name, m in candidates:

        def hook(_m, _inp, _out, _name=name):
            if _name not in order:
                order.append(_name)

        handles.append(m.register_forward_hook(hook))
    try:
        detector.score(x[:1])
    except Exception:  # noqa: BLE001 - fall back to registration order
        order = []
    finally:
        for h in handles:
            h.remove()
    if not order:
        return list(candidates), False
    by_name = dict(candidates)
    return [(n, by_name[n]) for n in order], True


def _randomise(module, seed: int) -> None:
    import torch

    with torch_seeded(seed), torch.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            return
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 1.0
            p.normal_(0.0, std if std > 0 else 1.0)


def _snapshot(module) -> dict[str, Any]:
    """The layer's own parameters (buffers such as BatchNorm running statistics may
    legitimately be updated by a refit)."""
    return {k: p.detach().clone() for k, p in module.named_parameters(recurse=False)}


def _same(snap: dict[str, Any], module) -> bool:
    import torch

    now = dict(module.named_parameters(recurse=False))
    return all(k in now and torch.equal(now[k].detach(), v) for k, v in snap.items())


def _as_batches(refit_batches) -> list:
    if isinstance(refit_batches, np.ndarray) and refit_batches.ndim == 4:
        return [refit_batches]
    if isinstance(refit_batches, Iterable):
        return list(refit_batches)  # re-iterable: fit is called once per step
    raise InputError(
        "refit_batches must be an iterable of (B, C, H, W) normal-image arrays (or one "
        f"such array), got {type(refit_batches).__name__}"
    )


def _untestable(
    reason: str, b: int, method: str, on_untestable: str, notes=()
) -> RandomisationResult:
    status = reason if reason.startswith("untestable") else f"untestable: {reason}"
    if on_untestable == "raise":
        raise UntestableError(f"model-parameter randomisation test: {status}")
    warnings.warn(
        f"model-parameter randomisation test: {status}", UndefinedMetricWarning, stacklevel=3
    )
    empty = np.empty((b, 0))
    return RandomisationResult(
        layers=[],
        spearman_abs=empty,
        spearman_signed=empty.copy(),
        ssim=empty.copy(),
        status=status,
        method=method,
        refitted=False,
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------- MPRT
def model_parameter_randomisation(
    detector,
    images: np.ndarray,
    method: str | Callable = "saliency",
    *,
    params: dict | None = None,
    layers: list[str] | None = None,
    refit_batches: Iterable[np.ndarray] | np.ndarray | None = None,
    fitted_statistics: bool | None = None,
    seed: int = 0,
    on_untestable: str = "return",
) -> RandomisationResult:
    """Cascading model-parameter randomisation test (Adebayo et al. 2018).

    Definition: with ``a`` the explanation of image ``x`` by the trained detector and
    ``b_j`` its explanation after the ``j`` layers nearest the output are randomised
    (cumulatively; the detector re-fitted on normal data where its scoring uses fitted
    statistics), report ``sim(a, b_j)`` per image and step for three similarities:
    Spearman of ``|a|, |b_j|``, Spearman of ``a, b_j`` and SSIM of the min-max
    normalised ``|a|, |b_j|``. **A faithful explanation's similarity drops as layers
    are randomised; high similarity at the last step fails the sanity check.** See
    the module docstring for what is randomised and how.

    Parameters
    ----------
    detector:
        A fitted :class:`~xeval.adapters.Detector` with a torch module. It is
        deep-copied; the original is never modified.
    images:
        ``(B, C, H, W)`` float32 images at the detector's input size.
    method:
        An :func:`xeval.explain` method name (``"saliency"``, ``"native"``...) or a
        callable ``(detector, images) -> (B, H, W)`` maps (e.g. a control that ignores
        the detector, which must then keep a similarity of 1).
    params:
        Keyword parameters of the method (e.g. ``{"reference": normal_images}``).
    layers:
        Restrict the cascade to these module names (still randomised output side
        first); None: every module owning parameters.
    refit_batches:
        Normal images ``(B, C, H, W)`` arrays (an iterable of them, or one array),
        passed to ``fit`` of the copy after each step, for detectors with fitted
        statistics. Materialised once (``list``) and reused at every step.
    fitted_statistics:
        Whether the detector's scoring depends on fitted statistics; None: detected
        (:func:`has_fitted_statistics`).
    seed:
        Seed of the re-initialisations (step ``j`` uses ``(seed, j)``).
    on_untestable:
        ``"return"`` (default): return a result whose ``status`` is
        ``"untestable: <reason>"`` with empty arrays, and warn
        (:class:`~xeval.errors.UndefinedMetricWarning`); ``"raise"``: raise
        :class:`UntestableError`.

    Returns
    -------
    RandomisationResult
        ``layers`` (L step names, ``"original"`` first), ``spearman_abs``,
        ``spearman_signed``, ``ssim`` of shape ``(B, L)``, ``status``.

    References
    ----------
    Adebayo et al. (2018), "Sanity Checks for Saliency Maps", NeurIPS; Quantus
    ``MPRT`` (cascading, "top_down").
    """
    if on_untestable not in ("return", "raise"):
        raise InputError(f"on_untestable must be 'return' or 'raise', got {on_untestable!r}")
    x = check_images(images)
    b = len(x)
    fn, name = _explainer(method, params)
    notes: list[str] = []

    work = copy.deepcopy(detector)

    steps: list[tuple[str, Callable[[], str | None]]] = []
    refit = False
    batches: list | None = None
    module = None
    if overrides(work, "randomise"):
        note = work.randomise_note()
        if note:
            notes.append(note)
        if refit_batches is not None:
            notes.append(
                f"refit_batches ignored: {type(work).__name__} randomises what it learned "
                "itself (Detector.randomise)"
            )
        steps.append((STATISTICS, lambda: work.randomise(seed)))
    else:
        module = find_torch_module(work)
        if module is None:
            return _untestable(
                "the detector exposes no torch module (a black box): its parameters "
                "cannot be randomised",
                b,
                name,
                on_untestable,
            )
        candidates = _param_layers(module)
        if layers is not None:
            known = {n for n, _ in candidates}
            unknown = [n for n in layers if n not in known]
            if unknown:
                raise InputError(
                    f"layers {unknown} are not modules owning parameters in the detector's "
                    f"torch module; known: {sorted(known)}"
                )
            candidates = [(n, m) for n, m in candidates if n in set(layers)]
        if not candidates:
            return _untestable(
                "the detector's torch module has no parameters to randomise",
                b,
                name,
                on_untestable,
            )
        ordered, by_call = _execution_order(work, module, candidates, x)
        if not by_call:
            notes.append("layer order: registration order (the probe forward failed)")
        ordered = ordered[::-1]  # output side first
        stats = has_fitted_statistics(work) if fitted_statistics is None else fitted_statistics
        if stats:
            if refit_batches is None:
                return _untestable(
                    "untestable: detector has fitted statistics and no refit data was given "
                    "(pass refit_batches=normal images)",
                    b,
                    name,
                    on_untestable,
                )
            batches = _as_batches(refit_batches)
            refit = True
        for j, (lname, mod) in enumerate(ordered, start=1):

            def step(_m=mod, _j=j) -> str | None:
                _randomise(_m, derived_seed(seed, _j))
                return None

            steps.append((lname, step))

    phi0 = _maps(fn, work, x)  # the trained detector's explanation (on the copy)
    names = [ORIGINAL]
    cols: list[tuple[np.ndarray, ...]] = []
    bad: set[int] = set()
    snaps: dict[str, dict] = {}

    def do_refit(step_name: str) -> str | None:
        work.refit(batches)
        if find_torch_module(work) is not module:
            return (
                f"untestable: fit() replaced the detector's torch module (after step "
                f"{step_name!r}): it trains the model rather than fitting statistics"
            )
        for lname, snap in snaps.items():
            if not _same(snap, module.get_submodule(lname) if lname else module):
                return (
                    f"untestable: fit() re-initialised or retrained the randomised layer "
                    f"{lname!r}; the randomisation cannot survive a refit"
                )
        return None

    # step 0: nothing randomised (noise floor)
    if refit:
        err = do_refit(ORIGINAL)
        if err:
            return _untestable(err, b, name, on_untestable, notes)
    cols.append(_similarities(phi0, _maps(fn, work, x), bad))
    for lname, step in steps:
        err = step()
        if err:
            return _untestable(err, b, name, on_untestable, notes)
        if module is not None:
            snaps[lname] = _snapshot(module.get_submodule(lname) if lname else module)
        if refit:
            err = do_refit(lname)
            if err:
                return _untestable(err, b, name, on_untestable, notes)
        cols.append(_similarities(phi0, _maps(fn, work, x), bad))
        names.append(lname or "<root>")
    if bad:
        warnings.warn(
            f"Spearman correlation is undefined for image(s) {sorted(bad)[:10]} at some "
            "steps: a constant explanation map has no ranking; NaN there",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    s_abs, s_sig, ssim = (np.stack([c[i] for c in cols], axis=1) for i in range(3))
    return RandomisationResult(
        layers=names,
        spearman_abs=s_abs,
        spearman_signed=s_sig,
        ssim=ssim,
        status="ok",
        method=name,
        refitted=refit,
        notes=tuple(notes),
    )


def mprt_summary(
    result: RandomisationResult, *, threshold: float = DEFAULT_THRESHOLD
) -> MPRTSummary:
    """Mean similarity per step and a **heuristic** pass/fail verdict.

    ``passes`` is True when the mean ``spearman_abs`` (over images, NaN ignored) at
    the **last** step (every layer randomised) is below ``threshold`` (default 0.5)
    while step 0 (nothing randomised) is at or above it. This threshold is a
    convention, not part of Adebayo et al. (who show curves, not a test): a
    similarity of 0.5 still means the randomised model's explanation shares much of
    the original's ranking. Read the per-step curve, not only the boolean. None when
    the test was untestable or every similarity is NaN.
    """
    thr = float(threshold)
    if not result.testable or result.spearman_abs.shape[1] == 0:
        empty = np.empty(0)
        return MPRTSummary([], empty, empty, empty, None, thr, result.status, result.status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        m_abs = np.nanmean(result.spearman_abs, axis=0)
        m_sig = np.nanmean(result.spearman_signed, axis=0)
        m_ssim = np.nanmean(result.ssim, axis=0)
    first, last = m_abs[0], m_abs[-1]
    if not (np.isfinite(first) and np.isfinite(last)):
        passes, reason = None, "Spearman undefined (constant maps)"
    elif len(m_abs) < 2:
        passes, reason = None, "no layer was randomised"
    elif first < thr:
        passes = False
        reason = (
            f"step 0 (nothing randomised) already has mean Spearman {first:.3f} < {thr}: "
            "the explanation is not reproducible, the test cannot separate"
        )
    elif last < thr:
        passes = True
        reason = f"mean Spearman(|a|) at the last step {last:.3f} < {thr} (heuristic)"
    else:
        passes = False
        reason = (
            f"mean Spearman(|a|) at the last step {last:.3f} >= {thr}: the explanation "
            "barely depends on the model's parameters (heuristic)"
        )
    return MPRTSummary(
        layers=list(result.layers),
        mean_spearman_abs=m_abs,
        mean_spearman_signed=m_sig,
        mean_ssim=m_ssim,
        passes=passes,
        threshold=thr,
        reason=reason,
        status=result.status,
    )


#: Short alias of :func:`mprt_summary`.
summary = mprt_summary


# ------------------------------------------------------------------ registered metric
@dataclass
class MPRTState:
    """Per-image similarity at the last randomisation step, and what the test said."""

    ids: list = field(default_factory=list)
    values: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def merge(self, o: MPRTState) -> MPRTState:
        ids = merged_ids(self.ids, o.ids, "merging MPRT states")
        return MPRTState(ids, self.values + o.values, self.notes + o.notes)


@METRICS.register
class MPRTSpearman(Metric):
    """Cascading model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks
    for Saliency Maps", NeurIPS): Spearman correlation of ``|a|`` between the
    explanation of the trained detector and of the fully randomised one (layers
    re-initialised from the output side, fitted statistics re-fitted; detectors whose
    learned part is not a stack of layers randomise it through ``Detector.randomise``),
    per image of a subset of anomalous images. **Lower is better** (the explanation
    depends on what the detector learned). Its verdict is absolute: the mean similarity
    against ``threshold`` (0.5 by default, the heuristic of :func:`mprt_summary`) --
    controls ignore the detector, so their similarity is 1 by construction and not a
    valid comparator."""

    name = "mprt_spearman"
    higher_is_better = False
    family = "sanity"
    needs = frozenset({"detector"})
    per_image = True
    stage = "probe"
    subset = True
    population = "anomalous"
    verdict_comparators: ClassVar[str] = "threshold"

    def __init__(self, *, threshold: float = DEFAULT_THRESHOLD, max_images: int = 4) -> None:
        from xeval.checks import check_positive_int

        check_positive_int(max_images, "max_images")
        if isinstance(threshold, bool) or not -1 <= float(threshold) <= 1:
            raise InputError(f"threshold must be a Spearman value in [-1, 1], got {threshold!r}")
        self.verdict_threshold = float(threshold)

    def init(self) -> MPRTState:
        return MPRTState()

    def update(self, state: MPRTState, record, explanation) -> MPRTState:
        probe = explanation.probe
        if probe is None or probe.explain_fn is None:
            raise InputError(f"metric {self.name!r} needs an explanation function")
        check_aligned(record, explanation, self.label)
        extend_ids(list(state.ids), record.ids, f"metric {self.label!r}")
        refit = probe.normal_batches() if probe.normal_batches is not None else None
        res = model_parameter_randomisation(
            probe.detector,
            record.inputs.images,
            probe.explain_fn,
            refit_batches=refit,
            seed=probe.seed,
        )
        if res.testable:
            vals = res.spearman_abs[:, -1]
            state.notes.append(mprt_summary(res).reason)
        else:
            vals = np.full(len(record), np.nan)
            state.notes.append(res.status)
        state.ids.extend(record.ids)
        state.values.extend(np.asarray(vals, dtype=float).tolist())
        return state

    def merge(self, a: MPRTState, b: MPRTState) -> MPRTState:
        return a.merge(b)

    def compute(self, state: MPRTState) -> MetricValue:
        per = np.asarray(state.values, dtype=float)
        ok = per[~np.isnan(per)]
        note = (
            "Spearman(|map|) between the explanation of the trained detector and of the "
            "fully randomised one (cascading; lower = passes the sanity check)"
        )
        notes = [n for n in dict.fromkeys(state.notes) if n]
        if notes:
            note += "; " + "; ".join(notes)
        return MetricValue(
            value=float(ok.mean()) if ok.size else undefined(self.label, "no image with a value"),
            n=int(ok.size),
            per_image=per,
            ids=list(state.ids),
            note=note,
        )
