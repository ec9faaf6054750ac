"""Progress bars for the long steps (fitting, explaining, faithfulness curves, dataset
builds, report figures): tqdm on a terminal, silent otherwise (logs, CI, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(iterable: Iterable[T], *, desc: str = "", total: int | None = None) -> Iterator[T]:
    """``iterable`` with a transient progress bar on stderr when it is a terminal."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, leave=False, disable=None, unit="it")
