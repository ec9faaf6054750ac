"""Label-free feature importance (Crabbé & van der Schaar, ICML 2022).

"Label-Free Explainability for Unsupervised Models": an unsupervised model has no
scalar output to attribute, only a representation ``f(x) in R^D``. The label-free
importance of pixel ``i`` for input ``x`` is the attribution, by any gradient or
perturbation method, of the **scalar** ``g_x(x') = <f(x'), f(x)>`` where the second
``f(x)`` is a fixed (detached) copy: how much each pixel contributes to the
representation in the direction of the representation itself. It is linear in the
feature attributions (completeness of IG/DeepLIFT carries over:
``sum a = <f(x) - f(b), f(x)>``), and needs no label and no anomaly score.

Here ``f`` is the detector's ``encoder()`` hook, a torch callable
``(B, C, H, W) -> (B, D)`` (any trailing shape is flattened). The scalar is built as a
captum forward ``forward(x', ref) = sum_d f(x')_d * ref_d`` with ``ref = f(x).detach()``
passed as ``additional_forward_args``, so captum expands it alongside the
interpolated / noisy / perturbed copies of each input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xeval.adapters.base import Detector
from xeval.checks import check_images
from xeval.errors import InputError
from xeval.explainers.attribution import (
    METHODS,
    AttributionExplainer,
    ScoreFunction,
    detector_label,
)
from xeval.explainers.base import Explainer
from xeval.explainers.reduce import reduce_channels
from xeval.record import Inputs
from xeval.registry import EXPLAINERS

__all__ = ["LabelFree"]


def _encoder(detector: Detector) -> Callable | None:
    hook = getattr(detector, "encoder", None)
    enc = hook() if callable(hook) else None
    return enc if callable(enc) else None


@EXPLAINERS.register
class LabelFree(Explainer):
    """Label-free feature importance: attribution of ``<f(x'), f(x).detach()>``.

    Parameters
    ----------
    base:
        The attribution method applied to the scalar (any name of
        :data:`xeval.explainers.attribution.METHODS` except ``grad_cam``;
        ``integrated_gradients`` by default).
    **params:
        Keyword parameters of that method (``reduce``, ``baseline``, ``reference``,
        ``n_steps``...); see its class.

    Sign: positive = the pixel moves ``f`` along ``f(x)`` (relative to the baseline for
    baseline methods). Requires a detector whose ``encoder()`` hook is not None.
    """

    name = "label_free"
    requires = frozenset({"encoder"})

    def __init__(self, *, base: str = "integrated_gradients", **params: Any) -> None:
        method = base
        if method not in METHODS or method == "grad_cam":
            names = [m for m in METHODS if m != "grad_cam"]
            raise InputError(f"label_free base must be one of {names}, got {method!r}")
        self.method = method
        if METHODS[method].baseline_kind is None and method != "smoothgrad":
            params = {k: v for k, v in params.items() if k != "reference"}  # baseline-free
        try:
            self.inner: AttributionExplainer = METHODS[method](**params)
        except TypeError as e:
            raise InputError(f"label_free({method}): {e}") from None
        self.requires = frozenset((self.inner.requires - {"gradients"}) | {"encoder"})

    @property
    def reduce(self) -> str:
        return self.inner.reduce

    def config(self) -> dict:
        inner = self.inner.config()
        inner.pop("name")
        return {"name": self.name, "base": self.method, "params": inner}

    def fit_reference(self, normal_images: np.ndarray) -> LabelFree:
        self.inner.fit_reference(normal_images)
        return self

    @classmethod
    def unsupported_reason(cls, detector: Detector, **kwargs: Any) -> str | None:
        if _encoder(detector) is None:
            return "its encoder() hook is None (no representation to explain)"
        return None

    def attribute(self, detector: Detector, images: Inputs | np.ndarray) -> np.ndarray:
        """Signed ``(B, C, H, W)`` label-free importance, before channel reduction."""
        self.check(detector)
        enc = _encoder(detector)
        assert enc is not None
        x_np = check_images(images)
        inner = self.inner
        x = torch.from_numpy(x_np).to(inner.device)
        rows = inner.internal_batch_size or len(x)
        with torch.no_grad():
            ref = torch.cat([self._features(enc, x[i : i + rows], detector)
                             for i in range(0, len(x), rows)])  # fmt: skip
        ref = ref.detach()

        def forward(xp: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return (self._features(enc, xp, detector) * r.to(xp.device)).sum(dim=1)

        fn = ScoreFunction(
            forward,
            detector=detector,
            method=f"label_free({self.method})",
            source="<encoder(x'), encoder(x)>",
            need_grad=inner.gradient,
        )
        # the images themselves (not x_np): their sample ids seed per-sample draws
        return inner.run(fn, images, detector=detector, extra=(ref,))

    @staticmethod
    def _features(enc: Callable, x: torch.Tensor, detector: Detector) -> torch.Tensor:
        f = enc(x)
        if not isinstance(f, torch.Tensor) or f.ndim < 2 or f.shape[0] != x.shape[0]:
            got = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise InputError(
                f"label_free: detector {detector_label(detector)} encoder() returned {got} "
                f"for an input of shape {tuple(x.shape)}; expected a torch.Tensor "
                f"({x.shape[0]}, D)"
            )
        return f.flatten(1)

    def explain(
        self, detector: Detector, batch: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        """Reduced ``(B, H, W)`` float32 maps (reduction: ``params["reduce"]``)."""
        a = self.attribute(detector, batch)
        return np.ascontiguousarray(reduce_channels(a, self.inner.reduce), dtype=np.float32)
