"""One pairing check: detector capabilities x explainer requirements.

A detector offers capabilities (:func:`capabilities`), known before it is fitted:
``"image"`` and ``"baseline"`` always (the engine passes normal reference images),
``"map"`` unless it gives image scores only, ``"gradients"`` and ``"layer"`` when its
score is differentiable, ``"encoder"`` when it exposes a feature encoder. An explainer
requires a set of them (:attr:`~xeval.explainers.base.Explainer.requires`); a fitted
detector may still be refused by the explainer's own
:meth:`~xeval.explainers.base.Explainer.unsupported_reason` (e.g. Grad-CAM without a
convolutional layer). Every refusal names what is missing and lists the explainers that
work with the detector.
"""

from __future__ import annotations

from collections.abc import Iterable

from xeval.adapters.base import Detector, overrides
from xeval.errors import InputError

__all__ = ["capabilities", "check_pairing", "check_pairings", "supported", "unsupported_reason"]


def _probe(detector: Detector, hook: str) -> bool:
    """Whether the fitted ``detector``'s ``hook()`` gives a callable."""
    fn = getattr(detector, hook, None)
    if not callable(fn):
        return False
    try:
        return callable(fn())
    except Exception:  # noqa: BLE001 - not fitted, or a broken hook: not offered
        return False


def capabilities(detector: Detector, *, fitted: bool = False) -> set[str]:
    """What ``detector`` can offer explainers: before fitting, from its declared
    attributes (``has_map``, ``differentiable``, an overridden ``encoder``); once
    fitted (``fitted=True``) also from what its hooks actually return."""
    can = {"image", "baseline"}
    if getattr(detector, "has_map", True):
        can.add("map")
    grad = bool(getattr(detector, "differentiable", False))
    if fitted and not grad:
        grad = _probe(detector, "torch_score")
    if grad:
        can |= {"gradients", "layer"}
    enc = not isinstance(detector, Detector) or overrides(detector, "encoder")
    if fitted:
        enc = _probe(detector, "encoder")
    if enc and callable(getattr(detector, "encoder", None)):
        can.add("encoder")
    return can


def _requires(explainer) -> frozenset[str]:
    req = getattr(explainer, "requires", frozenset())
    return frozenset(req) if not isinstance(req, property) else frozenset()


def unsupported_reason(explainer, detector: Detector, *, fitted: bool = True) -> str | None:
    """Why ``explainer`` (an instance or a class) cannot explain ``detector``; None if it
    can. With ``fitted=False`` only the capabilities are checked (the explainer's own
    check may need a fitted detector)."""
    if fitted:  # the explainer's own check is the most specific
        from xeval.adapters._torch import NotFittedError

        try:
            check = getattr(explainer, "_unsupported", None)
            if callable(check) and not isinstance(explainer, type):
                reason = check(detector)
            else:
                reason = explainer.unsupported_reason(detector)
        except NotFittedError:
            reason = None
        if reason is not None:
            return reason
    missing = _requires(explainer) - capabilities(detector, fitted=fitted)
    if missing:
        return f"it needs {sorted(missing)}, which the detector does not provide"
    return None


def supported(detector: Detector, *, fitted: bool = True) -> list[str]:
    """Names of the registered explainers that can explain ``detector``."""
    from xeval.registry import EXPLAINERS

    return [
        name
        for name, cls in EXPLAINERS.items()
        if unsupported_reason(cls, detector, fitted=fitted) is None
    ]


def _label(detector: Detector) -> str:
    return f"{getattr(detector, 'name', '?')!r} ({type(detector).__name__})"


def check_pairing(detector: Detector, explainer, *, fitted: bool = True) -> None:
    """Raise :class:`InputError` if ``explainer`` cannot explain ``detector``."""
    reason = unsupported_reason(explainer, detector, fitted=fitted)
    if reason is not None:
        name = getattr(explainer, "name", explainer)
        raise InputError(
            f"explainer {name!r} cannot explain detector {_label(detector)}: {reason}. "
            f"Explainers that work with this detector: "
            f"{', '.join(supported(detector, fitted=fitted))}"
        )


def check_pairings(detector: Detector, explainers: Iterable, *, fitted: bool = False) -> None:
    """:func:`check_pairing` for each explainer (before fitting by default)."""
    for e in explainers:
        check_pairing(detector, e, fitted=fitted)
