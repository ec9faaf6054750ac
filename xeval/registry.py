"""One decorator registry for metrics, explainers, detectors and dataset readers.

>>> from xeval.registry import METRICS
>>> @METRICS.register
... class MyMetric(Metric):
...     name = "my_metric"

A registry knows the modules that hold its built-in entries and imports them on the
first lookup (so ``import xeval`` stays light: torch and captum load only when an
attribution explainer is looked up). Installed packages add entries through the entry
point group ``xeval.<kind>`` (e.g. ``xeval.metrics``), whose modules register on import.

Options of an entry are the keyword parameters of its constructor (or of the function,
for dataset readers): :meth:`Registry.check_options` validates names and, where the
annotation says, types -- before anything is built or loaded, with errors that name the
key and list the valid ones.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from xeval.errors import ConfigError

__all__ = [
    "DATASETS",
    "DETECTORS",
    "EXPLAINERS",
    "METRICS",
    "VIDEO_DATASETS",
    "VIDEO_DETECTORS",
    "VIDEO_EXPLAINERS",
    "Registry",
    "option_spec",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry (a class or a function), filled by :meth:`register`.

    Parameters
    ----------
    kind:
        What it holds (``"metric"``, ``"explainer"``...); entry points come from the
        group ``xeval.<kind>s``.
    what:
        How messages call an entry (default ``kind``; e.g. ``"detector kind"``).
    modules:
        Modules whose import registers the built-in entries (imported on first lookup).
    """

    def __init__(self, kind: str, *, modules: Iterable[str] = (), what: str | None = None) -> None:
        self.kind = kind
        self.what = what or kind
        self._modules = tuple(modules)
        self._entries: dict[str, T] = {}
        self._loaded = False

    # ----------------------------------------------------------------- registration
    def register(self, obj: T | None = None, *, name: str | None = None):
        """Register ``obj`` under ``name`` (default: its ``name`` attribute); usable as
        ``@REG.register`` or ``@REG.register(name="x")``. A second entry under the same
        name is an error."""

        def add(o: T) -> T:
            key = name or getattr(o, "name", None)
            if not isinstance(key, str) or not key:
                raise TypeError(f"{self.kind} {o!r} has no name: set a 'name' attribute")
            prior = self._entries.get(key)
            if prior is not None and prior is not o:
                raise ValueError(f"{self.kind} {key!r} is registered twice ({prior!r}, {o!r})")
            self._entries[key] = o
            return o

        return add if obj is None else add(obj)

    def _load(self) -> None:
        if self._loaded:
            return
        for mod in self._modules:
            importlib.import_module(mod)
        self._loaded = True
        try:
            from importlib.metadata import entry_points

            for ep in entry_points(group=f"xeval.{self.kind}s"):
                ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break xeval
            import warnings

            warnings.warn(f"xeval: a {self.kind} plug-in failed to load: {exc}", stacklevel=2)

    # ----------------------------------------------------------------------- lookup
    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def get(self, name: object, *, where: str = "") -> T:
        """The entry called ``name``; :class:`ConfigError` listing the known names."""
        self._load()
        if not isinstance(name, str) or name not in self._entries:
            prefix = f"{where}: " if where else ""
            raise ConfigError(
                f"{prefix}unknown {self.what} {name!r}; known {self.what}s: "
                f"{', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    # ---------------------------------------------------------------------- options
    def check_options(self, name: str, options: Mapping, *, where: str = "") -> dict:
        """Validate ``options`` of entry ``name`` against its signature (names and
        annotated types) without building anything; returns them as a dict."""
        return check_options(self.get(name, where=where), options, where=where or name)


# ------------------------------------------------------------------------- options
def _no_options() -> None:
    """The signature of a class without constructor options."""


def _callable_of(entry: Any) -> Callable:
    if isinstance(entry, type):
        return _no_options if entry.__init__ is object.__init__ else entry.__init__
    return entry


def option_spec(entry: Any) -> dict[str, inspect.Parameter]:
    """The options of ``entry``: the keyword parameters of its constructor (a class) or
    of the function itself, without ``self`` and ``*args``/``**kwargs``."""
    sig = inspect.signature(_callable_of(entry))
    return {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _accepts_kwargs(entry: Any) -> bool:
    sig = inspect.signature(_callable_of(entry))
    return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _hints(entry: Any) -> dict[str, Any]:
    fn = _callable_of(entry)
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        return {}


def check_options(entry: Any, options: Mapping, *, where: str) -> dict:
    """Check ``options`` against ``entry``'s keyword parameters: unknown names, missing
    required ones and, for simple annotations (bool, int, float, str, None, Literal,
    unions, lists/tuples of those), the types. A bool is never accepted as a number and
    a string never as a bool."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: options must be a mapping, got {options!r}")
    spec = option_spec(entry)
    if not _accepts_kwargs(entry):
        unknown = sorted(set(options) - set(spec))
        if unknown:
            raise ConfigError(
                f"{where}: unknown option(s) {unknown}; valid options: {sorted(spec) or 'none'}"
            )
    missing = [
        n for n, p in spec.items() if p.default is inspect.Parameter.empty and n not in options
    ]
    if missing:
        raise ConfigError(f"{where}: missing required option(s) {missing}")
    hints = _hints(entry)
    for key, value in options.items():
        ann = hints.get(key)
        if ann is not None and not conforms(value, ann):
            raise ConfigError(
                f"{where}: option {key!r} must be {describe_type(ann)}, got {value!r}"
            )
    return dict(options)


def conforms(value: Any, ann: Any) -> bool:
    """Whether ``value`` (as read from YAML) fits the annotation ``ann``. Annotations
    this check does not understand (classes, callables, arrays) accept any value: the
    constructor validates them."""
    if ann is Any or ann is inspect.Parameter.empty:
        return True
    if ann is None or ann is type(None):
        return value is None
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        return any(conforms(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ann is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ann is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, typing.Sequence) or ann in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(
                conforms(v, a) for v, a in zip(value, args, strict=True)
            )
        return all(conforms(v, args[0]) for v in value)
    if origin in (dict, Mapping, typing.Mapping) or ann in (dict,):
        return isinstance(value, Mapping)
    return True


def describe_type(ann: Any) -> str:
    """A short human description of an annotation (for error messages)."""
    if ann is None or ann is type(None):
        return "null"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, Sequence, typing.Sequence):
        inner = describe_type(args[0]) if args else "values"
        return f"a list of {inner}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(ann, getattr(ann, "__name__", str(ann)))


# ---------------------------------------------------------------------- registries
METRICS: Registry = Registry(
    "metric",
    modules=(
        "xeval.metrics.detection",
        "xeval.metrics.pixel",
        "xeval.metrics.threshold",
        "xeval.metrics.aupimo",
        "xeval.metrics.spro",
        "xeval.metrics.localisation",
        "xeval.metrics.complexity",
        "xeval.metrics.faithfulness",
        "xeval.metrics.robustness",
        "xeval.metrics.randomisation",
        "xeval.metrics.frames",
        "xeval.metrics.tracks",
        "xeval.metrics.reasons",
    ),
)
"""Registered metrics (:class:`xeval.metrics.base.Metric` subclasses)."""

EXPLAINERS: Registry = Registry(
    "explainer",
    modules=(
        "xeval.explainers.native",
        "xeval.explainers.controls",
        "xeval.explainers.attribution.gradient",
        "xeval.explainers.attribution.deeplift",
        "xeval.explainers.attribution.perturbation",
        "xeval.explainers.label_free",
    ),
)
"""Registered explainers (:class:`xeval.explainers.base.Explainer` subclasses)."""

DETECTORS: Registry = Registry(
    "detector",
    what="detector kind",
    modules=(
        "xeval.adapters.autoencoder",
        "xeval.adapters.patch_features",
        "xeval.adapters.recipes",
    ),
)
"""Registered detector kinds: classes built from recipes, or recipe kinds
(:class:`xeval.adapters.recipes.RecipeKind`) for the wrap adapters."""

DATASETS: Registry = Registry(
    "dataset",
    what="dataset format",
    modules=("xeval.data.textures", "xeval.data.mvtec", "xeval.data.folder", "xeval.data.loco"),
)
"""Registered dataset formats: functions ``(*, seed, **options) -> {category: split}``."""

VIDEO_DATASETS: Registry = Registry(
    "video dataset",
    what="video dataset format",
    modules=(
        "xeval.data.video.ucsd",
        "xeval.data.video.avenue",
        "xeval.data.video.shanghaitech",
        "xeval.data.video.ubnormal",
        "xeval.data.video.synthetic",
    ),
)
"""Registered video dataset formats: functions ``(*, seed, **options) ->``
:class:`xeval.data.video.base.VideoDataset`."""

VIDEO_DETECTORS: Registry = Registry(
    "video detector",
    what="video detector kind",
    modules=(
        "xeval.adapters.video.frame_difference",
        "xeval.adapters.video.reasoning",
        "xeval.adapters.video.clip",
        "xeval.adapters.video.clip_autoencoder",
    ),
)
"""Registered video detector kinds: :class:`xeval.adapters.video.base.VideoDetector`
subclasses built from ``{kind: ..., params: {...}}``."""

VIDEO_EXPLAINERS: Registry = Registry(
    "video explainer",
    modules=("xeval.explainers.video",),
)
"""Registered video explainers (:class:`xeval.explainers.video.VideoExplainer`)."""
