"""Per-example parameter gradients of a detector's score and training loss.

The detector's torch module is called functionally (:func:`torch.func.functional_call`)
with parameter values passed in, so gradients can be taken at the current parameters
or at any saved checkpoint without touching the detector. Per-example gradients use
``torch.func.vmap(torch.func.grad(...))`` (one forward/backward per chunk of
``batch_size`` images) and fall back to one ``torch.autograd.grad`` call per image for
modules whose operations vmap does not support.

Memory is bounded by chunking over images and, optionally, by a seeded Gaussian random
projection (Johnson–Lindenstrauss) of each gradient to ``projection_dim`` numbers:
:class:`RandomProjection` generates its matrix block by block from the seed, so the
full ``(n_params, projection_dim)`` matrix is never held unless it is small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from xeval.errors import InputError

__all__ = [
    "PROJECTIONS",
    "Bound",
    "CountSketch",
    "DifferentiableModel",
    "RandomProjection",
    "per_example_grads",
]

LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class _Call(nn.Module):
    """``forward(x) = fn(module, x)``: lets functional_call swap ``module``'s parameters
    while ``fn`` (a detector's score, a user loss) runs."""

    def __init__(self, module: nn.Module, fn: LossFn) -> None:
        super().__init__()
        self.module = module
        self.__dict__["_fn"] = fn  # not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fn(self.module, x)


@dataclass
class DifferentiableModel:
    """The differentiable part of a detector: its module, the parameters influence is
    taken over, the score of test images and the per-example training loss.

    ``names`` are the selected parameter names (as in ``module.named_parameters()``);
    ``score(module, x)`` and ``loss(module, x)`` return ``(B,)``.
    """

    module: nn.Module
    names: tuple[str, ...]
    score: LossFn
    loss: LossFn
    device: torch.device

    @property
    def shapes(self) -> list[torch.Size]:
        named = dict(self.module.named_parameters())
        return [named[n].shape for n in self.names]

    @property
    def n_params(self) -> int:
        return int(sum(math.prod(s) for s in self.shapes))

    def current(self) -> dict[str, torch.Tensor]:
        """The selected parameters' current values (detached copies, float32)."""
        named = dict(self.module.named_parameters())
        return {n: named[n].detach().clone() for n in self.names}

    def select(self, state: Mapping[str, torch.Tensor], *, where: str) -> dict:
        """The selected parameters taken from a checkpoint ``state`` (name -> tensor)."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise InputError(
                f"{where}: checkpoint lacks parameter(s) {missing[:5]}; it holds "
                f"{sorted(state)[:10]}"
            )
        out = {}
        named = dict(self.module.named_parameters())
        for n, shape in zip(self.names, self.shapes, strict=True):
            t = torch.as_tensor(state[n])
            if t.shape != shape:
                raise InputError(
                    f"{where}: parameter {n!r} has shape {tuple(t.shape)}, the module's "
                    f"has {tuple(shape)}"
                )
            out[n] = t.detach().to(self.device, named[n].dtype)
        return out

    def bound(self, which: str) -> Bound:
        fn = self.score if which == "score" else self.loss
        return Bound(_Call(self.module, fn), self.names)

    def flatten(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([params[n].reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for n, s in zip(self.names, self.shapes, strict=True):
            k = math.prod(s)
            out[n] = flat[i : i + k].view(s)
            i += k
        return out


@dataclass
class Bound:
    """``fn(params, x) -> (B,)``: a score or loss as a function of the selected
    parameters (a dict) and a batch of images."""

    wrapper: _Call
    names: tuple[str, ...]

    def __call__(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        full = {f"module.{n}": params[n] for n in self.names}
        out = torch.func.functional_call(self.wrapper, full, (x,), strict=False)
        if not isinstance(out, torch.Tensor) or out.ndim != 1 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise InputError(
                f"a score or loss must return one number per image, shape ({x.shape[0]},), "
                f"got {shape}"
            )
        return out


# ------------------------------------------------------------------ projections
class RandomProjection:
    """A seeded Gaussian random projection ``g -> g @ R`` with ``R`` of shape
    ``(dim_in, dim_out)`` and i.i.d. ``N(0, 1/dim_out)`` entries, so that
    ``E[<gR, hR>] = <g, h>`` (Johnson–Lindenstrauss).

    ``R`` is generated in row blocks of ``block`` rows, block ``b`` from a
    :class:`torch.Generator` seeded with ``(seed, b)``; the whole matrix is cached only
    when it takes at most ``cache_bytes``. The result depends on ``seed`` only (not on
    the block size when cached or not).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        *,
        seed: int,
        block: int = 1 << 15,
        cache_bytes: int = 64 << 20,
    ) -> None:
        if dim_out < 1:
            raise InputError(f"projection_dim must be >= 1, got {dim_out!r}")
        self.dim_in = int(dim_in)
        self.dim_out = int(dim_out)
        self.seed = int(seed)
        self.block = int(block)
        self._cache: list[torch.Tensor] | None = None
        if self.dim_in * self.dim_out * 4 <= cache_bytes:
            self._cache = list(self._blocks())

    def _blocks(self) -> Iterator[torch.Tensor]:
        scale = 1.0 / math.sqrt(self.dim_out)
        for b, start in enumerate(range(0, self.dim_in, self.block)):
            rows = min(self.block, self.dim_in - start)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + b)
            yield torch.randn(rows, self.dim_out, generator=gen) * scale

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Project ``g`` of shape ``(B, dim_in)`` to ``(B, dim_out)``."""
        blocks = self._cache if self._cache is not None else self._blocks()
        out = torch.zeros(g.shape[0], self.dim_out, dtype=g.dtype, device=g.device)
        start = 0
        for r in blocks:
            out += g[:, start : start + r.shape[0]] @ r.to(g)
            start += r.shape[0]
        return out


class CountSketch:
    """A seeded count sketch ``g -> S g`` (Charikar et al. 2002; Clarkson & Woodruff
    2013): coordinate ``i`` of ``g`` is added, with a random sign ``σ_i``, to bucket
    ``h(i)`` of ``dim_out``; ``E[<Sg, Sh>] = <g, h>``.

    Memory ``O(dim_in)`` (the hash and the signs) and time ``O(B x dim_in)`` per batch,
    against ``O(dim_in x dim_out)`` for :class:`RandomProjection`: the choice for large
    models. Its variance is larger for gradients concentrated on few coordinates.
    """

    def __init__(self, dim_in: int, dim_out: int, *, seed: int) -> None:
        if dim_out < 1:
            raise InputError(f"projection_dim must be >= 1, got {dim_out!r}")
        self.dim_in = int(dim_in)
        self.dim_out = int(dim_out)
        gen = torch.Generator().manual_seed(int(seed))
        self.bucket = torch.randint(0, self.dim_out, (self.dim_in,), generator=gen)
        self.sign = torch.randint(0, 2, (self.dim_in,), generator=gen).to(torch.int8) * 2 - 1

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Sketch ``g`` of shape ``(B, dim_in)`` to ``(B, dim_out)``."""
        out = torch.zeros(g.shape[0], self.dim_out, dtype=g.dtype, device=g.device)
        out.index_add_(1, self.bucket.to(g.device), g * self.sign.to(g))
        return out


