"""The base of the captum-backed attribution explainers: score plumbing, baselines,
chunking, seeding, channel reduction.

Gradient and perturbation attributions of a detector's **image anomaly score**.

Every explainer here wraps a captum attribution class (captum is not copied) called on
a scalar-score forward function ``(N, C, H, W) -> (N,)`` with ``target=None``:

- gradient methods use ``detector.torch_score()`` (differentiable);
- perturbation methods (occlusion, feature ablation, KernelSHAP) use it too when it
  exists (under ``torch.no_grad``), and otherwise ``detector.score`` on numpy arrays,
  so they also explain black boxes.

What xeval adds around captum: validation of the score function (shape ``(N,)``,
finite, differentiable; errors name the detector and what it returned), baselines
(normal reference images by default, see :mod:`xeval.substrates`), memory
bounds (``internal_batch_size`` for every method, including GradientSHAP which captum
does not batch), seeding of the random methods without touching the caller's RNG,
an explicit channel reduction (:mod:`xeval.explainers.reduce`), and the pairing check
(an impossible method/detector pairing raises :class:`~xeval.errors.InputError` that
lists the methods that would work).

Batch independence: an image's attribution depends only on the image, the method's
parameters and its sample id -- never on the other images of the call, on
``internal_batch_size`` or on how the caller splits a set of images into calls
(numerically up to float rounding). The random methods (GradientSHAP, SmoothGrad,
KernelSHAP) draw each image's randomness from ``(seed, sample id)`` (see
:mod:`xeval.rng`; a bare array's ids are the positions ``"0"``, ``"1"``...), and the
hook-based methods (Grad-CAM, DeepLIFT, DeepLiftShap) never give the detector more rows
in one forward than it runs in one pass of its modules (see
:func:`single_run_rows`).

Sign convention: attributions are w.r.t. the anomaly score (higher = more anomalous),
so a positive signed attribution means "this pixel makes the image more anomalous
(than the baseline)". The default reduction ``abs_sum`` drops the sign; ``reduce="sum"``
keeps it.

Each explainer's :meth:`~AttributionExplainer.attribute` gives the signed
``(B, C, H, W)`` attribution before reduction; :meth:`~AttributionExplainer.explain`
the reduced ``(B, H, W)`` float32 map at the images' resolution.
"""

from __future__ import annotations

import warnings
import weakref
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector, find_torch_module
from xeval.checks import check_images
from xeval.errors import InputError
from xeval.explainers.base import Explainer, ids_of
from xeval.explainers.reduce import check_reduce, reduce_channels
from xeval.record import Inputs
from xeval.rng import torch_seeded
from xeval.substrates import Baseline, NormalReference, resolve_baseline

__all__ = [
    "AttributionExplainer",
    "ScoreFunction",
    "ScoreModule",
    "detector_label",
    "find_module",
    "numpy_score_forward",
    "single_run_rows",
]

#: The detector's torch module (``torch_module()`` or a module attribute).
find_module = find_torch_module


# ---------------------------------------------------------------------------------------
# score plumbing
# ---------------------------------------------------------------------------------------
def detector_label(detector: Detector) -> str:
    """``'name' (ClassName)`` for error messages."""
    return f"{getattr(detector, 'name', '?')!r} ({type(detector).__name__})"


