"""Which import paths a detector recipe may name: the recipe import policy.

A run configuration or a detector recipe is **untrusted input** -- someone else's YAML
file must never run code. Recipes nevertheless name Python objects by import path
(``model: "mypkg.models:make_ae"``, ``estimator: "sklearn.ensemble:IsolationForest"``),
and building the detector imports and calls them. This module decides which paths may
be imported, *before* anything is imported or called (:func:`check_import_path` runs
when a configuration is checked, :func:`import_allowed` again when it is built):

- **built-in allow-list** (:data:`SAFE_CLASS_MODULES`): *classes* (never functions) of
  the estimator and model packages a recipe is made for -- scikit-learn outlier
  detectors, PyOD models, anomalib models. Their constructors only store parameters.
- **modules you name** -- your own code, which you trust because you call it:
  ``xeval run CONFIG --allow-import mypkg`` on the command line, or
  :func:`add_safe_imports` / the :func:`safe_imports` context manager in Python (the
  analogue of ``torch.serialization.add_safe_globals``). A module you name allows its
  submodules too and any public attribute (classes and functions).

Never allowed, whatever the policy: attributes starting with ``_``, and a configuration
file cannot extend the policy (there is no config key for it). Anything else --
``"subprocess:getoutput"``, ``"os:system"``, ``"builtins:eval"``,
``"sklearn.datasets:fetch_openml"`` -- is a :class:`~xeval.errors.ConfigError` naming
the key and the path, raised before any import.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator
from typing import Any

from xeval.errors import ConfigError

__all__ = [
    "SAFE_CLASS_MODULES",
    "add_safe_imports",
    "check_import_path",
    "clear_safe_imports",
    "get_safe_imports",
    "import_allowed",
    "safe_imports",
]

SAFE_CLASS_MODULES: tuple[str, ...] = (
    "sklearn.ensemble",
    "sklearn.neighbors",
    "sklearn.svm",
    "sklearn.covariance",
    "sklearn.mixture",
    "pyod.models",
    "anomalib.models",
)
"""Modules (and their submodules) whose public **classes** any recipe may name."""

_USER: list[str] = []
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_ATTR = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\Z")


def _check_module_name(name: Any) -> str:
    if not isinstance(name, str) or not _MODULE.match(name):
        raise ConfigError(
            f"allowed import {name!r} must be a module name such as 'mypkg' or 'mypkg.models'"
        )
    return name


def add_safe_imports(*modules: str) -> None:
    """Allow recipes to name any public attribute of ``modules`` (and submodules).

    Only for code you trust: importing a module runs it, and a recipe may then call
    any of its public functions with arguments of its choosing."""
    for m in modules:
        if _check_module_name(m) not in _USER:
            _USER.append(m)


def clear_safe_imports() -> None:
    """Forget the modules added with :func:`add_safe_imports`."""
    _USER.clear()


def get_safe_imports() -> tuple[str, ...]:
    """The modules added with :func:`add_safe_imports` (the built-in class allow-list
    :data:`SAFE_CLASS_MODULES` is always in force)."""
    return tuple(_USER)


@contextlib.contextmanager
def safe_imports(*modules: str) -> Iterator[None]:
    """``with safe_imports("mypkg"): ...`` allows ``modules`` inside the block only."""
    before = list(_USER)
    add_safe_imports(*modules)
    try:
        yield
    finally:
        _USER[:] = before


def _under(module: str, roots) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def _split(path: Any, what: str) -> tuple[str, str]:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{what} must be an import path 'package.module:name', got {path!r}")
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not _MODULE.match(module or "") or not _ATTR.match(attr or ""):
        raise ConfigError(
            f"{what} {path!r} is not an import path 'package.module:name' with a public "
            "name (names starting with '_' are never allowed)"
        )
    return module, attr


def check_import_path(path: Any, *, what: str = "import path") -> tuple[str, str, bool]:
    """Check ``path`` against the policy without importing anything.

    Returns ``(module, attribute, user_allowed)``; raises :class:`ConfigError` naming
    ``what`` and ``path`` when the policy does not allow it."""
    module, attr = _split(path, what)
    if _under(module, _USER):
        return module, attr, True
    if _under(module, SAFE_CLASS_MODULES) and "." not in attr:
        return module, attr, False
    allowed = ", ".join(SAFE_CLASS_MODULES)
    raise ConfigError(
        f"{what} {path!r}: a configuration may only name classes of the built-in "
        f"allow-list ({allowed}) or objects of modules you allow explicitly "
        f"(xeval run ... --allow-import {module.split('.')[0]}, or "
        f"xeval.adapters.add_safe_imports({module.split('.')[0]!r}) in Python) -- a "
        "configuration file is untrusted input and cannot make xeval import or call code"
    )


def import_allowed(path: Any, *, what: str = "import path") -> Any:
    """Import the object ``path`` names, if the policy allows it (see the module
    docstring); objects of the built-in allow-list must be classes."""
    from xeval.errors import InputError

    module, attr, user = check_import_path(path, what=what)
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"{what} {path!r}: cannot import module {module!r} ({exc})") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(
                f"{what} {path!r}: module {module!r} has no attribute {attr!r}"
            ) from None
    if not user and not isinstance(obj, type):
        raise ConfigError(
            f"{what} {path!r} is not a class; only classes of {module.split('.')[0]} may be "
            "named without --allow-import"
        )
    return obj
