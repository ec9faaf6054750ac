"""Exceptions and warnings raised by xeval.

Every error names the offending argument (or file), the value it got and what was
expected, so that a user can fix the input without reading the source.
"""

from __future__ import annotations


class XevalError(Exception):
    """Base class of all errors raised by xeval."""


class InputError(XevalError, ValueError):
    """An argument or a file does not have the expected shape, type or content."""


class DatasetError(InputError):
    """A dataset folder is malformed (missing masks, size mismatch, non-binary mask...)."""


class ConfigError(InputError):
    """A run configuration (YAML) is invalid."""


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given input (e.g. one class only) and is NaN."""


class XevalDeprecationWarning(FutureWarning):
    """A configuration key or form that still works but will be removed; the message
    says what to write instead. (A FutureWarning, so that command-line users see it.)"""
