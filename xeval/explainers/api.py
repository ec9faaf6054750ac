"""``xeval.explain``: one call from (detector, images, method name) to ``(B, H, W)`` maps.

>>> maps = explain(detector, images, "integrated_gradients", reference=normal_images)

Methods: every registered explainer (:data:`xeval.registry.EXPLAINERS`): the
detector's own map (``native``), the trivial controls (``random``, ``sobel``,
``centre``), the captum attributions of the anomaly score (``saliency``,
``input_x_gradient``, ``integrated_gradients``, ``gradient_shap``, ``deeplift``,
``deeplift_shap``, ``smoothgrad``, ``grad_cam``, ``occlusion``, ``feature_ablation``,
``kernel_shap``; see :mod:`xeval.explainers.attribution`) and ``label_free`` (see
:mod:`xeval.explainers.label_free`).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from xeval.adapters.base import Detector
from xeval.checks import check_images
from xeval.errors import ConfigError, InputError
from xeval.explainers.base import Explainer
from xeval.record import Inputs
from xeval.registry import EXPLAINERS, option_spec

__all__ = ["explain", "make_explainer", "method_names"]


def method_names() -> list[str]:
    """All method names accepted by :func:`explain` (the registered explainers)."""
    return EXPLAINERS.names()


def make_explainer(method: str, **params: Any) -> Explainer:
    """Build the explainer called ``method`` with keyword ``params``. ``reference`` (normal
    images) is accepted by every method and dropped for those that use no baseline."""
    try:
        cls = EXPLAINERS.get(method)
    except ConfigError:
        raise InputError(
            f"unknown explanation method {method!r}; known: {method_names()}"
        ) from None
    # a class without its own __init__ takes no parameters (object's is (*args, **kwargs))
    sig = {} if cls.__init__ is object.__init__ else inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.values())
    if "reference" in params and "reference" not in sig and not takes_kwargs:
        params = {k: v for k, v in params.items() if k != "reference"}  # baseline-free
    try:
        return cls(**params)
    except TypeError as e:
        accepted = sorted(option_spec(cls))
        raise InputError(
            f"method {method!r}: bad parameters {sorted(params)} ({e}); accepted: {accepted}"
        ) from None


def explain(
    detector: Detector,
    images: np.ndarray | Inputs,
    method: str,
    **params: Any,
) -> np.ndarray:
    """Explain ``detector``'s anomaly score on ``images`` with ``method``.

    Parameters
    ----------
    detector:
        A fitted :class:`~xeval.adapters.base.Detector`.
    images:
        ``(B, C, H, W)`` float32 images in ``[0, 1]`` at the detector's input size, or
        :class:`~xeval.record.Inputs` (whose ids seed per-sample randomness, e.g. of the
        random control).
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
        ``(B, H, W)`` float32 at the images' resolution (a native map at another
        resolution is upsampled bilinearly), channels reduced as ``reduce`` says
        (``abs_sum`` by default), not normalised.

    Raises
    ------
    InputError
        Unknown method or parameter, a method that cannot explain this detector (the
        message lists the ones that can), a missing baseline, or a detector whose score
        function misbehaves (wrong shape, NaN, not differentiable).
    """
    x = check_images(images)
    inputs = (
        images
        if isinstance(images, Inputs)
        else Inputs(ids=[str(i) for i in range(len(x))], category="", images=x)
    )
    explainer = make_explainer(method, **params)
    explainer.check(detector)
    maps = np.asarray(explainer.explain(detector, inputs), dtype=np.float32)
    if maps.ndim == 3 and maps.shape[1:] != x.shape[2:]:
        from xeval.metrics.resize import resize_to

        maps = resize_to(maps, x.shape[2:])
    return np.ascontiguousarray(maps, dtype=np.float32)