class ScoreFunction:
    """A validated scalar-score forward function ``(N, C, H, W) [, *extra] -> (N,)``.

    Checks every output: a torch tensor of shape ``(N,)`` (``(N, 1)`` is squeezed),
    finite, and (when ``need_grad`` and the input requires grad) attached to the
    input's graph. Errors are :class:`~xeval.errors.InputError` naming the method, the
    detector and what its function returned.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        detector: Detector,
        method: str,
        source: str = "torch_score()",
        need_grad: bool = True,
    ) -> None:
        self.fn = fn
        self.detector = detector
        self.method = method
        self.source = source
        self.need_grad = need_grad

    def _where(self) -> str:
        return f"{self.method}: detector {detector_label(self.detector)} {self.source}"

    def __call__(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        out = self.fn(x, *extra)
        if isinstance(out, np.ndarray):
            out = torch.as_tensor(out, device=x.device)
        if not isinstance(out, torch.Tensor):
            raise InputError(
                f"{self._where()} returned {type(out).__name__}; expected a torch.Tensor "
                f"of shape ({x.shape[0]},), one score per image"
            )
        n = x.shape[0]
        if out.ndim == 2 and tuple(out.shape) == (n, 1):
            out = out[:, 0]
        if tuple(out.shape) != (n,):
            raise InputError(
                f"{self._where()} returned shape {tuple(out.shape)} for an input of shape "
                f"{tuple(x.shape)}; expected ({n},): one scalar anomaly score per image"
            )
        if self.need_grad and torch.is_grad_enabled() and x.requires_grad and not out.requires_grad:
            raise InputError(
                f"{self._where()} returned a tensor that does not require grad: the score "
                "is not differentiable w.r.t. the input (it detaches, goes through numpy "
                "or runs under torch.no_grad()). Gradient methods need a differentiable "
                "score; perturbation methods (occlusion, feature_ablation) do not"
            )
        if not out.is_floating_point():
            out = out.float()
        finite = torch.isfinite(out.detach())
        if not bool(finite.all()):
            bad = out.detach()[~finite]
            raise InputError(
                f"{self._where()} returned {int(bad.numel())} non-finite score(s) out of {n} "
                f"(first: {float(bad[0])}) for an input of shape {tuple(x.shape)}"
            )
        return out


class ScoreModule(nn.Module):
    """A tiny ``nn.Module`` around a score callable, for captum classes that need a
    module (DeepLIFT, DeepLiftShap).

    ``inner`` (the detector's torch module, when known) is registered as a child so that
    DeepLIFT can hook the non-linear modules it contains (captum's
    ``SUPPORTED_NON_LINEAR``: ``nn.ReLU``, ``nn.ELU``, ``nn.LeakyReLU``, ``nn.Sigmoid``,
    ``nn.Tanh``, ``nn.Softplus``, ``nn.MaxPool*``, ``nn.Softmax``). Functional ops
    (``F.relu``, ``x ** 2``, ``torch.amax``...) cannot be hooked: DeepLIFT treats them
    with their plain gradient at the current input (not the rescale rule), so
    summation-to-delta is then only approximate.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], inner: nn.Module | None = None):
        super().__init__()
        self.fn = fn
        self.inner = inner

    def forward(self, x: torch.Tensor, *extra: Any) -> torch.Tensor:
        return self.fn(x, *extra)


def _torch_score_or_none(detector: Detector) -> Callable | None:
    fn = detector.torch_score()
    return fn if callable(fn) else None


