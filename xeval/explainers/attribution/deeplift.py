"""DeepLIFT and DeepLiftShap attributions of a detector's anomaly score (captum).

DeepLIFT's rescale rules are registered on the non-linear modules (``nn.ReLU``,
``nn.Sigmoid``...) of the detector's torch module; functional operations (``amax``,
squared errors) get plain gradients. Baselines: normal reference images by default.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

from xeval.adapters.base import Detector
from xeval.explainers.attribution.base import (
    AttributionExplainer,
    ScoreModule,
    _extra,
    _probe,
    _SingleCall,
    _slice_extra,
    detector_label,
    find_module,
    single_run_rows,
)
from xeval.registry import EXPLAINERS

__all__ = ["DeepLift", "DeepLiftShap"]


@EXPLAINERS.register
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

    captum runs inputs and baselines in **one** forward (``2 x`` the inputs' rows) and
    keeps one input/output per hooked module: a detector whose score function splits
    its input into chunks of its own batch size would run each module once per chunk
    (captum: "module ... used more than once"). xeval sizes its calls so that a forward
    fits one chunk (:func:`~xeval.explainers.attribution.base.single_run_rows`); a
    detector that runs fewer than two rows per pass cannot be hooked (warning, plain
    gradients as above).
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

    def hook_plan(self, forward, detector, probe: tuple, rows: int) -> tuple[nn.Module | None, int]:
        """``(module, rows)``: the detector module DeepLIFT hooks (None: none) and the most
        rows (at most ``rows``) one forward pass may hold so that each hooked
        non-linearity runs once in it."""
        mod = _hookable_module(detector, forward, probe)
        if mod is None:
            return None, rows
        safe = single_run_rows(forward, probe, _nonlinear(mod), rows, detector=detector)
        if safe >= min(rows, 2):
            return mod, safe
        warnings.warn(
            f"{self.name}: detector {detector_label(detector)} runs its non-linear modules "
            f"once per {max(safe, 1)} image(s) of a forward pass (its score function splits "
            "its input into chunks); captum's DeepLIFT runs an input and its baseline in "
            "one pass, so it cannot apply its rescale rule and the non-linearities are "
            "treated as plain functions (gradient at the input). Raise the detector's "
            "batch size for exact DeepLIFT",
            stacklevel=2,
        )
        return None, rows

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        from captum.attr import DeepLift as _DL

        probe = _probe(x, extra)
        rows = min(len(x), self._rows(self.expansion) or len(x))
        mod, fit = self.hook_plan(forward, detector, probe, self.expansion * rows)
        rows = max(1, min(rows, fit // self.expansion))
        dl = _DL(ScoreModule(forward, mod), eps=self.eps)

        def call(xc, bc, ec):
            return dl.attribute(xc, baselines=bc, additional_forward_args=_extra(ec))

        return self._chunked(call, x, self._t(baselines), extra, rows)


def _nonlinear(mod: nn.Module) -> list[nn.Module]:
    """The modules of ``mod`` that captum's DeepLIFT hooks."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    return [m for m in mod.modules() if type(m) in SUPPORTED_NON_LINEAR]


_REUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _hookable_module(detector: Detector, forward: Callable, probe: tuple) -> nn.Module | None:
    """The detector's module if DeepLIFT can use it: it contains hookable non-linear
    modules and none of them runs more than once in a forward pass (checked with one
    probe forward on ``probe = (x[:1], extra[:1])``)."""
    mod = find_module(detector)
    if mod is None:
        return None
    nonlin = _nonlinear(mod)
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


@EXPLAINERS.register
class DeepLiftShap(DeepLift):
    """DeepLiftShap: DeepLIFT averaged over a distribution of baselines (SHAP values
    under feature independence): ``a = mean_k DeepLIFT(x; b_k)``, signed, with
    ``sum a = score(x) - mean_k score(b_k)`` under the same conditions as
    :class:`DeepLift`. Baselines: ``n_baselines`` normal reference images by default.
    Lundberg & Lee 2017 (captum ``DeepLiftShap``).

    Memory: captum evaluates ``2 * B * K`` rows at once; xeval chunks inputs and
    baselines so that a call has at most ``internal_batch_size`` rows (and no more than
    the detector runs in one pass of its modules, as :class:`DeepLift`), and averages
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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        from captum.attr import DeepLift as _DL
        from captum.attr import DeepLiftShap as _DLS

        per_input = baselines.ndim == 5
        ibs = self.internal_batch_size
        k_all = baselines.shape[1] if per_input else baselines.shape[0]
        most = 2 * len(x) * k_all  # rows of one captum call on everything
        limit = most if ibs is None else max(2, min(ibs, most))
        mod, fit = self.hook_plan(forward, detector, _probe(x, extra), limit)
        if fit < limit:  # the detector runs its modules once per `fit` rows
            ibs = fit
        module = ScoreModule(forward, mod)
        dls, dl = _DLS(module, multiply_by_inputs=True), _DL(module, eps=self.eps)
        dls.eps = self.eps  # type: ignore[attr-defined]

        def call(xc, bc, ec):
            if len(bc) == 1:  # captum's DeepLiftShap needs K > 1; K = 1 is DeepLIFT
                return dl.attribute(
                    xc, baselines=bc.expand_as(xc), additional_forward_args=_extra(ec)
                )
            return dls.attribute(xc, baselines=bc, additional_forward_args=_extra(ec))

        if ibs is None or (most <= ibs and not per_input):
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
