"""``xeval.wrap(obj, **how)``: any detector object -> :class:`~xeval.adapters.Detector`.

Dispatch on the object's type (``kind=`` overrides it):

====================================================  ===================================
object                                                adapter (``kind``)
====================================================  ===================================
a :class:`~xeval.adapters.Detector`                   returned as is
an anomalib 2.x model (Lightning or torch)            :class:`AnomalibDetector`
                                                      (``anomalib``)
a ``torch.nn.Module`` with ``method=`` (msp, energy,  an OOD adapter (``ood_classifier``)
odin, mahalanobis)
any other ``torch.nn.Module``                         :class:`TorchModuleDetector`
                                                      (``torch_module``)
an estimator with ``fit`` and ``score_samples`` or    :class:`SklearnFeaturesDetector`
``decision_function`` (scikit-learn, PyOD)            (``sklearn_features``)
any other callable                                    :class:`BlackBoxDetector`
                                                      (``blackbox``)
====================================================  ===================================

``how`` are the keyword options of the chosen adapter (see each class).

:func:`build_from_recipe` builds the same adapters from the declarative recipes in
``adapters/*.yaml`` (``{kind, name, params}``), where models are named by import path
``"package.module:factory"`` -- only paths the import policy of
:mod:`xeval.adapters.imports` allows (a recipe is untrusted input) -- and weights come
from a checkpoint read with ``torch.load(..., weights_only=True)`` unless
``trust_checkpoint: true`` (a real boolean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xeval.adapters._wrapped import describe
from xeval.adapters.anomalib import AnomalibDetector, is_anomalib_model
from xeval.adapters.base import Detector
from xeval.adapters.callable import BlackBoxDetector
from xeval.adapters.imports import import_allowed
from xeval.adapters.ood import METHODS, ood_detector
from xeval.adapters.sklearn import SklearnFeaturesDetector
from xeval.adapters.torch_module import TorchModuleDetector
from xeval.errors import InputError

KINDS = ("torch_module", "blackbox", "sklearn_features", "ood_classifier", "anomalib")
RECIPE_KINDS = KINDS


def _is_estimator(obj: Any) -> bool:
    return (
        not isinstance(obj, type)
        and callable(getattr(obj, "fit", None))
        and any(hasattr(obj, m) for m in ("score_samples", "decision_function", "fit_predict"))
    )


def infer_kind(obj: Any, how: dict | None = None) -> str:
    """The adapter kind :func:`wrap` chooses for ``obj`` (see the module table)."""
    how = how or {}
    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover - torch is a dependency
        nn = None  # type: ignore[assignment]
    if is_anomalib_model(obj):
        return "anomalib"
    if nn is not None and isinstance(obj, nn.Module):
        return "ood_classifier" if "method" in how else "torch_module"
    if _is_estimator(obj):
        return "sklearn_features"
    if callable(obj):
        return "blackbox"
    raise InputError(
        f"xeval.wrap: cannot wrap {describe(obj)}: expected a torch.nn.Module, an anomalib "
        "model, a scikit-learn/PyOD estimator or a callable images -> scores"
    )


def wrap(obj: Any, *, kind: str | None = None, **how: Any) -> Detector:
    """Wrap ``obj`` as a Detector (higher score = more anomalous, always).

    Parameters
    ----------
    obj:
        A torch module, an anomalib model, a scikit-learn/PyOD estimator, or a callable
        ``images (B, C, H, W) float32 -> scores (B,) | (scores, maps)``.
    kind:
        Force the adapter: ``torch_module``, ``blackbox``, ``sklearn_features``,
        ``ood_classifier`` (with ``method=``), ``anomalib``. Default: inferred.
    **how:
        Keyword options of the adapter (``score_fn=``, ``map_fn=``, ``input_size=``,
        ``features=``, ``method=``...).

    Examples
    --------
    >>> det = xeval.wrap(my_autoencoder, input_size=128)          # map = squared error
    >>> det = xeval.wrap(IsolationForest(), features="patch_stats")
    >>> det = xeval.wrap(resnet, method="energy", normalize="imagenet")
    >>> det = xeval.wrap(lambda x: api_scores(x))                 # black box
    """
    if isinstance(obj, Detector):
        if how or kind:
            raise InputError(
                f"xeval.wrap: {type(obj).__name__} is already a Detector; options "
                f"{sorted(how)} do not apply"
            )
        return obj
    kind = kind or infer_kind(obj, how)
    if kind == "torch_module":
        return TorchModuleDetector(obj, **how)
    if kind == "blackbox":
        return BlackBoxDetector(obj, **how)
    if kind == "sklearn_features":
        return SklearnFeaturesDetector(obj, **how)
    if kind == "ood_classifier":
        if "method" not in how:
            raise InputError(f"xeval.wrap(kind='ood_classifier') needs method= {sorted(METHODS)}")
        return ood_detector(obj, **how)
    if kind == "anomalib":
        return AnomalibDetector(obj, **how)
    raise InputError(f"xeval.wrap: kind must be one of {KINDS}, got {kind!r}")


# -- recipes ------------------------------------------------------------------------------
def load_checkpoint(
    module: Any, path: str | Path, *, trust: bool = False, strict: bool = True, who: str = ""
) -> Any:
    """Load ``path`` into ``module`` and return the module to use.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)``
    (tensors and plain containers only: no code runs) unless ``trust`` is True. It may
    hold a state dict, or a dict with a ``"state_dict"`` (Lightning) or ``"model"`` entry;
    with ``trust``, also a whole pickled module, which is returned instead of ``module``.
    """
    import torch
    from torch import nn

    for flag, value in (("trust_checkpoint", trust), ("strict", strict)):
        if not isinstance(value, bool):
            raise InputError(f"{who}{flag} must be True or False, got {value!r}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{who}checkpoint {str(p)!r} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=not trust)
    except Exception as exc:  # noqa: BLE001 - torch raises several unpickling errors
        if not trust and _pickled_objects(exc):
            raise InputError(
                f"{who}checkpoint {str(p)!r} cannot be read with torch.load("
                f"weights_only=True) ({_short_reason(exc)}); it holds pickled Python "
                "objects. Save a state_dict instead, or, only if you trust the file, set "
                "trust_checkpoint: true"
            ) from exc
        raise InputError(
            f"{who}{str(p)!r} is not a valid torch checkpoint (a file written by "
            f"torch.save): {_short_reason(exc)}"
        ) from exc
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise InputError(f"{who}checkpoint {str(p)!r} holds {describe(obj)}, expected a state dict")
    if module is None:
        raise InputError(f"{who}checkpoint {str(p)!r} is a state dict: give model: too")
    try:
        module.load_state_dict(obj, strict=strict)
    except RuntimeError as exc:
        raise InputError(
            f"{who}checkpoint {str(p)!r} does not match {type(module).__name__}: "
            f"{str(exc)[:500]} (set strict: false to load the matching keys only)"
        ) from exc
    return module


def _pickled_objects(exc: Exception) -> bool:
    """Whether torch refused a well-formed pickle because it names Python objects (as
    opposed to a damaged or foreign file)."""
    text = str(exc)
    return "Unsupported global" in text or "weights_only" in text and "GLOBAL" in text


def _short_reason(exc: Exception) -> str:
    """The informative line of torch's long unpickling message, without ANSI codes."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hit = next((ln for ln in lines if "Unsupported global" in ln), None)
    return f"{type(exc).__name__}: {(hit or ' '.join(lines))[:300]}"


