"""Wrap an anomalib 2.x model (PaDiM, PatchCore, STFPM...) as a Detector.

anomalib is imported lazily (only to build a model from its class name in a recipe):
the adapter itself works on the objects, so anomalib stays an optional dependency.

**What is read.** An anomalib 2.x ``AnomalibModule`` (the Lightning module) runs, in
``forward``, ``pre_processor -> model -> post_processor``. The post-processor
normalises scores and maps (min-max statistics and thresholds learnt on validation
data, then a 0.5-centred rescaling) - a hidden transform that xeval's threshold-free
metrics must not see. The adapter therefore calls the pre-processor (its export
transform: resize + ImageNet normalisation) and the torch model ``module.model``
itself, in eval mode, and reads the **raw** ``pred_score`` and ``anomaly_map`` of the
``InferenceBatch`` it returns: no sigmoid, no normalisation, no clamping. A bare torch
model (``PadimModel``...) is called directly (give ``normalize="imagenet"`` then).

Score (higher = more anomalous): the model's raw ``pred_score`` (PaDiM: the max of
the Mahalanobis map; PatchCore: the re-weighted nearest-neighbour distance of the
most anomalous patch), or the max/mean of the raw map (``score="map_max"/"map_mean"``).
References: Defard et al. 2021 (PaDiM), Roth et al. 2022 (PatchCore), Akcay et al.
2022 (anomalib).

**Gradients.** PaDiM and PatchCore compute their backbone features under
``torch.no_grad`` inside anomalib: they are not differentiable, and
``torch_score()`` returns None for them (found out by one probe forward pass with
``differentiable=None``), so only perturbation explainers apply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from xeval.adapters._wrapped import describe, get_field, has_field, iter_images
from xeval.adapters.torch_module import TorchWrapped
from xeval.checks import check_bool
from xeval.errors import InputError

SCORES = ("pred_score", "map_max", "map_mean")
FIT_MODES = ("auto", "none", "memory_bank")


def is_anomalib_module(obj: Any) -> bool:
    """True for an anomalib ``AnomalibModule`` (checked by class names: no import)."""
    names = {c.__name__ for c in type(obj).__mro__}
    return "AnomalibModule" in names and isinstance(getattr(obj, "model", None), nn.Module)


def is_anomalib_model(obj: Any) -> bool:
    """True for an anomalib Lightning module or one of its torch models."""
    return is_anomalib_module(obj) or (type(obj).__module__ or "").startswith("anomalib.")


def _resize_size(pre: nn.Module | None) -> tuple[int, int] | None:
    """The output size of the first ``Resize`` in the pre-processor, if any."""
    if pre is None:
        return None
    tf = getattr(pre, "export_transform", None) or getattr(pre, "transform", None)
    for t in getattr(tf, "transforms", [tf]):
        if type(t).__name__ == "Resize" and getattr(t, "size", None):
            size = list(t.size)
            return (int(size[0]), int(size[-1]))
    return None


def _is_fitted(model: nn.Module) -> bool:
    """Whether a memory-bank model (PaDiM, PatchCore...) holds fitted statistics."""
    gauss = getattr(model, "gaussian", None)
    if gauss is not None and isinstance(getattr(gauss, "mean", None), torch.Tensor):
        return gauss.mean.numel() > 0
    bank = getattr(model, "memory_bank", None)
    if isinstance(bank, torch.Tensor):
        return bank.numel() > 0
    return True


class AnomalibDetector(TorchWrapped):
    """An anomalib 2.x model as a Detector (raw scores and maps; see module docstring).

    Parameters
    ----------
    model:
        An ``AnomalibModule`` (``anomalib.models.Padim(...)``, loaded from a checkpoint
        or not) or a bare anomalib torch model.
    name:
        Identifier in result tables.
    input_size:
        ``(H, W)`` the engine resizes images to; None: the pre-processor's resize size
        (256 x 256 for most anomalib models), else 256.
    score:
        ``"pred_score"`` (the model's raw image score), ``"map_max"`` or ``"map_mean"``.
    use_pre_processor:
        Apply the Lightning module's pre-processor (resize + normalisation) before the
        torch model (default True).
    normalize, preprocess:
        For a bare torch model: the normalisation step (e.g. ``"imagenet"``).
    fit:
        ``"auto"``: fit a memory-bank model (PaDiM, PatchCore: ``gaussian`` or
        ``memory_bank`` still empty) on the normal batches, no-op for a fitted one;
        ``"memory_bank"``: always (re)fit; ``"none"``: never; or a callable
        ``fit(model, batches)``. Memory-bank fitting runs the torch model in train mode
        over the pre-processed batches (collecting embeddings), then the Lightning
        module's ``fit()`` (PaDiM: Gaussian fit; PatchCore: coreset subsampling).
    differentiable:
        None: found out by a probe forward pass; False: ``torch_score()`` is None.
    device, batch_size, in_channels, seed:
        As for :class:`~xeval.adapters.torch_module.TorchModuleDetector`.
    """

    kind = "anomalib"

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str = "anomalib",
        input_size: int | tuple[int, int] | None = None,
        score: str = "pred_score",
        use_pre_processor: bool = True,
        normalize: Any = None,
        preprocess: Callable | None = None,
        fit: str | Callable = "auto",
        differentiable: bool | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        in_channels: int = 3,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(
                f"AnomalibDetector {name!r}: expected an anomalib model (a torch "
                f"nn.Module), got {describe(model)}"
            )
        self.lightning = model if is_anomalib_module(model) else None
        torch_model = model.model if self.lightning is not None else model
        pre = getattr(self.lightning, "pre_processor", None) if use_pre_processor else None
        self.pre_processor = pre if isinstance(pre, nn.Module) else None
        if self.pre_processor is not None and (normalize is not None or preprocess is not None):
            raise InputError(
                f"AnomalibDetector {name!r}: the module's pre-processor already normalises; "
                "pass use_pre_processor=False to use normalize=/preprocess= instead"
            )
        if input_size is None:
            input_size = _resize_size(self.pre_processor) or (256, 256)
        self._setup_torch(
            torch_model,
            name=name,
            input_size=input_size,
            device=device,
            batch_size=batch_size,
            preprocess=preprocess,
            normalize=normalize,
            in_channels=in_channels,
            seed=seed,
        )
        if self.pre_processor is not None:
            self.pre_processor.to(self._device).eval()
            self._pre = self.pre_processor
        if score not in SCORES:
            raise InputError(f"{self.who}: score must be one of {SCORES}, got {score!r}")
        if not (callable(fit) or fit in FIT_MODES):
            raise InputError(f"{self.who}: fit must be one of {FIT_MODES} or a callable")
        self.use_pre_processor = check_bool(use_pre_processor, "use_pre_processor")
        self.score_source = score
        self.fit_mode = fit
        self._differentiable = differentiable
        self._has_map = True

    # -- differentiability ------------------------------------------------------------
    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        if self._differentiable is None:
            self._differentiable = self._probe_gradients()
        return self._differentiable

    def _probe_gradients(self) -> bool:
        x = torch.zeros(1, self.in_channels, *self.input_size, device=self._device)
        x.requires_grad_(True)
        self.module.eval()
        with torch.enable_grad():
            s, _ = self._forward(x)
        return isinstance(s, torch.Tensor) and s.requires_grad

    # -- forward ----------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.module(self._prepare(x))
        if isinstance(out, torch.Tensor) or not has_field(out, "anomaly_map"):
            raise InputError(
                f"{self.who}: the anomalib model returned {describe(out)}, expected an "
                "InferenceBatch with pred_score and anomaly_map (is it fitted? an "
                "anomalib model in train mode returns embeddings)"
            )
        m = get_field(out, "anomaly_map")
        if not isinstance(m, torch.Tensor):
            raise InputError(f"{self.who}: the model returned anomaly_map={describe(m)}")
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        s = get_field(out, "pred_score") if has_field(out, "pred_score") else None
        if self.score_source == "map_max" or s is None:
            s = m.flatten(1).amax(dim=1)
        elif self.score_source == "map_mean":
            s = m.flatten(1).mean(dim=1)
        elif isinstance(s, torch.Tensor) and s.ndim == 2 and s.shape[1] == 1:
            s = s[:, 0]
        return s, m

    def _source(self, what: str) -> str:
        return f"the anomalib model's {'pred_score' if what == 'score' else 'anomaly_map'}"

    # -- Detector API -----------------------------------------------------------------
    def fit(self, batches: Iterable[np.ndarray]) -> AnomalibDetector:
        """Fit a memory-bank model on normal images, or nothing (see ``fit``)."""
        mode = self.fit_mode
        if callable(mode):
            mode(self.lightning or self.module, iter_images(batches))
        elif mode == "memory_bank" or (mode == "auto" and not _is_fitted(self.module)):
            self._fit_memory_bank(batches)
        self.module.eval()
        return self

    def fitted_statistics(self) -> bool:
        """PaDiM's Gaussian or PatchCore's memory bank: fitted on normal features."""
        return (
            getattr(self.module, "gaussian", None) is not None
            or getattr(self.module, "memory_bank", None) is not None
        )

    def refit(self, batches: Iterable[np.ndarray]) -> AnomalibDetector:
        """Re-fit the memory bank / Gaussian on ``batches`` (even when already fitted)."""
        if callable(self.fit_mode):
            return self.fit(batches)
        self._fit_memory_bank(batches)
        self.module.eval()
        return self

    def _fit_memory_bank(self, batches: Iterable[Any]) -> None:
        owner = self.lightning if self.lightning is not None else self.module
        if not callable(getattr(owner, "fit", None)):
            raise InputError(
                f"{self.who}: {type(owner).__name__} has no fit() method: it is not a "
                "memory-bank model; train it with anomalib's Engine and load the checkpoint"
            )
        for attr in ("memory_bank", "embedding_store"):  # PaDiM, PatchCore collectors
            store = getattr(self.module, attr, None)
            if isinstance(store, list):
                store.clear()
        n = 0
        self.module.train()
        try:
            with torch.no_grad():
                for i, b in enumerate(iter_images(batches)):
                    x = self._images(b, name=f"batch {i}")
                    for j in range(0, len(x), self.batch_size):
                        xb = torch.from_numpy(x[j : j + self.batch_size]).to(self._device)
                        self.module(self._prepare(xb))
                        n += len(xb)
            if n == 0:
                raise InputError(f"{self.who}: fit got no images")
            owner.fit()
        finally:
            self.module.eval()

    def config(self) -> dict:
        return {
            **super().config(),
            "model": type(self.lightning or self.module).__name__,
            "score": self.score_source,
            "use_pre_processor": self.use_pre_processor,
            "normalize": self.normalize,
            "fit": self.fit_mode if isinstance(self.fit_mode, str) else "callable",
            "device": self.device,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }
