"""Gradient and perturbation attributions of a detector's **image anomaly score**.

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

Sign convention: attributions are w.r.t. the anomaly score (higher = more anomalous),
so a positive signed attribution means "this pixel makes the image more anomalous
(than the baseline)". The default reduction ``abs_sum`` drops the sign; ``reduce="sum"``
keeps it.

Each explainer's :meth:`~AttributionExplainer.attribute` gives the signed
``(B, C, H, W)`` attribution before reduction; :meth:`~AttributionExplainer.explain`
the reduced ``(B, H, W)`` float32 map at the images' resolution.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector
from xeval.batch import Batch
from xeval.checks import check_images
from xeval.errors import InputError
from xeval.explainers.base import Explainer
from xeval.explainers.reduce import check_reduce, reduce_channels
from xeval.substrates import Baseline, NormalReference, resolve_baseline

__all__ = [
    "AttributionExplainer",
    "DeepLift",
    "DeepLiftShap",
    "FeatureAblation",
    "GradCam",
    "GradientShap",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "METHODS",
    "Occlusion",
    "Saliency",
    "ScoreFunction",
    "ScoreModule",
    "SmoothGrad",
    "check_pairing",
    "superpixels",
    "supported_methods",
]


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


def find_module(detector: Detector) -> nn.Module | None:
    """The detector's torch module: ``detector.torch_module()`` if it gives one, else the
    first ``nn.Module`` attribute among ``model_``, ``model``, ``module``, ``net``."""
    hook = getattr(detector, "torch_module", None)
    mod = hook() if callable(hook) else None
    if isinstance(mod, nn.Module):
        return mod
    for attr in ("model_", "model", "module", "net"):
        m = getattr(detector, attr, None)
        if isinstance(m, nn.Module):
            return m
    return None


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


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch's and numpy's global RNGs (captum draws from both) inside the block,
    restoring the caller's states afterwards."""
    np_state = np.random.get_state()  # noqa: NPY002 (captum uses the global RNG)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        np.random.seed(int(seed) % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002


_check_images = check_images


def _slice_extra(extra: tuple, sl: slice) -> tuple:
    return tuple(e[sl] if isinstance(e, torch.Tensor) and e.ndim > 0 else e for e in extra)


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
        Seed of captum's random draws (noise, baselines, interpolation points) and of
        baseline sampling. The caller's global RNG states are restored afterwards.
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

    def check(self, detector: Detector) -> None:
        """Raise :class:`InputError` if this method cannot explain ``detector``."""
        reason = self._unsupported(detector)
        if reason is not None:
            check_pairing(self.name, detector, reason)

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
        self, detector: Detector, batch: Batch | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Reduced ``(B, H, W)`` float32 attribution maps at the images' resolution."""
        a = self.attribute(detector, batch)
        return np.ascontiguousarray(reduce_channels(a, self.reduce), dtype=np.float32)

    def attribute(self, detector: Detector, images: Batch | np.ndarray) -> np.ndarray:
        """Signed ``(B, C, H, W)`` float32 attributions of the score, before reduction
        (``C = 1`` for Grad-CAM)."""
        return self.run(self.forward_for(detector), images, detector=detector)

    def run(
        self,
        forward: Callable[..., torch.Tensor],
        images: Batch | np.ndarray,
        *,
        detector: Detector,
        extra: tuple = (),
    ) -> np.ndarray:
        """Attribute ``forward(x, *extra)`` at ``images`` (used by label-free importance
        with another forward function). Returns signed ``(B, C, H, W)`` float32."""
        x_np = _check_images(images)
        baselines = self._baselines(x_np, detector)
        x = torch.from_numpy(x_np).to(self.device)
        try:
            with seeded_rng(self.seed), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Hh]ooks.*")
                warnings.filterwarnings("ignore", message=".*did not already require grad")
                if self.gradient:
                    with torch.enable_grad():
                        a = self._attribute(forward, x, baselines, extra, detector)
                else:
                    a = self._attribute(forward, x, baselines, extra, detector)
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
    ) -> torch.Tensor:
        """Signed ``(B, C, H, W)`` attributions (torch)."""


def _extra(extra: tuple) -> tuple | None:
    return extra if extra else None


def _probe(x: torch.Tensor, extra: tuple) -> tuple:
    return x[:1], _slice_extra(extra, slice(0, 1))


