"""``xeval.explain``: one call from (detector, images, method name) to ``(B, H, W)`` maps.

>>> maps = explain(detector, images, "integrated_gradients", reference=normal_images)

Methods: ``saliency``, ``input_x_gradient``, ``integrated_gradients``,
``gradient_shap``, ``deeplift``, ``deeplift_shap``, ``smoothgrad``, ``grad_cam``,
``occlusion``, ``feature_ablation``, ``kernel_shap`` (see
:mod:`xeval.explainers.attribution`), ``label_free`` (see
:mod:`xeval.explainers.label_free`) and ``native`` (the detector's own anomaly map).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from xeval.adapters.base import Detector
from xeval.batch import Batch
from xeval.errors import InputError
from xeval.explainers.attribution import METHODS, _check_images, detector_label
from xeval.explainers.base import Explainer
from xeval.explainers.label_free import LabelFree

__all__ = ["EXPLAINERS", "explain", "make_explainer", "method_names"]

#: name -> Explainer class of the attribution explainers (``native`` is handled apart).
EXPLAINERS: dict[str, type[Explainer]] = {**METHODS, LabelFree.name: LabelFree}


def method_names() -> list[str]:
    """All method names accepted by :func:`explain`."""
    return [*EXPLAINERS, "native"]


def make_explainer(method: str, **params: Any) -> Explainer:
    """Build the explainer called ``method`` with keyword ``params``."""
    if method not in EXPLAINERS:
        raise InputError(f"unknown explanation method {method!r}; known: {method_names()}")
    cls = EXPLAINERS[method]
    sig_params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig_params.values())
    if "reference" in params and "reference" not in sig_params and not takes_kwargs:
        params = {k: v for k, v in params.items() if k != "reference"}  # baseline-free
    try:
        return cls(**params)
    except TypeError as e:
        sig = inspect.signature(cls.__init__)
        accepted = [p for p in sig.parameters if p not in ("self", "params")]
        raise InputError(
            f"method {method!r}: bad parameters {sorted(params)} ({e}); accepted: {accepted}"
        ) from None


def _native(detector: Detector, images: np.ndarray) -> np.ndarray:
    maps = np.asarray(detector.anomaly_map(images), dtype=np.float32)
    b, _, h, w = images.shape
    if maps.ndim != 3 or maps.shape[0] != b:
        raise InputError(
            f"native: detector {detector_label(detector)} anomaly_map returned shape "
            f"{maps.shape} for {b} images; expected ({b}, h, w)"
        )
    if maps.shape[1:] != (h, w):
        t = torch.from_numpy(np.ascontiguousarray(maps))[:, None]
        maps = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.ascontiguousarray(maps, dtype=np.float32)


def explain(
    detector: Detector,
    images: np.ndarray | Batch,
    method: str,
    **params: Any,
) -> np.ndarray:
    """Explain ``detector``'s anomaly score on ``images`` with ``method``.

    Parameters
    ----------
    detector:
        A fitted :class:`~xeval.adapters.base.Detector`.
    images:
        ``(B, C, H, W)`` float32 images in ``[0, 1]`` (or a :class:`~xeval.batch.Batch`)
        at the detector's input size.
    method:
        One of :func:`method_names`.
    **params:
        Keyword parameters of the method's explainer class, e.g. ``reduce="sum"``,
        ``reference=normal_images`` (normal images: the default baseline),
        ``baseline="blur"``, ``n_steps=64``, ``layer="encoder.4"``. ``reference`` is
        accepted by every method and ignored by those without a baseline, so one call
        pattern fits all methods; an explicit ``baseline`` for them is an error.

    Returns
    -------
    numpy.ndarray
        ``(B, H, W)`` float32 at the images' resolution, channels reduced as
        ``reduce`` says (``abs_sum`` by default), not normalised.

    Raises
    ------
    InputError
        Unknown method or parameter, a method that cannot explain this detector (the
        message lists the ones that can), a missing baseline, or a detector whose score
        function misbehaves (wrong shape, NaN, not differentiable).
    """
    x = _check_images(images)
    if method == "native":
        if params:
            raise InputError(f"method 'native' takes no parameters, got {sorted(params)}")
        return _native(detector, x)
    explainer = make_explainer(method, **params)
    check = getattr(explainer, "check", None)
    if callable(check):
        check(detector)
    batch = images if isinstance(images, Batch) else x
    return explainer.explain(detector, batch)  # type: ignore[arg-type]