def numpy_score_forward(detector: Detector) -> Callable[[torch.Tensor], torch.Tensor]:
    """A torch forward (no gradients) over ``detector.score`` on numpy arrays."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        s = detector.score(x.detach().cpu().numpy().astype(np.float32, copy=False))
        s = np.asarray(s)
        if not np.issubdtype(s.dtype, np.number):
            raise InputError(
                f"detector {detector_label(detector)} score() returned dtype {s.dtype}; "
                "expected float scores of shape (N,)"
            )
        return torch.as_tensor(s.astype(np.float32), device=x.device)

    return forward


def _slice_extra(extra: tuple, sl: slice) -> tuple:
    return tuple(e[sl] if isinstance(e, torch.Tensor) and e.ndim > 0 else e for e in extra)


def _repeat_extra(extra: tuple, n: int) -> tuple:
    """Each per-input tensor of ``extra`` with every row repeated ``n`` times in a row
    (the layout of ``n`` consecutive copies of each input)."""
    return tuple(
        e.repeat_interleave(n, dim=0) if isinstance(e, torch.Tensor) and e.ndim > 0 else e
        for e in extra
    )


def _keys_of(images: Inputs | np.ndarray, n: int) -> list[str]:
    """The sample ids seeding per-sample draws (positions for arrays and tensors)."""
    return ids_of(images) if isinstance(images, Inputs | np.ndarray) else [str(i) for i in range(n)]


# ---------------------------------------------------------------------------------------
# modules that must run once per forward (captum's layer and DeepLIFT hooks)
# ---------------------------------------------------------------------------------------
_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _module_runs(forward: Callable, probe: tuple, modules: list[nn.Module], n: int) -> int:
    """How many times the most-run module of ``modules`` runs in one no-grad forward of
    ``n`` copies of ``probe = (x[:1], extra[:1])``."""
    counts = {id(m): 0 for m in modules}

    def hook(m, inp, out):
        counts[id(m)] += 1

    def rep(t: Any) -> Any:
        if isinstance(t, torch.Tensor) and t.ndim > 0:
            return t.repeat(n, *([1] * (t.ndim - 1)))
        return t

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.no_grad():
            forward(rep(probe[0]), *(rep(e) for e in probe[1]))
    finally:
        for h in handles:
            h.remove()
    return max(counts.values(), default=0)


def single_run_rows(
    forward: Callable,
    probe: tuple,
    modules: list[nn.Module],
    n: int,
    *,
    detector: Detector | None = None,
) -> int:
    """The number of rows, at most ``n``, that one forward pass may hold so that each of
    ``modules`` runs at most once in it; 0 when one row already runs one of them twice.

    captum's layer attributions (Grad-CAM) and DeepLIFT's rescale rules keep **one**
    input/output per hooked module and forward call. A detector whose score function
    splits a large input into chunks of its own batch size (e.g.
    :class:`~xeval.adapters.TorchModuleDetector`, ``batch_size``) runs every module once
    per chunk, so a captum call with more rows than that chunk would keep only the last
    chunk's activations (Grad-CAM: maps for the last chunk only; DeepLIFT: captum's
    "module ... used more than once" error). Found with no-grad probe forwards on copies
    of ``probe = (x[:1], extra[:1])`` (``n`` rows, then ``ceil(n / runs)`` until a
    forward runs each module once), cached per module set, score function and
    ``detector.batch_size``.
    """
    if n < 1 or not modules:
        return max(n, 0)
    key = (
        tuple(id(m) for m in modules),
        getattr(forward, "source", None),
        getattr(detector, "batch_size", None),
        n,
    )
    cache = _RUNS.setdefault(modules[0], {})
    if key in cache:
        return cache[key]
    rows = n
    while True:
        runs = _module_runs(forward, probe, modules, rows)
        if runs <= 1:
            break
        if rows == 1:
            rows = 0
            break
        rows = -(-rows // runs)  # a forward that chunks by s rows runs ceil(rows / s) times
    cache[key] = rows
    return rows


_NOT_GRAD = "does not require grad"


# ---------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------
class AttributionExplainer(Explainer):
    """Base of the captum-backed explainers.

    Subclasses set :attr:`name`, :attr:`requires`, :attr:`baseline_kind` (None,
    ``"single"`` or ``"distribution"``), :attr:`gradient` and implement
    :meth:`_attribute`.

    Parameters common to all
    ------------------------
    reduce:
        Channel reduction of :meth:`explain`: ``"abs_sum"`` (default), ``"sum"``
        (signed), ``"l2"``, ``"max_abs"``.
    internal_batch_size:
        Upper bound on the number of images passed to the detector in one forward
        pass (memory bound); None = no bound (as captum's defaults).
    seed:
        Seed of the random draws (noise, baselines, interpolation points, coalitions)
        and of baseline sampling. Each image's draws come from ``(seed, its sample id)``
        so they do not depend on the batch; the caller's global RNG states are
        restored afterwards.
    device:
        Device of the input tensors given to the score function (``"cpu"`` default;
        the built-in detectors move them to their own device).
    """

    name = "attribution"
    requires: frozenset[str] = frozenset({"gradients"})
    baseline_kind: str | None = None
    gradient: bool = True

    def __init__(
        self,
        *,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
        baseline: object = None,
        reference: object = None,
        n_baselines: int = 16,
    ) -> None:
        self.reduce = check_reduce(reduce)
        if internal_batch_size is not None and int(internal_batch_size) < 1:
            raise InputError(f"internal_batch_size must be >= 1 or None, got {internal_batch_size}")
        self.internal_batch_size = None if internal_batch_size is None else int(internal_batch_size)
        self.seed = int(seed)
        self.device = str(device)
        if int(n_baselines) < 1:
            raise InputError(f"n_baselines must be >= 1, got {n_baselines!r}")
        self.n_baselines = int(n_baselines)
        self._baseline_spec = baseline
        self._baseline: Baseline | None = None
        if self.baseline_kind is not None:
            self._baseline = resolve_baseline(baseline, reference=reference, k=self.n_baselines)
        elif baseline is not None or reference is not None:
            raise InputError(f"{self.name} takes no baseline / reference (it is reference-free)")

    # -- configuration ----------------------------------------------------------------
    def _params(self) -> dict:
        """Method-specific parameters recorded by :meth:`config`."""
        return {}

    def config(self) -> dict:
        cfg: dict[str, Any] = {
            "name": self.name,
            "reduce": self.reduce,
            "internal_batch_size": self.internal_batch_size,
            "seed": self.seed,
            **self._params(),
        }
        if self.baseline_kind is not None:
            cfg["baseline"] = None if self._baseline is None else self._baseline.config()
            if self.baseline_kind == "distribution":
                cfg["n_baselines"] = self.n_baselines
        return cfg

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()!r})"

    def fit_reference(self, normal_images: np.ndarray) -> AttributionExplainer:
        """Use ``normal_images`` ``(N, C, H, W)`` as the reference (the engine calls this
        once with the normal training images). Ignored when an explicit ``baseline=``
        other than ``"normal"`` was given, or when the method needs no baseline."""
        if self.baseline_kind is None:
            return self
        if self._baseline_spec is None or (
            isinstance(self._baseline_spec, str) and self._baseline_spec == "normal"
        ):
            self._baseline = NormalReference(normal_images, k=self.n_baselines)
        return self

    # -- pairing ----------------------------------------------------------------------
    @classmethod
    def unsupported_reason(cls, detector: Detector, **kwargs: Any) -> str | None:
        """Why this method cannot explain ``detector`` (None if it can)."""
        if cls.gradient and _torch_score_or_none(detector) is None:
            return "its torch_score() is None (no differentiable score)"
        return None

    def _unsupported(self, detector: Detector) -> str | None:
        return self.unsupported_reason(detector)

    # -- running ----------------------------------------------------------------------
    def forward_for(self, detector: Detector) -> ScoreFunction:
        """The validated score function this method uses for ``detector``."""
        self.check(detector)
        fn = _torch_score_or_none(detector)
        if fn is not None:
            return ScoreFunction(fn, detector=detector, method=self.name, need_grad=self.gradient)
        return ScoreFunction(
            numpy_score_forward(detector),
            detector=detector,
            method=self.name,
            source="score()",
            need_grad=False,
        )

    def explain(
        self, detector: Detector, batch: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Reduced ``(B, H, W)`` float32 attribution maps at the images' resolution."""
        a = self.attribute(detector, batch)
        return np.ascontiguousarray(reduce_channels(a, self.reduce), dtype=np.float32)

    def attribute(self, detector: Detector, images: Inputs | np.ndarray) -> np.ndarray:
        """Signed ``(B, C, H, W)`` float32 attributions of the score, before reduction
        (``C = 1`` for Grad-CAM)."""
        return self.run(self.forward_for(detector), images, detector=detector)

    def run(
        self,
        forward: Callable[..., torch.Tensor],
        images: Inputs | np.ndarray,
        *,
        detector: Detector,
        extra: tuple = (),
    ) -> np.ndarray:
        """Attribute ``forward(x, *extra)`` at ``images`` (used by label-free importance
        with another forward function). Returns signed ``(B, C, H, W)`` float32."""
        x_np = check_images(images)
        keys = _keys_of(images, len(x_np))
        baselines = self._baselines(x_np, detector)
        x = torch.from_numpy(x_np).to(self.device)
        try:
            with torch_seeded(self.seed, numpy_global=True), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Hh]ooks.*")
                warnings.filterwarnings("ignore", message=".*did not already require grad")
                if self.gradient:
                    with torch.enable_grad():
                        a = self._attribute(forward, x, baselines, extra, detector, keys=keys)
                else:
                    a = self._attribute(forward, x, baselines, extra, detector, keys=keys)
        except RuntimeError as e:
            if _NOT_GRAD in str(e):
                raise InputError(
                    f"{self.name}: detector {detector_label(detector)} has a score that is "
                    f"not differentiable w.r.t. the input ({e}). Use a perturbation method "
                    "(occlusion, feature_ablation)"
                ) from e
            raise
        a = a.detach().to("cpu", torch.float32).numpy()
        if a.ndim != 4 or a.shape[0] != x_np.shape[0] or a.shape[2:] != x_np.shape[2:]:
            raise InputError(  # pragma: no cover - a bug, not a user error
                f"{self.name} produced attributions of shape {a.shape} for images of "
                f"shape {x_np.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise InputError(
                f"{self.name} on detector {detector_label(detector)} produced "
                f"{int((~np.isfinite(a)).sum())} non-finite attributions (shape {a.shape}): "
                "the score's gradient is NaN/inf somewhere (e.g. sqrt or log at 0)"
            )
        return np.ascontiguousarray(a, dtype=np.float32)

    def _require_baseline(self, detector: Detector) -> Baseline:
        if self._baseline is None:
            raise InputError(
                f"{self.name} needs a baseline (reference input) to explain detector "
                f"{detector_label(detector)} and none was given. Pass one of: "
                "reference=<normal images (N, C, H, W)> (the default: their mean, or K of "
                "them for SHAP methods); baseline=<array (C, H, W) or (K, C, H, W)>; "
                "baseline='black' | 'blur' | 'uniform'; or call "
                "explainer.fit_reference(normal_images) first (the engine does this with "
                "the normal training images)"
            )
        return self._baseline

    def _baselines(self, x: np.ndarray, detector: Detector) -> np.ndarray | None:
        if self.baseline_kind is None:
            return None
        b = self._require_baseline(detector)
        if self.baseline_kind == "single":
            return b.single(x)
        return b.distribution(x, k=self.n_baselines, seed=self.seed)

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

    def _rows(self, expansion: int) -> int | None:
        """Inputs per captum call so that ``inputs * expansion <= internal_batch_size``."""
        if self.internal_batch_size is None:
            return None
        return max(1, self.internal_batch_size // max(1, expansion))

    def _chunked(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor | None, tuple], torch.Tensor],
        x: torch.Tensor,
        b: torch.Tensor | None,
        extra: tuple,
        rows: int | None,
    ) -> torch.Tensor:
        """Run ``fn(x, b, extra)`` on chunks of ``rows`` inputs (per-input ``b``)."""
        if rows is None or rows >= len(x):
            return fn(x, b, extra)
        out = []
        for i in range(0, len(x), rows):
            sl = slice(i, i + rows)
            out.append(fn(x[sl], None if b is None else b[sl], _slice_extra(extra, sl)))
        return torch.cat(out)

    @abstractmethod
    def _attribute(
        self,
        forward: Callable[..., torch.Tensor],
        x: torch.Tensor,
        baselines: np.ndarray | None,
        extra: tuple,
        detector: Detector,
        *,
        keys: list[str] | None = None,
    ) -> torch.Tensor:
        """Signed ``(B, C, H, W)`` attributions (torch); ``keys``: the sample ids that
        seed per-sample draws (None: the positions)."""