# ---------------------------------------------------------------------------------------
# gradient methods
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

    def _attribute(self, forward, x, baselines, extra, detector):
        attr = self.captum(forward, detector, _probe(x, extra))
        kw = self.captum_kwargs()

        def call(xc, bc, ec):
            if bc is not None:
                return attr.attribute(xc, baselines=bc, additional_forward_args=_extra(ec), **kw)
            return attr.attribute(xc, additional_forward_args=_extra(ec), **kw)

        b = None if baselines is None else self._t(baselines)
        return self._chunked(call, x, b, extra, self._rows(self.expansion))


class Saliency(_SingleCall):
    """Saliency: the gradient of the anomaly score, ``a = d score / d x``.

    Signed (captum is called with ``abs=False``; the reduction decides what to do with
    the sign): positive = increasing this pixel value increases the anomaly score.
    No baseline. Simonyan et al. 2014 (captum ``Saliency``).
    """

    name = "saliency"

    def __init__(self, *, reduce: str = "abs_sum", internal_batch_size: int | None = 64,
                 seed: int = 0, device: str = "cpu") -> None:  # fmt: skip
        super().__init__(
            reduce=reduce, internal_batch_size=internal_batch_size, seed=seed, device=device
        )

    def captum(self, forward, detector, probe):
        from captum.attr import Saliency as _S

        return _S(forward)

    def captum_kwargs(self) -> dict:
        return {"abs": False}


class InputXGradient(_SingleCall):
    """Input x gradient: ``a = x * d score / d x`` (signed; a first-order Taylor
    contribution of each pixel relative to a zero image). No baseline. Shrikumar et al.
    2016 (captum ``InputXGradient``)."""

    name = "input_x_gradient"

    def __init__(self, *, reduce: str = "abs_sum", internal_batch_size: int | None = 64,
                 seed: int = 0, device: str = "cpu") -> None:  # fmt: skip
        super().__init__(
            reduce=reduce, internal_batch_size=internal_batch_size, seed=seed, device=device
        )

    def captum(self, forward, detector, probe):
        from captum.attr import InputXGradient as _I

        return _I(forward)


class IntegratedGradients(_SingleCall):
    """Integrated gradients: ``a = (x - b) * mean_{alpha} d score / d x (b + alpha (x - b))``.

    Signed; completeness: ``sum a = score(x) - score(b)`` up to the quadrature error of
    ``n_steps`` points (``method``, captum's default Gauss-Legendre). Baseline ``b``: a
    normal reference image by default (the mean of ``reference`` images). Sundararajan
    et al. 2017 (captum ``IntegratedGradients``). ``internal_batch_size`` is captum's
    (rows of ``n_steps * B`` per pass).
    """

    name = "integrated_gradients"
    requires = frozenset({"gradients", "baseline"})
    baseline_kind = "single"

    def __init__(
        self,
        *,
        n_steps: int = 32,
        method: str = "gausslegendre",
        baseline: object = None,
        reference: object = None,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
        )
        if int(n_steps) < 1:
            raise InputError(f"n_steps must be >= 1, got {n_steps!r}")
        self.n_steps = int(n_steps)
        self.method = str(method)

    def _params(self) -> dict:
        return {"n_steps": self.n_steps, "method": self.method}

    def captum(self, forward, detector, probe):
        from captum.attr import IntegratedGradients as _IG

        return _IG(forward)

    def captum_kwargs(self) -> dict:
        return {
            "n_steps": self.n_steps,
            "method": self.method,
            "internal_batch_size": self.internal_batch_size,
        }

    def _attribute(self, forward, x, baselines, extra, detector):
        # captum batches the n_steps * B rows itself: no outer chunking.
        attr = self.captum(forward, detector, _probe(x, extra))
        return attr.attribute(
            x,
            baselines=self._t(baselines),
            additional_forward_args=_extra(extra),
            **self.captum_kwargs(),
        )