PROJECTIONS = {"gaussian": RandomProjection, "count_sketch": CountSketch}
"""Random projections of gradients by name (the ``projection`` option)."""


# ------------------------------------------------------------ per-example grads
def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def per_example_grads(
    fn: Bound,
    params: Mapping[str, torch.Tensor],
    images: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(rows, G)`` chunk by chunk: ``G[b] = d fn(params, images[rows][b]) /
    d params`` flattened to ``(B, n_params)`` (float32), then ``transform``-ed (e.g. a
    :class:`RandomProjection`).

    Each image's gradient is that of its own score alone (the module is evaluated on
    that image as a batch of one, so batch-dependent layers do not mix images).
    """
    names = tuple(params)
    p = {k: v.detach() for k, v in params.items()}

    def single(pp: dict, x: torch.Tensor) -> torch.Tensor:
        return fn(pp, x[None])[0]

    per_ex = torch.func.vmap(torch.func.grad(single), in_dims=(None, 0))
    use_vmap = True
    for rows in _chunks(len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(device)
        g = None
        if use_vmap:
            try:
                gd = per_ex(p, x)
                g = torch.cat([gd[n].reshape(len(x), -1) for n in names], dim=1)
            except (RuntimeError, NotImplementedError):  # an op vmap cannot batch
                use_vmap = False
        if g is None:
            g = torch.stack([_loop_grad(fn, p, x[b : b + 1], names) for b in range(len(x))])
        g = g.detach()
        yield rows, (transform(g) if transform is not None else g)


def _loop_grad(fn: Bound, p: Mapping, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    leaves = {n: p[n].clone().requires_grad_(True) for n in names}
    with torch.enable_grad():
        out = fn(leaves, x).sum()
        grads = torch.autograd.grad(out, [leaves[n] for n in names], allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(leaves[n]) if g is None else g).reshape(-1)
            for n, g in zip(names, grads, strict=True)
        ]
    )


def stack_grads(
    fn: Bound,
    params: Mapping[str, torch.Tensor],
    images: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """All of :func:`per_example_grads` as one ``(N, D)`` tensor."""
    return torch.cat(
        [
            g
            for _, g in per_example_grads(
                fn, params, images, batch_size=batch_size, device=device, transform=transform
            )
        ]
    )
