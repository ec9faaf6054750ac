"""The registry of example-importance methods (:data:`INFLUENCE_METHODS`).

>>> from xeval.influence.registry import INFLUENCE_METHODS
>>> @INFLUENCE_METHODS.register
... class MyMethod(InfluenceMethod):
...     name = "my_method"

Entries are :class:`~xeval.influence.base.InfluenceMethod` subclasses; their options are
their keyword-only constructor arguments. Installed packages add methods through the
entry point group ``xeval.influence_methods``.
"""

from __future__ import annotations

from xeval.registry import Registry

__all__ = ["INFLUENCE_METHODS"]

INFLUENCE_METHODS: Registry = Registry(
    "influence_method",
    what="influence method",
    modules=(
        "xeval.influence.similarity",
        "xeval.influence.influence_function",
        "xeval.influence.tracin",
        "xeval.influence.label_free",
    ),
)
"""Registered example-importance methods, by name (``influence_function``,
``tracin``, ``grad_dot``, ``grad_cos``, ``representation``, ``knn``, ``label_free``)."""