class GradientShap(AttributionExplainer):
    """GradientSHAP: expected ``(x - b) * d score / d x (b + alpha (x - b) + noise)`` over
    baselines ``b`` drawn from a distribution and ``alpha ~ U(0, 1)``.

    Signed; approximates SHAP values, completeness holds in expectation
    (``E[sum a] ~ score(x) - E_b score(b)``). Baseline distribution: ``n_baselines``
    normal reference images by default. Lundberg & Lee 2017 (captum ``GradientShap``).

    captum has no internal batching for GradientSHAP (it evaluates ``B * n_samples``
    images at once). xeval splits the work into captum calls of at most
    ``internal_batch_size`` rows (chunks of inputs x chunks of samples, each a fresh
    captum draw) and averages them weighted by their sample counts; with
    ``internal_batch_size >= B * n_samples`` it is a single captum call.
    """

    name = "gradient_shap"
    requires = frozenset({"gradients", "baseline"})
    baseline_kind = "distribution"

    def __init__(
        self,
        *,
        n_samples: int = 25,
        stdevs: float = 0.0,
        baseline: object = None,
        reference: object = None,
        n_baselines: int = 16,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
            n_baselines=n_baselines,
        )
        if int(n_samples) < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples!r}")
        if float(stdevs) < 0:
            raise InputError(f"stdevs must be >= 0, got {stdevs!r}")
        self.n_samples = int(n_samples)
        self.stdevs = float(stdevs)

    def _params(self) -> dict:
        return {"n_samples": self.n_samples, "stdevs": self.stdevs}

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import GradientShap as _GS

        gs = _GS(forward)
        n = self.n_samples
        ibs = self.internal_batch_size

        def call(xc, bc, ec, k):
            return gs.attribute(
                xc, baselines=bc, n_samples=k, stdevs=self.stdevs,
                additional_forward_args=_extra(ec),
            )  # fmt: skip

        per_input = baselines.ndim == 5
        if ibs is None or (len(x) * n <= ibs and not per_input):
            return call(x, self._t(baselines), extra, n)
        rows = 1 if per_input else max(1, min(len(x), ibs // n))
        per_call = max(1, (ibs or n) // rows)
        out = []
        for i in range(0, len(x), rows):
            sl = slice(i, i + rows)
            b = self._t(baselines[i] if per_input else baselines)
            xc, ec = x[sl], _slice_extra(extra, sl)
            acc = None
            for j in range(0, n, per_call):
                k = min(per_call, n - j)
                part = call(xc, b, ec, k) * k
                acc = part if acc is None else acc + part
            out.append(acc / n)
        return torch.cat(out)


class DeepLift(_SingleCall):
    """DeepLIFT (rescale rule): ``a`` such that ``sum a = score(x) - score(b)`` exactly
    when every non-linearity is a hookable module.

    Signed. Baseline ``b``: the mean normal reference image by default. Shrikumar et al.
    2017 (captum ``DeepLift``), called on :class:`ScoreModule` around the detector's
    score with the detector's torch module (``torch_module()`` or a ``model_`` /
    ``model`` attribute) registered as a child so its ``nn.ReLU`` / ``nn.Sigmoid`` /
    ``nn.LeakyReLU``... get the rescale rule.

    **Functional ops** in the score (``F.relu``, squared errors, ``amax`` over the map,
    Gaussian smoothing is linear and fine) are not hookable: they get their plain
    gradient at the input, so summation-to-delta becomes approximate. A non-linear
    module **used several times** in one forward (one ``nn.LeakyReLU`` shared by all
    layers) is also a problem for captum; xeval detects this with one probe forward and
    then does not register the module (warning): DeepLIFT then degrades to
    ``(x - b) * gradient`` at ``x`` for those layers.

    A third captum pitfall (captum 0.9, verified in the tests): the rescale rule is a
    hook on the non-linearity's **input tensor** that rescales that tensor's whole
    gradient, so if the same tensor also feeds another op (a skip connection,
    ``2 * relu(r) - r``, ``relu(r) + relu(-r)``), summation-to-delta breaks. Give the
    non-linearity its own copy (``relu(r.clone())``) in such models.
    """

    name = "deeplift"
    requires = frozenset({"gradients", "baseline"})
    baseline_kind = "single"
    expansion = 2

    def __init__(
        self,
        *,
        baseline: object = None,
        reference: object = None,
        eps: float = 1e-10,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
        )
        self.eps = float(eps)

    def _params(self) -> dict:
        return {"eps": self.eps}

    def module(self, forward, detector, probe: tuple) -> ScoreModule:
        """:class:`ScoreModule` around ``forward`` with the detector's module as a child
        when DeepLIFT can hook it (see the class docstring)."""
        return ScoreModule(forward, _hookable_module(detector, forward, probe))

    def captum(self, forward, detector, probe):
        from captum.attr import DeepLift as _DL

        return _DL(self.module(forward, detector, probe), eps=self.eps)


_REUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hookable_module(detector: Detector, forward: Callable, probe: tuple) -> nn.Module | None:
    """The detector's module if DeepLIFT can use it: it contains hookable non-linear
    modules and none of them runs more than once in a forward pass (checked with one
    probe forward on ``probe = (x[:1], extra[:1])``)."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    mod = find_module(detector)
    if mod is None:
        return None
    nonlin = [m for m in mod.modules() if type(m) in SUPPORTED_NON_LINEAR]
    if not nonlin:
        return None
    reused = _REUSED.get(mod)
    if reused is None:  # probe once per module (the graph's structure does not change)
        counts = {id(m): 0 for m in nonlin}

        def hook(m, inp, out):
            counts[id(m)] += 1

        handles = [m.register_forward_hook(hook) for m in nonlin]
        try:
            with torch.no_grad():
                forward(probe[0], *probe[1])
        finally:
            for h in handles:
                h.remove()
        reused = tuple(sorted({type(m).__name__ for m in nonlin if counts[id(m)] > 1}))
        _REUSED[mod] = reused
    if reused:
        warnings.warn(
            f"deeplift: detector {detector_label(detector)} runs non-linear module(s) "
            f"{list(reused)} several times in one forward; captum's DeepLIFT cannot apply its "
            "rescale rule to a reused module, so all of them are treated as plain "
            "functions (gradient at the input). Give each layer its own activation "
            "module for exact DeepLIFT",
            stacklevel=2,
        )
        return None
    return mod


class DeepLiftShap(DeepLift):
    """DeepLiftShap: DeepLIFT averaged over a distribution of baselines (SHAP values
    under feature independence): ``a = mean_k DeepLIFT(x; b_k)``, signed, with
    ``sum a = score(x) - mean_k score(b_k)`` under the same conditions as
    :class:`DeepLift`. Baselines: ``n_baselines`` normal reference images by default.
    Lundberg & Lee 2017 (captum ``DeepLiftShap``).

    Memory: captum evaluates ``2 * B * K`` rows at once; xeval chunks inputs and
    baselines so that a call has at most ``internal_batch_size`` rows, and averages
    the chunks weighted by their baseline counts (exact: DeepLiftShap is a mean).
    """

    name = "deeplift_shap"
    baseline_kind = "distribution"

    def __init__(
        self,
        *,
        baseline: object = None,
        reference: object = None,
        n_baselines: int = 16,
        eps: float = 1e-10,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        AttributionExplainer.__init__(
            self,
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
            n_baselines=n_baselines,
        )
        self.eps = float(eps)

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import DeepLift as _DL
        from captum.attr import DeepLiftShap as _DLS

        module = self.module(forward, detector, _probe(x, extra))
        dls, dl = _DLS(module, multiply_by_inputs=True), _DL(module, eps=self.eps)
        dls.eps = self.eps  # type: ignore[attr-defined]

        def call(xc, bc, ec):
            if len(bc) == 1:  # captum's DeepLiftShap needs K > 1; K = 1 is DeepLIFT
                return dl.attribute(
                    xc, baselines=bc.expand_as(xc), additional_forward_args=_extra(ec)
                )
            return dls.attribute(xc, baselines=bc, additional_forward_args=_extra(ec))

        per_input = baselines.ndim == 5
        ibs = self.internal_batch_size
        k_all = baselines.shape[1] if per_input else baselines.shape[0]
        if ibs is None or (2 * len(x) * k_all <= ibs and not per_input):
            return call(x, self._t(baselines), extra)
        rows = 1 if per_input else max(1, min(len(x), ibs // (2 * k_all)))
        kc = max(1, (ibs or 2 * k_all) // (2 * rows))
        out = []
        for i in range(0, len(x), rows):
            sl = slice(i, i + rows)
            bl = baselines[i] if per_input else baselines
            xc, ec = x[sl], _slice_extra(extra, sl)
            acc = None
            for j in range(0, k_all, kc):
                part = call(xc, self._t(bl[j : j + kc]), ec) * len(bl[j : j + kc])
                acc = part if acc is None else acc + part
            out.append(acc / k_all)
        return torch.cat(out)


class SmoothGrad(AttributionExplainer):
    """SmoothGrad / SmoothGrad² / VarGrad: a gradient method averaged over noisy copies
    ``x + N(0, stdevs^2)`` (captum ``NoiseTunnel``).

    ``base`` is any gradient method of this module (``saliency`` default,
    ``input_x_gradient``, ``integrated_gradients``, ``deeplift``) with its own
    parameters in ``base_params``. ``nt_type="smoothgrad"`` keeps the base method's
    sign; ``"smoothgrad_sq"`` (mean of squares) and ``"vargrad"`` (variance) are
    non-negative. ``stdevs`` is in pixel units (images in ``[0, 1]``). The noisy
    copies are evaluated ``nt_samples_batch_size`` at a time (default: as many as fit
    in ``internal_batch_size`` rows). Smilkov et al. 2017; Adebayo et al. 2018.
    """

    name = "smoothgrad"
    BASES = ("saliency", "input_x_gradient", "integrated_gradients", "deeplift")

    def __init__(
        self,
        *,
        base: str = "saliency",
        base_params: dict | None = None,
        nt_type: str = "smoothgrad",
        nt_samples: int = 16,
        stdevs: float = 0.15,
        nt_samples_batch_size: int | None = None,
        baseline: object = None,
        reference: object = None,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if base not in self.BASES:
            raise InputError(f"smoothgrad base must be one of {list(self.BASES)}, got {base!r}")
        if nt_type not in ("smoothgrad", "smoothgrad_sq", "vargrad"):
            raise InputError(
                f"nt_type must be 'smoothgrad', 'smoothgrad_sq' or 'vargrad', got {nt_type!r}"
            )
        bp = dict(base_params or {})
        if baseline is not None:
            bp["baseline"] = baseline
        if reference is not None and METHODS[base].baseline_kind is not None:
            bp["reference"] = reference  # ignored by baseline-free bases
        self.base = base
        self.base_params = {k: v for k, v in bp.items() if k not in ("baseline", "reference")}
        self._base = METHODS[base](internal_batch_size=internal_batch_size, device=device, **bp)
        self.baseline_kind = self._base.baseline_kind
        self.requires = self._base.requires
        super().__init__(
            reduce=reduce, internal_batch_size=internal_batch_size, seed=seed, device=device
        )
        self._baseline_spec = self._base._baseline_spec
        self._baseline = self._base._baseline
        self.nt_type = nt_type
        if int(nt_samples) < 1:
            raise InputError(f"nt_samples must be >= 1, got {nt_samples!r}")
        if not float(stdevs) >= 0:
            raise InputError(f"stdevs must be >= 0, got {stdevs!r}")
        self.nt_samples = int(nt_samples)
        self.stdevs = float(stdevs)
        self.nt_samples_batch_size = (
            None if nt_samples_batch_size is None else int(nt_samples_batch_size)
        )

    def fit_reference(self, normal_images: np.ndarray) -> SmoothGrad:
        self._base.fit_reference(normal_images)
        self._baseline = self._base._baseline
        return self

    def _params(self) -> dict:
        return {
            "base": self.base,
            "base_params": self.base_params,
            "nt_type": self.nt_type,
            "nt_samples": self.nt_samples,
            "stdevs": self.stdevs,
            "nt_samples_batch_size": self.nt_samples_batch_size,
        }

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import NoiseTunnel

        base = self._base
        nt = NoiseTunnel(base.captum(forward, detector, _probe(x, extra)))
        kw = dict(base.captum_kwargs())
        nsb = self.nt_samples_batch_size
        if nsb is None and self.internal_batch_size is not None:
            expansion = 2 if isinstance(base, DeepLift) else 1
            nsb = max(1, self.internal_batch_size // (len(x) * expansion))
        if baselines is not None:
            kw["baselines"] = self._t(baselines)
        return nt.attribute(
            x,
            nt_type=self.nt_type,
            nt_samples=self.nt_samples,
            nt_samples_batch_size=nsb,
            stdevs=self.stdevs,
            additional_forward_args=_extra(extra),
            **kw,
        )


class GradCam(AttributionExplainer):
    """Grad-CAM on a chosen layer of the detector's torch module, upsampled bilinearly.

    ``a = ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``d score / d A_k`` over
    the layer's output ``A`` (``relu=False`` keeps negative evidence). Positive = the
    layer's features at that place push the anomaly score up. Coarse (layer
    resolution), then ``F.interpolate(..., mode="bilinear")`` to the image size.
    Selvaraju et al. 2017 (captum ``LayerGradCam``).

    ``layer`` is a name in ``torch_module().named_modules()`` (e.g. ``"encoder.4"``);
    None picks the **last** ``nn.Conv2d``. The map has one channel, so the default
    reduction is ``"sum"`` (identity).
    """

    name = "grad_cam"
    requires = frozenset({"gradients", "layer"})

    def __init__(
        self,
        *,
        layer: str | None = None,
        relu: bool = True,
        attribute_to_layer_input: bool = False,
        reduce: str = "sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce, internal_batch_size=internal_batch_size, seed=seed, device=device
        )
        self.layer = None if layer is None else str(layer)
        self.relu = bool(relu)
        self.attribute_to_layer_input = bool(attribute_to_layer_input)

    def _params(self) -> dict:
        return {
            "layer": self.layer,
            "relu": self.relu,
            "attribute_to_layer_input": self.attribute_to_layer_input,
        }

    @classmethod
    def unsupported_reason(cls, detector: Detector, **kwargs: Any) -> str | None:
        r = super().unsupported_reason(detector)
        if r is None and find_module(detector) is None:
            return "it exposes no torch module (torch_module() is None) to pick a layer from"
        return r

    def _unsupported(self, detector: Detector) -> str | None:
        return self.unsupported_reason(detector)

    def resolve_layer(self, detector: Detector) -> tuple[str, nn.Module]:
        mod = find_module(detector)
        assert mod is not None
        convs = [n for n, m in mod.named_modules() if isinstance(m, nn.Conv2d)]
        if self.layer is None:
            if not convs:
                raise InputError(
                    f"grad_cam: detector {detector_label(detector)} has no nn.Conv2d layer; "
                    f"pass layer=<name>, one of {[n for n, _ in mod.named_modules() if n]}"
                )
            return convs[-1], mod.get_submodule(convs[-1])
        try:
            return self.layer, mod.get_submodule(self.layer)
        except AttributeError:
            raise InputError(
                f"grad_cam: detector {detector_label(detector)} has no layer "
                f"{self.layer!r}; conv layers: {convs}, all modules: "
                f"{[n for n, _ in mod.named_modules() if n][:50]}"
            ) from None

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import LayerAttribution, LayerGradCam

        lname, layer = self.resolve_layer(detector)
        gc = LayerGradCam(forward, layer)
        size = tuple(x.shape[-2:])

        def call(xc, bc, ec):
            a = gc.attribute(
                xc,
                additional_forward_args=_extra(ec),
                relu_attributions=self.relu,
                attribute_to_layer_input=self.attribute_to_layer_input,
            )
            if a.ndim != 4:
                raise InputError(
                    f"grad_cam: layer {lname!r} of detector {detector_label(detector)} "
                    f"gives attributions of shape {tuple(a.shape)}; Grad-CAM needs a "
                    "spatial layer with output (B, C, h, w)"
                )
            return LayerAttribution.interpolate(a, size, "bilinear")

        return self._chunked(call, x, None, extra, self._rows(1))


# ---------------------------------------------------------------------------------------
# perturbation methods (work on black boxes)
# ---------------------------------------------------------------------------------------
class _Perturbation(AttributionExplainer):
    gradient = False
    requires = frozenset({"baseline"})
    baseline_kind = "single"

    @classmethod
    def unsupported_reason(cls, detector: Detector, **kwargs: Any) -> str | None:
        return None


def _pair(v: int | Sequence[int], what: str) -> tuple[int, int]:
    t = (int(v), int(v)) if isinstance(v, int | np.integer) else tuple(int(u) for u in v)
    if len(t) != 2 or min(t) < 1:
        raise InputError(f"{what} must be an int >= 1 or (h, w), got {v!r}")
    return t  # type: ignore[return-value]


class Occlusion(_Perturbation):
    """Occlusion: ``a(p) = mean over windows W containing p of score(x) - score(x with W
    replaced by the baseline)``.

    Signed: positive = replacing the patch by normal content lowers the anomaly score,
    i.e. the patch makes the image anomalous. Windows of ``window`` pixels (all
    channels) moved by ``stride``; the baseline is the mean normal reference image by
    default. ``perturbations_per_eval`` occluded copies per forward pass (memory bound).
    Zeiler & Fergus 2014 (captum ``Occlusion``).

    With a score callable that is differentiable, the forward runs under
    ``torch.no_grad`` (captum's default); otherwise ``detector.score`` on numpy.
    """

    name = "occlusion"

    def __init__(
        self,
        *,
        window: int | tuple[int, int] = 16,
        stride: int | tuple[int, int] = 8,
        perturbations_per_eval: int = 16,
        baseline: object = None,
        reference: object = None,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
        )
        self.window = _pair(window, "window")
        self.stride = _pair(stride, "stride")
        if int(perturbations_per_eval) < 1:
            raise InputError(f"perturbations_per_eval must be >= 1, got {perturbations_per_eval}")
        self.perturbations_per_eval = int(perturbations_per_eval)

    def _params(self) -> dict:
        return {
            "window": list(self.window),
            "stride": list(self.stride),
            "perturbations_per_eval": self.perturbations_per_eval,
        }

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import Occlusion as _O

        occ = _O(forward)
        c = x.shape[1]

        def call(xc, bc, ec):
            return occ.attribute(
                xc,
                sliding_window_shapes=(c, *self.window),
                strides=(c, *self.stride),
                baselines=bc,
                additional_forward_args=_extra(ec),
                perturbations_per_eval=self.perturbations_per_eval,
            )

        rows = self._rows(self.perturbations_per_eval)
        return self._chunked(call, x, self._t(baselines), extra, rows)


def superpixels(
    images: np.ndarray,
    *,
    segments: str = "slic",
    n_segments: int = 64,
    compactness: float = 10.0,
    sigma: float = 1.0,
    window: int | tuple[int, int] = 16,
) -> np.ndarray:
    """Feature masks ``(B, 1, H, W)`` int64 (ids from 0) for feature ablation / SHAP.

    ``segments="slic"``: SLIC superpixels of each image
    (``skimage.segmentation.slic(image, n_segments, compactness, sigma,
    start_label=0)``); ``"grid"``: square cells of ``window`` pixels.
    """
    x = np.asarray(images, dtype=np.float32)
    b, c, h, w = x.shape
    if segments == "grid":
        wh, ww = _pair(window, "window")
        ny = -(-w // ww)
        ids = (np.arange(h)[:, None] // wh) * ny + (np.arange(w)[None, :] // ww)
        return np.broadcast_to(ids, (b, 1, h, w)).astype(np.int64)
    if segments != "slic":
        raise InputError(f"segments must be 'slic' or 'grid', got {segments!r}")
    from skimage.segmentation import slic

    out = np.empty((b, 1, h, w), dtype=np.int64)
    for i in range(b):
        img = x[i, 0] if c == 1 else np.moveaxis(x[i], 0, -1)
        out[i, 0] = slic(
            img,
            n_segments=int(n_segments),
            compactness=float(compactness),
            sigma=float(sigma),
            start_label=0,
            channel_axis=None if c == 1 else -1,
        )
    return out


class FeatureAblation(_Perturbation):
    """Feature (superpixel) ablation: for each segment ``S`` of the image,
    ``a(p in S) = score(x) - score(x with S replaced by the baseline)``.

    Signed, one value per segment (not divided by its area): positive = the segment
    makes the image anomalous. Segments: SLIC superpixels of each image by default
    (``segments="slic"``, ``n_segments``, ``compactness``, ``slic_sigma``) or a square
    grid (``segments="grid"``, ``window``). Baseline: the mean normal reference image
    by default. ``perturbations_per_eval`` ablated copies per forward pass. captum
    ``FeatureAblation`` with a per-image ``feature_mask``.
    """

    name = "feature_ablation"

    def __init__(
        self,
        *,
        segments: str = "slic",
        n_segments: int = 64,
        compactness: float = 10.0,
        slic_sigma: float = 1.0,
        window: int | tuple[int, int] = 16,
        perturbations_per_eval: int = 16,
        baseline: object = None,
        reference: object = None,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
        )
        if segments not in ("slic", "grid"):
            raise InputError(f"segments must be 'slic' or 'grid', got {segments!r}")
        self.segments = segments
        self.n_segments = int(n_segments)
        self.compactness = float(compactness)
        self.slic_sigma = float(slic_sigma)
        self.window = _pair(window, "window")
        if int(perturbations_per_eval) < 1:
            raise InputError(f"perturbations_per_eval must be >= 1, got {perturbations_per_eval}")
        self.perturbations_per_eval = int(perturbations_per_eval)

    def _params(self) -> dict:
        p: dict[str, Any] = {"segments": self.segments}
        if self.segments == "slic":
            p.update(n_segments=self.n_segments, compactness=self.compactness,
                     slic_sigma=self.slic_sigma)  # fmt: skip
        else:
            p["window"] = list(self.window)
        p["perturbations_per_eval"] = self.perturbations_per_eval
        return p

    def feature_mask(self, images: np.ndarray) -> np.ndarray:
        """The ``(B, 1, H, W)`` segment ids used for ``images``."""
        return superpixels(
            images,
            segments=self.segments,
            n_segments=self.n_segments,
            compactness=self.compactness,
            sigma=self.slic_sigma,
            window=self.window,
        )

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import FeatureAblation as _FA

        fa = _FA(forward)
        masks = torch.from_numpy(self.feature_mask(x.cpu().numpy())).to(x.device)

        def call(xc, bc, ec):
            # slice the masks alongside the inputs (extra carries them last)
            *ec, mc = ec
            return fa.attribute(
                xc,
                baselines=bc,
                feature_mask=mc,
                additional_forward_args=_extra(tuple(ec)),
                perturbations_per_eval=self.perturbations_per_eval,
            )

        rows = self._rows(self.perturbations_per_eval)
        return self._chunked(call, x, self._t(baselines), (*extra, masks), rows)


class KernelShap(_Perturbation):
    """KernelSHAP over superpixels: Shapley values of the segments (coalitions replaced
    by the baseline), estimated by a weighted linear regression on ``n_samples`` random
    coalitions per image. Signed; the segment values sum to ``score(x) - score(b)``
    (efficiency, approximately). Lundberg & Lee 2017 (captum ``KernelShap``); one
    captum call per image. Segments as :class:`FeatureAblation`.
    """

    name = "kernel_shap"

    def __init__(
        self,
        *,
        n_samples: int = 200,
        segments: str = "slic",
        n_segments: int = 32,
        compactness: float = 10.0,
        slic_sigma: float = 1.0,
        window: int | tuple[int, int] = 16,
        perturbations_per_eval: int = 16,
        baseline: object = None,
        reference: object = None,
        reduce: str = "abs_sum",
        internal_batch_size: int | None = 64,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            reduce=reduce,
            internal_batch_size=internal_batch_size,
            seed=seed,
            device=device,
            baseline=baseline,
            reference=reference,
        )
        self._fa = FeatureAblation(
            segments=segments, n_segments=n_segments, compactness=compactness,
            slic_sigma=slic_sigma, window=window,
        )  # fmt: skip
        self.n_samples = int(n_samples)
        self.perturbations_per_eval = int(perturbations_per_eval)

    def _params(self) -> dict:
        p = self._fa._params()
        p.pop("perturbations_per_eval")
        return {"n_samples": self.n_samples, **p,
                "perturbations_per_eval": self.perturbations_per_eval}  # fmt: skip

    def _attribute(self, forward, x, baselines, extra, detector):
        from captum.attr import KernelShap as _KS

        ks = _KS(forward)
        masks = torch.from_numpy(self._fa.feature_mask(x.cpu().numpy())).to(x.device)
        b = self._t(baselines)
        out = []
        for i in range(len(x)):
            sl = slice(i, i + 1)
            if int(masks[sl].max()) == int(masks[sl].min()):
                # one segment: its Shapley value is score(x) - score(b) (captum fails)
                with torch.no_grad():
                    ec = _slice_extra(extra, sl)
                    d = forward(x[sl], *ec) - forward(b[sl], *ec)
                out.append(d.view(1, 1, 1, 1).expand_as(x[sl]))
                continue
            out.append(
                ks.attribute(
                    x[sl],
                    baselines=b[sl],
                    feature_mask=masks[sl],
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.perturbations_per_eval,
                    additional_forward_args=_extra(_slice_extra(extra, sl)),
                )
            )
        return torch.cat(out)


# ---------------------------------------------------------------------------------------
# registry of this module's methods and the pairing check
# ---------------------------------------------------------------------------------------
METHODS: dict[str, type[AttributionExplainer]] = {
    cls.name: cls
    for cls in (
        Saliency,
        InputXGradient,
        IntegratedGradients,
        GradientShap,
        DeepLift,
        DeepLiftShap,
        SmoothGrad,
        GradCam,
        Occlusion,
        FeatureAblation,
        KernelShap,
    )
}


def supported_methods(detector: Detector) -> list[str]:
    """Names of the methods (including ``native`` and ``label_free``) that can explain
    ``detector``."""
    names = [n for n, cls in METHODS.items() if cls.unsupported_reason(detector) is None]
    names.append("native")
    enc = getattr(detector, "encoder", None)
    if callable(enc) and enc() is not None:
        names.append("label_free")
    return names


def check_pairing(method: str, detector: Detector, reason: str) -> None:
    """Raise the InputError for an impossible method/detector pairing."""
    raise InputError(
        f"method {method!r} cannot explain detector {detector_label(detector)}: {reason}. "
        f"Methods that work with this detector: {', '.join(supported_methods(detector))}"
    )
