"""Small I/O helpers: atomic writes and safe paths inside an output folder."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from xeval.errors import InputError, OutputError


def safe_join(root: str | os.PathLike, *parts: str) -> Path:
    """Join ``parts`` under ``root`` and refuse any path that escapes ``root``."""
    root_p = Path(root).resolve()
    p = root_p.joinpath(*parts).resolve()
    if p != root_p and root_p not in p.parents:
        raise InputError(f"path {Path(*parts)!s} escapes the output folder {root_p}")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


def os_reason(exc: BaseException) -> str:
    """The operating system's reason of ``exc`` (``strerror``: "No space left on
    device"), or its message when it has none."""
    reason = getattr(exc, "strerror", None)
    return str(reason) if reason else (str(exc) or type(exc).__name__)


def describe_os_error(exc: OSError) -> str:
    """``"<path>: <reason>"`` for an ``OSError`` (``"<path> -> <path2>: <reason>"`` for a
    failed rename), or the reason alone when no path is attached."""
    reason = os_reason(exc)
    if exc.filename is None:
        return reason
    where = os.fsdecode(exc.filename)
    if getattr(exc, "filename2", None) is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {reason}"


def _output_error(what: str, path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{what} {path}: {os_reason(exc)}", path=path, errno=exc.errno)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename);
    the file gets the usual permissions (0666 minus the umask). Missing parent folders
    are created.

    Raises
    ------
    OutputError
        The folder cannot be created, ``path`` is a folder, or writing fails (disk full,
        permission denied...): the message names the path and the operating system's
        reason. No temporary file is left behind and an existing ``path`` is unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder (expected a file path)", path=path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if path.parent.exists() and not path.parent.is_dir():
            raise OutputError(
                f"cannot write {path}: {path.parent} is a file, not a folder",
                path=path,
                errno=exc.errno,
            ) from exc
        where = Path(exc.filename) if exc.filename is not None else path.parent
        raise OutputError(
            f"cannot create the folder {where} for {path}: {os_reason(exc)}",
            path=path,
            errno=exc.errno,
        ) from exc
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _output_error("cannot write", path, exc) from exc
    try:
        try:
            os.fchmod(fd, _MODE)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:  # a regular file never accepts nothing; do not loop forever
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise _output_error("cannot write", path, exc) from exc
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    """:func:`atomic_write_text` of ``obj`` as indented JSON (keys sorted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
