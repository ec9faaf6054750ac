"""The Hessian of the training objective and three ways to apply its inverse.

Objective at parameters ``θ`` (flattened, the selected parameters only)::

    L(θ) = (1/n) Σ_j ℓ(x_j; θ) + (l2 / 2) ||θ||²

Hessian-vector products ``H v`` use double backward (Pearlmutter 1994): per chunk of
training images ``∇_θ [ (∇_θ Σ_chunk ℓ) · v ]``, several vectors at once through
``torch.autograd.grad(..., is_grads_batched=True)`` (a loop where vmap cannot batch).

Inverse-Hessian solvers (``damping`` λ is added to ``H``):

- :func:`exact_inverse`: the full ``P x P`` Hessian (``P`` HVPs), its eigendecomposition
  and ``(H + λI)^{-1}``; for small parameter counts.
- :func:`conjugate_gradients`: ``(H + λI) x = b`` by conjugate gradients on HVPs, many
  right-hand sides at once (Martens 2010; Koh & Liang 2017 §3); needs ``H + λI``
  positive definite.
- :func:`arnoldi`: the top eigenpairs of ``H`` from ``m`` Arnoldi iterations started
  at a seeded random vector (Schioppa et al. 2022, "Scaling up influence functions",
  Algorithm 1); ``(H + λI)^{-1}`` is approximated on the span of the top ``k``
  eigenvectors, and gradients are projected onto it (``P -> k`` numbers).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xeval.errors import InputError
from xeval.influence.gradients import Bound, DifferentiableModel

__all__ = ["Objective", "arnoldi", "conjugate_gradients", "exact_inverse"]


class Objective:
    """``L(θ) = mean_j ℓ(x_j; θ) + (l2/2)||θ||²`` at ``params`` with Hessian-vector
    products (float64 in and out)."""

    def __init__(
        self,
        model: DifferentiableModel,
        params: dict,
        train: np.ndarray,
        *,
        l2: float,
        batch_size: int,
    ) -> None:
        self.model = model
        self.loss: Bound = model.bound("loss")
        self.flat = model.flatten(params).detach()
        self.train = train
        self.l2 = float(l2)
        self.batch_size = int(batch_size)
        self.n_params = int(self.flat.numel())
        self._batched = True

    def value(self, flat: torch.Tensor) -> torch.Tensor:
        """``L`` at the flattened parameters ``flat`` (differentiable)."""
        n = len(self.train)
        total = 0.0
        for i in range(0, n, self.batch_size):
            x = torch.from_numpy(self.train[i : i + self.batch_size]).to(self.model.device)
            total = total + self.loss(self.model.unflatten(flat), x).sum()
        return total / n + 0.5 * self.l2 * (flat * flat).sum()

    vector_block = 16
    """At most this many vectors per batched double backward (memory: that many copies
    of the backward graph's activations)."""

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(P,)`` or ``(k, P)``."""
        if v.ndim == 2 and len(v) > self.vector_block:
            b = self.vector_block
            return torch.cat([self.hvp(v[i : i + b]) for i in range(0, len(v), b)])
        single = v.ndim == 1
        vv = (v[None] if single else v).to(device=self.flat.device, dtype=self.flat.dtype)
        n = len(self.train)
        out = torch.zeros(vv.shape, dtype=torch.float64)
        for i in range(0, n, self.batch_size):
            x = torch.from_numpy(self.train[i : i + self.batch_size]).to(self.model.device)
            theta = self.flat.clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self.loss(self.model.unflatten(theta), x).sum()
                (g,) = torch.autograd.grad(loss, theta, create_graph=True)
                out += self._second(g, theta, vv).double().cpu()
        out = out / n + self.l2 * vv.double().cpu()  # results on the CPU, float64
        return out[0] if single else out

    def _second(self, g: torch.Tensor, theta: torch.Tensor, vv: torch.Tensor) -> torch.Tensor:
        if not g.requires_grad:  # the loss is linear in θ
            return torch.zeros_like(vv)
        if self._batched and len(vv) > 1:
            try:
                (hv,) = torch.autograd.grad(
                    g, theta, grad_outputs=vv, retain_graph=True, is_grads_batched=True
                )
                return hv
            except (RuntimeError, NotImplementedError):  # an op vmap cannot batch
                self._batched = False
        rows = []
        for r in range(len(vv)):
            (hv,) = torch.autograd.grad(g, theta, grad_outputs=vv[r], retain_graph=True)
            rows.append(hv)
        return torch.stack(rows)

    def hessian(self, *, block: int = 64) -> torch.Tensor:
        """The full ``(P, P)`` Hessian, ``block`` HVPs at a time (symmetrised)."""
        p = self.n_params
        h = torch.empty(p, p, dtype=torch.float64)
        for i in range(0, p, block):
            e = torch.zeros(min(block, p - i), p, dtype=torch.float64)
            e[torch.arange(len(e)), torch.arange(i, i + len(e))] = 1.0
            h[i : i + len(e)] = self.hvp(e)
        return 0.5 * (h + h.T)


def _not_pd(min_eig: float, damping: float, solver: str) -> InputError:
    return InputError(
        f"influence_function (solver={solver!r}): the Hessian of the training objective "
        f"plus damping is not positive definite (smallest eigenvalue + damping = "
        f"{min_eig + damping:.3g} with damping={damping:g}); the parameters are not at a "
        "minimum of the objective (or the model is non-convex there). Raise damping above "
        f"{max(-min_eig, 0):.3g}, add an l2 term, or use solver='arnoldi' (top positive "
        "eigenspace only)"
    )


def exact_inverse(
    objective: Objective, *, damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (H + λI)^{-1} v`` (rows of ``v``) from the full Hessian's
    eigendecomposition; InputError when ``H + λI`` is not positive definite."""
    h = objective.hessian()
    evals, evecs = torch.linalg.eigh(h)
    scale = max(float(evals.abs().max()), 1e-300)
    if float(evals.min()) + damping <= 1e-12 * scale:
        raise _not_pd(float(evals.min()), damping, "exact")
    inv = (evecs / (evals + damping)) @ evecs.T

    def apply(v: torch.Tensor) -> torch.Tensor:
        return v.double() @ inv  # inv is symmetric

    return apply


def conjugate_gradients(
    objective: Objective,
    b: torch.Tensor,
    *,
    damping: float,
    tol: float = 1e-8,
    max_iter: int | None = None,
) -> torch.Tensor:
    """Solve ``(H + λI) x_r = b_r`` for every row ``b_r`` of ``b`` (``(k, P)``), all rows
    in one batched HVP per iteration; stops a row when ``||r|| <= tol ||b_r||``.

    Raises InputError on non-positive curvature (``p·(H + λI)p <= 0``) or when a row has
    not converged after ``max_iter`` iterations (default ``P``, CG's exact-arithmetic
    bound, at most 1000)."""
    b = b.double()
    k, p = b.shape
    max_iter = min(p, 1000) if max_iter is None else int(max_iter)
    x = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rs = (r * r).sum(1)
    bnorm = b.norm(dim=1)
    active = bnorm > 0
    for _ in range(max_iter):
        active = active & (rs.sqrt() > tol * bnorm)
        if not bool(active.any()):
            return x
        idx = torch.nonzero(active)[:, 0]
        ad = objective.hvp(d[idx]) + damping * d[idx]
        dad = (d[idx] * ad).sum(1)
        if bool((dad <= 0).any()):
            raise _not_pd(float((dad / (d[idx] * d[idx]).sum(1)).min()) - damping, damping, "cg")
        alpha = rs[idx] / dad
        x[idx] += alpha[:, None] * d[idx]
        r[idx] -= alpha[:, None] * ad
        rs_new = (r[idx] * r[idx]).sum(1)
        d[idx] = r[idx] + (rs_new / rs[idx])[:, None] * d[idx]
        rs[idx] = rs_new
    active = active & (rs.sqrt() > tol * bnorm)
    if bool(active.any()):
        worst = float((rs.sqrt() / bnorm.clamp_min(1e-300))[active].max())
        raise InputError(
            f"influence_function (solver='cg'): conjugate gradients did not converge in "
            f"{max_iter} iterations (relative residual {worst:.3g} > tol={tol:g}); raise "
            "cg_max_iter or damping, or use solver='arnoldi'"
        )
    return x


def arnoldi(
    objective: Objective,
    *,
    n_iter: int,
    top_k: int,
    damping: float,
    seed: int,
    tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenpairs of ``H`` by ``n_iter`` Arnoldi iterations (full
    re-orthogonalisation) from a seeded Gaussian start vector.

    When the Krylov space closes early (an invariant subspace, e.g. a repeated
    eigenvalue), the iteration restarts from a new random vector orthogonal to it, so
    repeated eigenvalues are found with their multiplicity.

    Returns ``(eigenvalues (k,), eigenvectors (k, P))``: the at most ``top_k`` largest
    Ritz values with ``value + damping > 0``, largest first, and their unit Ritz
    vectors (rows). Memory: ``n_iter x P`` numbers.
    """
    p = objective.n_params
    m = min(int(n_iter), p)
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(p, generator=gen, dtype=torch.float64)
    basis = torch.empty(m + 1, p, dtype=torch.float64)
    basis[0] = v / v.norm()
    h = torch.zeros(m + 1, m, dtype=torch.float64)
    size = m
    for i in range(m):
        w = objective.hvp(basis[i])
        for _ in range(2):  # classical Gram–Schmidt, twice ("twice is enough")
            c = basis[: i + 1] @ w
            w = w - c @ basis[: i + 1]
            h[: i + 1, i] += c
        h[i + 1, i] = w.norm()
        if float(h[i + 1, i]) <= tol * max(float(h[: i + 1, i].abs().max()), 1e-300):
            # an invariant subspace (e.g. a repeated eigenvalue): restart from a new
            # seeded random vector orthogonal to the basis (h[i+1, i] = 0 keeps the
            # projected matrix exact); stop when the whole space is spanned
            h[i + 1, i] = 0.0
            if i + 1 >= p:
                size = i + 1
                break
            w = torch.randn(p, generator=gen, dtype=torch.float64)
            for _ in range(2):
                w = w - (basis[: i + 1] @ w) @ basis[: i + 1]
            basis[i + 1] = w / w.norm()
            continue
        basis[i + 1] = w / h[i + 1, i]
    small = h[:size, :size]
    evals, evecs = torch.linalg.eigh(0.5 * (small + small.T))  # H symmetric: tridiagonal
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order], evecs[:, order]
    keep = (evals + damping > 0).nonzero()[:, 0][: int(top_k)]
    if len(keep) == 0:
        raise InputError(
            "influence_function (solver='arnoldi'): the Hessian has no eigenvalue with "
            f"value + damping > 0 among {size} Ritz values (largest "
            f"{float(evals[0]):.3g}); raise damping or add an l2 term"
        )
    vecs = evecs[:, keep].T @ basis[:size]
    return evals[keep], vecs / vecs.norm(dim=1, keepdim=True)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` (for tests and benchmarks)."""
    return float((a - b).norm() / max(float(b.norm()), 1e-300))
