"""Perturbation attributions of a detector's anomaly score (captum): occlusion,
feature ablation (superpixels), KernelSHAP. They need only ``detector.score`` (under
``torch.no_grad`` when a torch score exists), so they also explain black boxes.
Baselines: normal reference images by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from xeval.adapters.base import Detector
from xeval.errors import InputError
from xeval.explainers.attribution.base import (
    AttributionExplainer,
    _extra,
    _positions,
    _slice_extra,
)
from xeval.registry import EXPLAINERS
from xeval.rng import derived_seed, torch_seeded

__all__ = ["FeatureAblation", "KernelShap", "Occlusion", "superpixels"]


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


@EXPLAINERS.register
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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
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


@EXPLAINERS.register
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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
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


@EXPLAINERS.register
class KernelShap(_Perturbation):
    """KernelSHAP over superpixels: Shapley values of the segments (coalitions replaced
    by the baseline), estimated by a weighted linear regression on ``n_samples`` random
    coalitions per image. Signed; the segment values sum to ``score(x) - score(b)``
    (efficiency, approximately). Lundberg & Lee 2017 (captum ``KernelShap``); one
    captum call per image, its random coalitions drawn with captum's global RNGs seeded
    from ``(seed, sample id)`` (``xeval.rng.derived_seed``), so an image's values do not
    depend on the other images of the call. Segments as :class:`FeatureAblation`.
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

    def _attribute(self, forward, x, baselines, extra, detector, *, keys=None):
        from captum.attr import KernelShap as _KS

        keys = _positions(keys, len(x))
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
            with torch_seeded(derived_seed(self.seed, keys[i]), numpy_global=True):
                a = ks.attribute(
                    x[sl],
                    baselines=b[sl],
                    feature_mask=masks[sl],
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.perturbations_per_eval,
                    additional_forward_args=_extra(_slice_extra(extra, sl)),
                )
            out.append(a)
        return torch.cat(out)