def _extra(extra: tuple) -> tuple | None:
    return extra if extra else None


def _probe(x: torch.Tensor, extra: tuple) -> tuple:
    return x[:1], _slice_extra(extra, slice(0, 1))


def _positions(keys: list[str] | None, n: int) -> list[str]:
    return [str(i) for i in range(n)] if keys is None else list(keys)


# ---------------------------------------------------------------------------------------
# one captum call per chunk
# ---------------------------------------------------------------------------------------
class _SingleCall(AttributionExplainer):
    """A method that is one captum call per chunk of inputs (``expansion`` rows each)."""

    expansion = 1

    @abstractmethod
    def captum(self, forward: Callable[..., torch.Tensor], detector: Detector, probe: tuple) -> Any:
        """The captum attribution object (``probe = (x[:1], extra[:1])``)."""

    def captum_kwargs(self) -> dict:
        """Keyword arguments of ``captum.attribute`` besides inputs/baselines/args."""
        return {}

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        attr = self.captum(forward, detector, _probe(x, extra))
        kw = self.captum_kwargs()

        def call(xc, bc, ec):
            if bc is not None:
                return attr.attribute(xc, baselines=bc, additional_forward_args=_extra(ec), **kw)
            return attr.attribute(xc, additional_forward_args=_extra(ec), **kw)

        b = None if baselines is None else self._t(baselines)
        return self._chunked(call, x, b, extra, self._rows(self.expansion))
