"""Imports of the optional cross-check packages (Quantus, PyOD, anomalib) for the tests.

``require(name)`` is ``pytest.importorskip`` for them, with one difference: when the
environment variable ``XEVAL_REQUIRE_CROSSCHECKS`` is set (and not ``0``), as ``.ci/run``
does, a package that cannot be imported fails the test instead of skipping it, so that
CI cannot go green with a cross-check silently left out.

(A plain module beside ``conftest.py`` rather than in it: several ``conftest.py`` files
share the module name ``conftest``, so they cannot be imported reliably by name.)
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# package -> how to install it (the README's "Tests and cross-checks" section)
INSTALL = {
    "quantus": 'pip install -e ".[crosscheck]"',
    "rliable": 'pip install -e ".[crosscheck]"',
    "pyod": 'pip install -e ".[adapters]"',
    "anomalib": "the anomalib venv of the README (torch 2.14.1 + torchvision 0.29.1)",
}


def required() -> bool:
    """True when missing cross-check packages must fail rather than skip (CI)."""
    return os.environ.get("XEVAL_REQUIRE_CROSSCHECKS", "").strip() not in ("", "0")


def optional(module: str) -> ModuleType | None:
    """``module`` if it imports, else None: for a module-level name, with :func:`require`
    called at test time (an autouse fixture) so that deselected tests do not fail."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001
        return None


def require(module: str) -> ModuleType:
    """Import ``module`` (e.g. ``"quantus"`` or ``"anomalib.metrics.pimo.functional"``);
    skip the calling test (or module, at module level) when it cannot be imported, or fail
    it when :func:`required`."""
    __tracebackhide__ = True  # the skip is reported at the calling test's line
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means: not available
        top = module.split(".")[0]
        msg = f"{module} not importable ({e!r}); install: {INSTALL.get(top, top)}"
        if required():
            pytest.fail(f"XEVAL_REQUIRE_CROSSCHECKS is set and {msg}", pytrace=False)
        pytest.skip(msg, allow_module_level=True)
