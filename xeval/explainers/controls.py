"""Trivial control explanations every real explainer must beat (DESIGN.md, Conventions).

All return ``(B, H, W)`` float32 maps at the batch's image resolution, higher = more
"relevant", and never look at the detector.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from xeval.adapters.base import Detector
from xeval.errors import InputError
from xeval.explainers.base import Explainer, ids_of, images_of
from xeval.record import Inputs
from xeval.registry import EXPLAINERS
from xeval.rng import sample_seed


def _image_shape(inputs: Inputs | np.ndarray) -> tuple[int, int, int]:
    images = images_of(inputs)
    return images.shape[0], images.shape[2], images.shape[3]


@EXPLAINERS.register
class RandomMap(Explainer):
    """Uniform ``[0, 1)`` noise, deterministic per sample.

    The generator of each sample is seeded from ``(seed, sample id)`` (CRC-32 of the id),
    so a sample gets the same map whatever batch it is in and on any worker.
    """

    name = "random"
    control = True

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)

    def explain(
        self, detector: Detector, inputs: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        b, h, w = _image_shape(inputs)
        out = np.empty((b, h, w), dtype=np.float32)
        for i, sid in enumerate(ids_of(inputs)):
            rng = np.random.default_rng(sample_seed(self.seed, sid))
            out[i] = rng.random((h, w), dtype=np.float32)
        return out

    def config(self) -> dict:
        return {"name": self.name, "seed": self.seed}


@EXPLAINERS.register
class SobelEdges(Explainer):
    """Sobel gradient magnitude of the grey-level image (channel mean).

    ``sqrt(sx**2 + sy**2)`` with the 2-D Sobel filter of each image along each spatial
    axis (derivative ``[-1, 0, 1]`` along it, smoothing ``[1, 2, 1]`` along the other,
    borders reflected: ``scipy.ndimage.sobel`` of one ``(H, W)`` image); high on edges
    and texture, whatever the detector does. Each map depends on its image only (the
    filters never run along the batch axis).
    """

    name = "sobel"
    control = True

    def explain(
        self, detector: Detector, inputs: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        _image_shape(inputs)
        grey = np.asarray(images_of(inputs), dtype=np.float64).mean(axis=1)  # (B, H, W)
        sy = _sobel(grey, axis=1, across=2)
        sx = _sobel(grey, axis=2, across=1)
        return np.hypot(sx, sy).astype(np.float32)


def _sobel(grey: np.ndarray, *, axis: int, across: int) -> np.ndarray:
    """Sobel derivative of ``(B, H, W)`` images along ``axis``, smoothed along ``across``
    only (``ndimage.sobel`` would also smooth along the batch axis, mixing images)."""
    d = ndimage.correlate1d(grey, [-1.0, 0.0, 1.0], axis=axis, mode="reflect")
    return ndimage.correlate1d(d, [1.0, 2.0, 1.0], axis=across, mode="reflect")


@EXPLAINERS.register
class CentrePrior(Explainer):
    """Isotropic Gaussian centred in the image: ``exp(-r**2 / (2 sigma**2))``.

    ``r`` is the distance to the image centre ``((H-1)/2, (W-1)/2)`` and
    ``sigma = sigma_fraction * min(H, W)``; the peak value 1 is at the centre.
    """

    name = "centre"
    control = True
    input_dependent = False

    def __init__(self, *, sigma_fraction: float = 0.25) -> None:
        if not float(sigma_fraction) > 0:
            raise InputError(f"sigma_fraction must be > 0, got {sigma_fraction!r}")
        self.sigma_fraction = float(sigma_fraction)

    def explain(
        self, detector: Detector, inputs: Inputs | np.ndarray, *, maps: np.ndarray | None = None
    ) -> np.ndarray:
        b, h, w = _image_shape(inputs)
        sigma = self.sigma_fraction * min(h, w)
        yy = (np.arange(h) - (h - 1) / 2)[:, None]
        xx = (np.arange(w) - (w - 1) / 2)[None, :]
        prior = np.exp(-(yy**2 + xx**2) / (2 * sigma**2)).astype(np.float32)
        return np.broadcast_to(prior, (b, h, w)).copy()

    def config(self) -> dict:
        return {"name": self.name, "sigma_fraction": self.sigma_fraction}