def _optional_callable(params: dict, key: str, who: str) -> None:
    """Replace an import-path string in ``params[key]`` by the object it names."""
    v = params.get(key)
    if isinstance(v, str):
        obj = import_allowed(v, what=f"{who}{key}")
        if not callable(obj):
            raise InputError(f"{who}{key} {v!r} is not callable")
        params[key] = obj


def _build_object(path: Any, kwargs: dict | None, what: str) -> Any:
    """Import ``path`` (if the policy allows it); call it with ``kwargs`` when it is a
    class or ``kwargs`` are given."""
    obj = import_allowed(path, what=what)
    if isinstance(obj, type) or kwargs:
        try:
            obj = obj(**(kwargs or {}))
        except TypeError as exc:
            raise InputError(f"{what} {path!r}({kwargs or {}}) failed: {exc}") from exc
    return obj


def _torch_model(params: dict, who: str, *, default_module: str | None = None) -> Any:
    from torch import nn

    spec = params.pop("model", None)
    kwargs = params.pop("model_kwargs", None) or {}
    ckpt = params.pop("checkpoint", None)
    trust = params.pop("trust_checkpoint", False)
    strict = params.pop("strict", True)
    model = None
    if spec is not None:
        if default_module and isinstance(spec, str) and ":" not in spec and "." not in spec:
            spec = f"{default_module}:{spec}"
        model = import_allowed(spec, what=f"{who}model")
        if not isinstance(model, nn.Module):
            if not callable(model):
                raise InputError(f"{who}model {spec!r} is neither an nn.Module nor a factory")
            try:
                model = model(**kwargs)
            except TypeError as exc:
                raise InputError(f"{who}model {spec!r}(**{kwargs}) failed: {exc}") from exc
    elif ckpt is None:
        raise InputError(f"{who}params need model: 'package.module:factory'")
    if ckpt is not None:
        model = load_checkpoint(model, ckpt, trust=trust, strict=strict, who=who)
    if not isinstance(model, nn.Module):
        raise InputError(f"{who}model {spec!r} built {describe(model)}, not an nn.Module")
    return model


