"""An exact streaming quantile for a stream whose length is known in advance.

``np.quantile(values, q)`` (linear interpolation, numpy's default) depends only on the
two order statistics around position ``q (n - 1)``. When ``n`` is known up front -- the
pixel count of the normal validation images is, from their headers -- a stream only has
to keep the values that can still be one of them: the ``n - floor(q (n - 1))`` largest
(or, for ``q < 1/2``, the ``floor(q (n - 1)) + 2`` smallest). For the usual threshold
quantile ``q = 0.99`` that is 1% of the pixels instead of all of them, and the result is
bit-identical to ``np.quantile`` on the concatenated values.
"""

from __future__ import annotations

import math

import numpy as np

from xeval.errors import InputError
from xeval.metrics._validation import pow2_scale

__all__ = ["StreamingQuantile"]


class StreamingQuantile:
    """Exact ``np.quantile`` of ``n_total`` values fed in pieces (mergeable).

    Parameters
    ----------
    q:
        The quantile, in ``[0, 1]``.
    n_total:
        How many values the stream will hold in all (checked at :meth:`result`).
    """

    def __init__(self, q: float, n_total: int) -> None:
        if isinstance(q, bool) or not 0.0 <= float(q) <= 1.0:
            raise InputError(f"quantile must lie in [0, 1], got {q!r}")
        if isinstance(n_total, bool) or int(n_total) < 1:
            raise InputError(f"n_total must be a positive integer, got {n_total!r}")
        self.q = float(q)
        self.n_total = int(n_total)
        self._pos = self.q * (self.n_total - 1)
        i = math.floor(self._pos)
        self._i = i
        # keep the top k (when the order statistics are in the upper half) or the bottom k
        self._top = i >= (self.n_total - 1) / 2
        self._k = (self.n_total - i) if self._top else min(i + 2, self.n_total)
        self._kept: np.ndarray | None = None
        self.n_seen = 0

    def _trim(self, v: np.ndarray) -> np.ndarray:
        if v.size <= self._k:
            return v
        if self._top:
            return np.partition(v, v.size - self._k)[v.size - self._k :]
        return np.partition(v, self._k - 1)[: self._k]

    def update(self, values) -> StreamingQuantile:
        """Add ``values`` (any shape; flattened)."""
        v = np.asarray(values).ravel()
        if v.size == 0:
            return self
        if not np.all(np.isfinite(v)):
            raise InputError("StreamingQuantile: values hold NaN or inf")
        self.n_seen += int(v.size)
        if self.n_seen > self.n_total:
            raise InputError(
                f"StreamingQuantile: got {self.n_seen} values, more than n_total={self.n_total}"
            )
        both = v if self._kept is None else np.concatenate([self._kept, v])
        self._kept = self._trim(both)
        return self

    def merge(self, other: StreamingQuantile) -> StreamingQuantile:
        """The state of both streams (same ``q`` and ``n_total``)."""
        if (self.q, self.n_total) != (other.q, other.n_total):
            raise InputError("cannot merge StreamingQuantile states of different q / n_total")
        out = StreamingQuantile(self.q, self.n_total)
        parts = [p for p in (self._kept, other._kept) if p is not None]
        out.n_seen = self.n_seen + other.n_seen
        if parts:
            out._kept = out._trim(np.concatenate(parts))
        return out

    def result(self) -> float:
        """``np.quantile(all values, q)``, exactly."""
        if self.n_seen != self.n_total:
            raise InputError(
                f"StreamingQuantile: expected {self.n_total} values, got {self.n_seen}"
            )
        kept = np.sort(self._kept)
        # index of the lower order statistic within the kept values
        lo = self._i - (self.n_total - kept.size) if self._top else self._i
        frac = self._pos - self._i
        pair = kept[lo : lo + 2] if lo + 1 < kept.size else kept[lo : lo + 1]
        if pair.size == 1 or frac == 0:
            return float(np.quantile(pair[:1], 0.0))
        # the same interpolation numpy performs on the full array (gamma = frac)
        with np.errstate(over="ignore", invalid="ignore"):
            t = float(np.quantile(pair, frac))
        if not np.isfinite(t):  # overflow between huge scores: rescale exactly first
            s = float(pow2_scale(np.abs(pair).max()))
            t = float(np.quantile(pair * s, frac)) / s
        return t
