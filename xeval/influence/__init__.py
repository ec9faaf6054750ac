"""Example importance for anomaly detectors: which training images make a test image
look normal (or anomalous), and which training images are suspicious.

- :func:`influence` ``(detector, train, test, *, method, loss=None, l2=0.0, **params)``
  -> ``(n_test, n_train)``; positive = the training image makes the test image look
  normal (removing it would raise the test score).
- :func:`self_influence` ``(detector, train, *, method, ...)`` -> ``(n_train,)``;
  high = suspicious.
- :data:`INFLUENCE_METHODS`: the registered methods; :func:`available_methods`.

This package is itself callable: ``xeval.influence(detector, train, test, method=...)``
is :func:`xeval.influence.influence` (the public name of the function and of the
package are the same).
"""

import inspect as _inspect
import sys as _sys
import types as _types

from xeval.influence.api import available_methods, build_method, influence, self_influence
from xeval.influence.registry import INFLUENCE_METHODS

__all__ = [
    "INFLUENCE_METHODS",
    "available_methods",
    "build_method",
    "influence",
    "self_influence",
]


class _CallablePackage(_types.ModuleType):
    """``xeval.influence(...)`` calls :func:`influence`."""

    def __call__(self, *args, **kwargs):
        return influence(*args, **kwargs)


__signature__ = _inspect.signature(influence)
_sys.modules[__name__].__class__ = _CallablePackage
