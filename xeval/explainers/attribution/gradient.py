"""Gradient attributions of a detector's anomaly score (captum): saliency, input x
gradient, integrated gradients, GradientSHAP, SmoothGrad, Grad-CAM.

All attribute the scalar anomaly score (higher = more anomalous) with ``target=None``;
see :mod:`xeval.explainers.attribution.base` for the plumbing (validated score
function, normal-reference baselines, chunking, seeding, channel reduction).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters.base import Detector
from xeval.checks import check_bool
from xeval.errors import InputError
from xeval.explainers.attribution.base import (
    AttributionExplainer,
    _extra,
    _positions,
    _probe,
    _repeat_extra,
    _SingleCall,
    _slice_extra,
    detector_label,
    find_module,
    single_run_rows,
)
from xeval.explainers.attribution.deeplift import DeepLift
from xeval.registry import EXPLAINERS
from xeval.rng import rng

__all__ = [
    "GradCam",
    "GradientShap",
    "InputXGradient",
    "IntegratedGradients",
    "Saliency",
    "SmoothGrad",
]


@EXPLAINERS.register
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


@EXPLAINERS.register
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


@EXPLAINERS.register
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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        # captum batches the n_steps * B rows itself: no outer chunking.
        attr = self.captum(forward, detector, _probe(x, extra))
        return attr.attribute(
            x,
            baselines=self._t(baselines),
            additional_forward_args=_extra(extra),
            **self.captum_kwargs(),
        )


@EXPLAINERS.register
class GradientShap(AttributionExplainer):
    """GradientSHAP: expected ``(x' - b) * d score / d x (alpha x' + (1 - alpha) b)`` over
    baselines ``b`` drawn from a distribution, ``alpha ~ U(0, 1)`` and noisy copies
    ``x' = x + N(0, stdevs^2)``.

    Signed; approximates SHAP values, completeness holds in expectation
    (``E[sum a] ~ score(x) - E_b score(b)``). Baseline distribution: ``n_baselines``
    normal reference images by default. Lundberg & Lee 2017; the estimator of captum's
    ``GradientShap`` (the same formula, ``n_samples`` draws per image), with the
    gradients computed by captum's ``Saliency``.

    The draws are xeval's, not captum's: captum draws the samples of a whole batch from
    the global RNGs in one go, so an image's samples would depend on the other images
    of the call and on how the work is split. Here image ``i`` draws its baseline
    indices, ``alpha`` and noise from ``xeval.rng.rng(seed, id_i)`` (:meth:`draws`):
    its attribution is the same in any batch, call split or ``internal_batch_size``.
    The ``B * n_samples`` gradient rows are evaluated at most ``internal_batch_size``
    at a time (captum has no internal batching for GradientSHAP).
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

    def draws(
        self, key: str, k: int, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The random draws of the image with sample id ``key`` for ``k`` baselines and
        images of ``shape = (C, H, W)``: baseline indices ``(n_samples,)`` (uniform,
        with replacement, as captum), ``alpha`` ``(n_samples,)`` in ``[0, 1)`` and the
        noise ``(n_samples, C, H, W)`` float32 (None when ``stdevs == 0``), in that
        order from ``xeval.rng.rng(seed, key)``."""
        g = rng(self.seed, key)
        idx = g.integers(0, int(k), size=self.n_samples)
        alpha = g.random(self.n_samples)
        noise = None
        if self.stdevs > 0:
            noise = g.standard_normal((self.n_samples, *shape), dtype=np.float32)
            noise *= np.float32(self.stdevs)
        return idx, alpha, noise

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        from captum.attr import Saliency as _S

        keys = _positions(keys, len(x))
        sal = _S(forward)
        n = self.n_samples
        budget = self.internal_batch_size or len(x) * n  # gradient rows per pass
        per_input = baselines.ndim == 5
        shared = None if per_input else self._t(baselines)
        group = max(1, budget // n)  # images whose n_samples rows are built together
        out = []
        for i0 in range(0, len(x), group):
            sl = slice(i0, min(i0 + group, len(x)))
            xs, bs, alphas = [], [], []
            for i in range(sl.start, sl.stop):
                b_all = self._t(baselines[i]) if per_input else shared
                idx, alpha, noise = self.draws(keys[i], len(b_all), tuple(x.shape[1:]))
                xi = x[i : i + 1].expand(n, *x.shape[1:])
                xs.append(xi if noise is None else xi + self._t(noise))
                bs.append(b_all[torch.as_tensor(idx, device=b_all.device)])
                alphas.append(alpha)
            xin, bin_ = torch.cat(xs), torch.cat(bs)
            a = torch.tensor(np.concatenate(alphas), dtype=x.dtype, device=x.device)
            a = a.view(-1, *([1] * (x.ndim - 1)))
            scaled = a * xin + (1.0 - a) * bin_  # captum's _scale_input
            ec = _repeat_extra(_slice_extra(extra, sl), n)
            grads = []
            for j in range(0, len(scaled), budget):
                rows = slice(j, j + budget)
                er = _extra(_slice_extra(ec, rows))
                grads.append(sal.attribute(scaled[rows], abs=False, additional_forward_args=er))
            attr = (xin - bin_) * torch.cat(grads)
            out.append(attr.view(-1, n, *x.shape[1:]).sum(dim=1) * (1 / n))
        return torch.cat(out)


@EXPLAINERS.register
class SmoothGrad(AttributionExplainer):
    """SmoothGrad / SmoothGrad² / VarGrad: a gradient method averaged over noisy copies
    ``x + N(0, stdevs^2)`` (captum ``NoiseTunnel``).

    ``base`` is any gradient method of this module (``saliency`` default,
    ``input_x_gradient``, ``integrated_gradients``, ``deeplift``) with its own
    parameters in ``base_params``. ``nt_type="smoothgrad"`` keeps the base method's
    sign; ``"smoothgrad_sq"`` (mean of squares) and ``"vargrad"`` (variance) are
    non-negative. ``stdevs`` is in pixel units (images in ``[0, 1]``). Smilkov et al.
    2017; Adebayo et al. 2018. The estimator of captum's ``NoiseTunnel`` (same
    formulas), with the base method run by xeval on the noisy copies.

    The noise is xeval's, not captum's: captum draws the noise of a whole batch from
    torch's global RNG, so an image's noisy copies would depend on the other images of
    the call and on ``nt_samples_batch_size``. Here image ``i``'s ``nt_samples`` copies
    come from ``xeval.rng.rng(seed, id_i)`` (:meth:`noise`): its attribution is the same
    in any batch, call split or ``internal_batch_size``. The noisy copies of an image
    are attributed ``nt_samples_batch_size`` at a time (default: all of them) and the
    base method bounds each forward pass by ``internal_batch_size`` rows.
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
        if reference is not None and EXPLAINERS.get(base).baseline_kind is not None:
            bp["reference"] = reference  # ignored by baseline-free bases
        self.base = base
        self.base_params = {k: v for k, v in bp.items() if k not in ("baseline", "reference")}
        self._base = EXPLAINERS.get(base)(
            internal_batch_size=internal_batch_size, device=device, **bp
        )
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

    def noise(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The ``(nt_samples, C, H, W)`` float32 noise ``N(0, stdevs^2)`` added to the
        image with sample id ``key`` (``shape = (C, H, W)``), from
        ``xeval.rng.rng(seed, key)``."""
        g = rng(self.seed, key)
        out = g.standard_normal((self.nt_samples, *shape), dtype=np.float32)
        out *= np.float32(self.stdevs)
        return out

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        keys = _positions(keys, len(x))
        base = self._base
        n = self.nt_samples
        block = min(n, self.nt_samples_batch_size or n)  # noisy copies per base call
        expansion = 2 if isinstance(base, DeepLift) else 1  # rows per noisy copy
        ibs = self.internal_batch_size
        group = len(x) if ibs is None else max(1, ibs // (block * expansion))  # images per call
        shape = tuple(x.shape[1:])
        out = []
        for i0 in range(0, len(x), group):
            sl = slice(i0, min(i0 + group, len(x)))
            g = sl.stop - sl.start
            noise = torch.stack([self._t(self.noise(k, shape)) for k in keys[sl]])
            s1 = s2 = None
            for j in range(0, n, block):
                m = min(block, n - j)
                rows = (x[sl].unsqueeze(1) + noise[:, j : j + m]).reshape(g * m, *shape)
                b = None if baselines is None else np.repeat(baselines[sl], m, axis=0)
                ec = _repeat_extra(_slice_extra(extra, sl), m)
                a = base._attribute(forward, rows, b, ec, detector).reshape(g, m, *shape)
                p1, p2 = a.sum(dim=1), (a * a).sum(dim=1)
                s1, s2 = (p1, p2) if s1 is None else (s1 + p1, s2 + p2)
            mean, mean_sq = s1 * (1 / n), s2 * (1 / n)
            if self.nt_type == "smoothgrad":
                out.append(mean)
            elif self.nt_type == "smoothgrad_sq":
                out.append(mean_sq)
            else:  # vargrad
                out.append(mean_sq - mean * mean)
        return torch.cat(out)


@EXPLAINERS.register
class GradCam(AttributionExplainer):
    """Grad-CAM on a chosen layer of the detector's torch module, upsampled bilinearly.

    ``a = ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``d score / d A_k`` over
    the layer's output ``A`` (``relu=False`` keeps negative evidence). Positive = the
    layer's features at that place push the anomaly score up. Coarse (layer
    resolution), then ``F.interpolate(..., mode="bilinear")`` to the image size.
    Selvaraju et al. 2017 (captum ``LayerGradCam``).

    ``layer`` is a name in ``torch_module().named_modules()`` (e.g. ``"encoder.4"``);
    None picks the **last** ``nn.Conv2d``. The map has one channel, so the default
    reduction is ``"sum"`` (identity). captum keeps one output of the layer per forward
    pass: a call never holds more images than the detector's score function runs
    through the layer in one pass (a detector that splits its input into chunks of its
    own batch size; see :func:`~xeval.explainers.attribution.base.single_run_rows`).
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
        self.relu = check_bool(relu, "relu")
        self.attribute_to_layer_input = check_bool(
            attribute_to_layer_input, "attribute_to_layer_input"
        )

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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        from captum.attr import LayerAttribution, LayerGradCam

        lname, layer = self.resolve_layer(detector)
        gc = LayerGradCam(forward, layer)
        size = tuple(x.shape[-2:])
        # captum keeps one output of the layer per forward: a detector that splits its
        # input into chunks runs the layer once per chunk, so a call must fit one chunk
        rows = min(len(x), self._rows(1) or len(x))
        rows = single_run_rows(forward, _probe(x, extra), [layer], rows, detector=detector)
        if rows == 0:
            raise InputError(
                f"grad_cam: layer {lname!r} of detector {detector_label(detector)} runs "
                "more than once in the forward pass of one image; Grad-CAM needs a layer "
                "that runs once per image: pass another layer=<name>"
            )

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

        return self._chunked(call, x, None, extra, rows)
