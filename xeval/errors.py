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


class ResumeWarning(UserWarning):
    """A saved unit of an earlier run is not reused (damaged, or stale: the dataset's
    files, the configuration or xeval changed) and is recomputed."""


class OutputError(XevalError, OSError):
    """A result file or folder cannot be written (the folder cannot be created, the path is
    a folder, the disk is full, permission denied...). The message names the path and the
    operating system's reason; ``errno`` and ``filename`` are those of the cause. Also an
    ``OSError``, so that code catching ``OSError`` around writes still does."""

    def __init__(self, message: str, *, path=None, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingDataWarning(UserWarning):
    """Data the user allowed to be missing (``xeval score --allow-missing``) is missing;
    it is shown as missing (NaN) in the results, never dropped silently."""


class RegistryWarning(UserWarning):
    """A finished run could not be recorded in the run registry (the run itself
    succeeded; the message says why and which file)."""