def build_from_recipe(recipe: dict) -> Detector:
    """Build a detector from a recipe ``{"kind": ..., "name": ..., "params": {...}}``.

    Kinds and their ``params`` (the files in ``adapters/`` document every key):

    - ``torch_module``: ``model`` (import path of a module or factory), ``model_kwargs``,
      ``checkpoint``, ``trust_checkpoint``, ``strict``; ``score_fn``/``map_fn``/``fit_fn``/
      ``preprocess`` as import paths; other keys go to :class:`TorchModuleDetector`.
    - ``blackbox``: ``function`` (import path), ``function_kwargs`` (then ``function``
      is a factory called with them), ``fit_fn``; others to :class:`BlackBoxDetector`.
    - ``sklearn_features``: ``estimator`` (import path of the class or factory),
      ``estimator_kwargs``, ``features`` (built-in name or import path),
      ``feature_params``; others to :class:`SklearnFeaturesDetector`.
    - ``ood_classifier``: as ``torch_module`` for the model, plus ``method`` (msp, energy,
      odin, mahalanobis) and its options (``temperature``, ``epsilon``, ``layer``...).
    - ``anomalib``: ``model`` (class name in ``anomalib.models``, e.g. ``Padim``, or an
      import path), ``model_kwargs``, ``checkpoint``, ``trust_checkpoint``; others to
      :class:`AnomalibDetector`.

    ``seed`` (set by the engine) is accepted by every kind.
    """
    if not isinstance(recipe, dict) or "kind" not in recipe:
        raise InputError(f"a detector recipe must be a mapping with 'kind', got {recipe!r}")
    kind = recipe["kind"]
    params = dict(recipe.get("params") or {})
    name = recipe.get("name", params.pop("name", kind))
    who = f"detector recipe {name!r} (kind {kind!r}): "
    if kind not in KINDS:
        raise InputError(f"{who}kind must be one of {KINDS}")
    if "input_size" in params and isinstance(params["input_size"], list):
        params["input_size"] = tuple(params["input_size"])
    try:
        if kind == "torch_module":
            model = _torch_model(params, who)
            for key in ("score_fn", "map_fn", "fit_fn", "preprocess"):
                _optional_callable(params, key, who)
            return TorchModuleDetector(model, name=name, **params)
        if kind == "ood_classifier":
            method = params.pop("method", None)
            if method not in METHODS:
                raise InputError(f"{who}method must be one of {sorted(METHODS)}, got {method!r}")
            model = _torch_model(params, who)
            for key in ("logits_fn", "map_fn", "preprocess", "features_fn"):
                _optional_callable(params, key, who)
            return ood_detector(model, method=method, name=name, **params)
        if kind == "blackbox":
            if "function" not in params:
                raise InputError(f"{who}params need function: 'package.module:fn'")
            fn = _build_object(
                params.pop("function"), params.pop("function_kwargs", None), f"{who}function"
            )
            _optional_callable(params, "fit_fn", who)
            return BlackBoxDetector(fn, name=name, **params)
        if kind == "sklearn_features":
            if "estimator" not in params:
                raise InputError(f"{who}params need estimator: 'package.module:Class'")
            est = _build_object(
                params.pop("estimator"),
                params.pop("estimator_kwargs", None) or {},
                f"{who}estimator",
            )
            return SklearnFeaturesDetector(est, name=name, **params)
        # anomalib
        model = _torch_model(params, who, default_module="anomalib.models")
        return AnomalibDetector(model, name=name, **params)
    except TypeError as exc:  # unknown parameter names
        raise InputError(f"{who}{exc}") from exc
