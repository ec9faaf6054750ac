"""The one interface every detector is wrapped into.

Contract (DESIGN.md): **higher score = more anomalous, always**. Adapters fix the sign
of libraries that use the opposite convention (scikit-learn's ``score_samples``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn


class Detector(ABC):
    """An anomaly detector on images.

    Subclasses implement :meth:`fit` and :meth:`predict`; :meth:`score` and
    :meth:`anomaly_map` are derived from it. A detector that can give a differentiable
    image score returns a torch callable ``(B, C, H, W) -> (B,)`` from
    :meth:`torch_score` (used by gradient attributions); others return None.

    Attributes
    ----------
    name:
        Short identifier used in result tables.
    input_size:
        ``(H, W)`` the detector expects; the engine resizes images to it.
    differentiable:
        True when :meth:`torch_score` returns a differentiable callable.
    has_map:
        False for detectors that give image scores only (a classifier's OOD score, a
        black box returning scores): their :meth:`anomaly_map` raises
        :class:`~xeval.errors.InputError` and :meth:`predict` returns maps of shape
        ``(B, 0, 0)``; only explainers that derive maps from the score apply.
    """

    name: str = "detector"
    input_size: tuple[int, int] = (128, 128)
    differentiable: bool = False
    has_map: bool = True

    @abstractmethod
    def fit(self, batches: Iterable[np.ndarray]) -> Detector:
        """Fit on normal images only; ``batches`` yields ``(B, C, H, W)`` float32 arrays."""

    @abstractmethod
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores (B,), maps (B, h, w))`` as float32 numpy arrays.

        The map is at the detector's own resolution; the engine upsamples it to the
        mask's native size.
        """

    def score(self, images: np.ndarray) -> np.ndarray:
        """Image anomaly scores ``(B,)``, higher = more anomalous."""
        return self.predict(images)[0]

    def anomaly_map(self, images: np.ndarray) -> np.ndarray:
        """Pixel anomaly maps ``(B, h, w)``, higher = more anomalous."""
        return self.predict(images)[1]

    def torch_score(self) -> Callable | None:
        """A differentiable ``(B, C, H, W) torch.Tensor -> (B,)`` score, or None."""
        return None

    def torch_module(self) -> nn.Module | None:
        """The ``torch.nn.Module`` that :meth:`torch_score` runs, or None.

        Optional hook used by attribution explainers: Grad-CAM looks a layer up by name
        in it (``module.get_submodule(name)``), and DeepLIFT registers its rescale rules
        on the non-linear modules (``nn.ReLU``, ``nn.Sigmoid``...) it contains.
        """
        return None

    def encoder(self) -> Callable | None:
        """A differentiable feature encoder ``(B, C, H, W) torch.Tensor -> (B, D)``, or None.

        Optional hook used by label-free feature importance (Crabbé & van der Schaar,
        2022), which attributes ``<f(x), f(x_detached)>`` for the encoder ``f``.
        """
        return None

    # ---------------------------------------------------------- randomisation hooks
    def fitted_statistics(self) -> bool:
        """Whether the score depends on statistics fitted on normal data (a memory bank,
        a Gaussian, class means). The model-parameter randomisation test re-fits them
        (:meth:`refit`) after each randomisation step, so that they describe the
        randomised features. Default False."""
        return False

    def refit(self, batches: Iterable[np.ndarray]) -> Detector:
        """Re-fit the fitted statistics on normal ``batches`` without re-training the
        layers (used by the randomisation test). Default: :meth:`fit`."""
        return self.fit(batches)

    def randomise(self, seed: int) -> str | None:
        """Randomise what this detector learned, for detectors whose learned part is not
        a stack of torch layers (e.g. :class:`~xeval.adapters.PatchFeatures`: a fixed
        filter bank and learned normal statistics). Returns None when done, or why it
        cannot. Detectors that do not override it are randomised layer by layer
        (cascading) through :meth:`torch_module`."""
        raise NotImplementedError

    def randomise_note(self) -> str:
        """What :meth:`randomise` does, recorded with the randomisation test."""
        return ""

    def config(self) -> dict:
        """Hyper-parameters that identify this detector (recorded in the manifest)."""
        return {"name": self.name}


def overrides(detector: Detector, hook: str) -> bool:
    """Whether ``detector``'s class overrides the :class:`Detector` method ``hook``."""
    return getattr(type(detector), hook, None) is not getattr(Detector, hook)


def find_torch_module(detector) -> nn.Module | None:
    """The detector's torch module: ``detector.torch_module()`` if it gives one, else the
    first ``nn.Module`` attribute among ``model_``, ``model``, ``module``, ``net``."""
    from torch import nn

    hook = getattr(detector, "torch_module", None)
    mod = hook() if callable(hook) else None
    if isinstance(mod, nn.Module):
        return mod
    for attr in ("model_", "model", "module", "net"):
        m = getattr(detector, attr, None)
        if isinstance(m, nn.Module):
            return m
    return None


def has_fitted_statistics(detector) -> bool:
    """:meth:`Detector.fitted_statistics`, also for objects that declare it as a boolean
    attribute (``fitted_statistics = True``) or do not derive from :class:`Detector`."""
    declared = getattr(detector, "fitted_statistics", None)
    if callable(declared):
        return bool(declared())
    return bool(declared)
