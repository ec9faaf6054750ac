"""Where a run writes, and that only one run writes there at a time.

- :func:`resolve_output`: an output folder given by the caller (``--out``, ``out_dir=``)
  is used as given. One that comes from the configuration file (``output:``, ``cache:``)
  is untrusted: it must be a relative path that stays under the current folder (no
  absolute path, no ``..``); anything else is a :class:`~xeval.errors.ConfigError` that
  says to pass ``--out``.
- :func:`claim_output`: an existing, non-empty folder is written into only when an
  earlier xeval run made it (it holds the :data:`MARKER` file, or a ``manifest.json``
  written by xeval); a new folder gets the marker. Existing folders of anything else
  are never overwritten.
- :class:`OutputLock`: an exclusive lock on ``<out>/.xeval.lock`` for the whole run; a
  second run on the same folder fails at once with a message naming the holder. The
  lock is an ``fcntl``/``msvcrt`` file lock, so the operating system releases it when
  the process dies (``kill -9`` leaves no stale lock behind).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path, PurePath

from xeval.errors import ConfigError, InputError

__all__ = ["MARKER", "OutputLock", "claim_output", "confined_path", "resolve_output"]

MARKER = ".xeval-output"
LOCK = ".xeval.lock"


def confined_path(value: str, *, key: str, where: str) -> Path:
    """``value`` from a configuration file as a path under the current folder, or a
    :class:`ConfigError` naming ``key``."""
    p = PurePath(value)
    if p.is_absolute() or p.drive or ".." in p.parts or str(value).startswith("~"):
        raise ConfigError(
            f"{where}: {key} {value!r} leaves the current folder; a configuration file may "
            "only write under the folder xeval runs in (a relative path without '..'). "
            "Pass the folder on the command line (--out) or in Python (out_dir=) instead"
        )
    return Path(value)


def resolve_output(cfg, out_dir: str | os.PathLike | None) -> Path:
    """The run's output folder: ``out_dir`` as given by the caller, else the
    configuration's ``output`` confined to the current folder."""
    if out_dir is not None:
        return Path(out_dir)
    return confined_path(cfg.output, key="output", where=cfg.source or "config")


def _is_xeval_folder(path: Path) -> bool:
    if (path / MARKER).is_file() or (path / LOCK).is_file():
        return True
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "xeval_version" in manifest


def claim_output(path: Path) -> Path:
    """Create ``path`` (or check that xeval may write into it) and mark it as an xeval
    output folder."""
    from xeval import __version__
    from xeval._io import atomic_write_text

    if path.exists() and not path.is_dir():
        raise InputError(f"output folder {str(path)!r} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not _is_xeval_folder(path):
        raise InputError(
            f"output folder {str(path)!r} exists, is not empty and was not written by "
            f"xeval (no {MARKER} file): choose another output folder (--out), or empty it"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {str(path)!r}: {exc.strerror}") from exc
    if not (path / MARKER).is_file():
        atomic_write_text(path / MARKER, f"written by xeval {__version__}\n")
    return path


class OutputLock:
    """``with OutputLock(out):`` holds an exclusive lock on ``out`` (see the module
    docstring); raises :class:`InputError` when another run holds it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path) / LOCK
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read(fd)
            os.close(fd)
            raise InputError(
                f"output folder {str(self.path.parent)!r} is in use by another xeval run "
                f"({holder}); wait for it to finish, or choose another output folder (--out)"
            ) from None
        os.ftruncate(fd, 0)
        info = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}"
        os.write(fd, info.encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


def _read(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip() or "holder unknown"
    except OSError:
        return "holder unknown"


try:  # POSIX
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
