"""Influence functions (Koh & Liang 2017; Cook & Weisberg 1982) on a detector's own
training objective.

Derivation (``n`` training images, gradients at the current parameters ``θ``)::

    L(θ)     = (1/n)     Σ_k ℓ_k(θ) + (l2/2)||θ||²          (training objective)
    L_{-j}(θ) = (1/(n-1)) Σ_{k≠j} ℓ_k(θ) + (l2/2)||θ||²       (image j removed)

One Newton step from ``θ`` on each, with the Hessian ``H = ∇²L(θ)`` (plus damping λ),
moves the parameters by ``-H⁻¹∇L`` and ``-H⁻¹∇L_{-j}``; their difference is the
predicted effect of removing ``j``::

    ∇L_{-j} - ∇L = (1/(n-1)) (n ḡ - g_j) - ḡ = (1/(n-1)) (ḡ - g_j)
    Δθ_j        = (1/(n-1)) H⁻¹ (g_j - ḡ)          g_j = ∇ℓ_j(θ), ḡ = mean_k g_k

and, to first order, the change of test image ``i``'s score ``s_i``::

    I[i, j] = s_i(θ_{-j}) - s_i(θ) ≈ ∇s_i · Δθ_j = (1/(n-1)) ∇s_iᵀ (H + λI)⁻¹ (g_j - ḡ)

**Sign: positive = training image j makes test image i look normal** (removing it
raises ``s_i``). The l2 term enters through ``H`` only (its gradient cancels in the
difference). The result does not assume ``θ`` is an exact minimiser (the mean gradient
``ḡ``, zero at a minimum without l2, is subtracted); for a quadratic objective it is the
exact leave-one-out change of the parameters (tested on a closed-form model).
``centre=False`` gives Koh & Liang's upweighting form instead,
``I[i, j] = (1/n) ∇s_iᵀ (H + λI)⁻¹ g_j`` (removing = upweighting by ``ε = -1/n``),
which differs from the centred one by a constant per test image (and the factor
``n/(n-1)``) — captum's ``NaiveInfluenceFunction`` is this form up to that scale.

Self-influence: ``I[j, j] = (1/(n-1)) ∇s_jᵀ (H + λI)⁻¹ (g_j - ḡ)``: high = removing
``j`` raises its own score the most (the model fits ``j`` because it was trained on it):
**high = suspicious**.

Solvers: ``exact`` (the full Hessian, eigendecomposed), ``cg`` (conjugate gradients on
Hessian-vector products, one solve per test image, or per training image for
self-influence), ``arnoldi`` (Schioppa et al. 2022: the inverse on the top-``top_k``
eigenspace found by ``arnoldi_dim`` Arnoldi iterations; gradients are projected to
``top_k`` numbers), ``auto`` (exact up to ``max_params`` parameters, else arnoldi).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from xeval.checks import check_bool, check_positive_int
from xeval.errors import InputError
from xeval.influence.base import GradientMethod, Problem
from xeval.influence.hessian import Objective, arnoldi, conjugate_gradients, exact_inverse
from xeval.influence.registry import INFLUENCE_METHODS

__all__ = ["InfluenceFunction", "SOLVERS"]

SOLVERS = ("auto", "exact", "cg", "arnoldi")


def _nonneg(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    if not np.isfinite(float(value)):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@INFLUENCE_METHODS.register
class InfluenceFunction(GradientMethod):
    """First-order leave-one-out effect ``(1/(n-1)) ∇s_iᵀ (H + λI)⁻¹ (g_j - ḡ)``
    (derivation in the module docstring).

    Parameters
    ----------
    solver:
        ``"auto"``, ``"exact"``, ``"cg"`` or ``"arnoldi"``.
    damping:
        λ added to the Hessian's diagonal (non-convex models need some).
    centre:
        True (default): subtract the mean training gradient (the Newton-step
        difference above); False: Koh & Liang's ``(1/n) ∇s_iᵀ (H + λI)⁻¹ g_j``.
    max_params:
        ``solver="auto"`` uses the exact Hessian up to this many parameters.
    arnoldi_dim, top_k:
        Arnoldi iterations and the number of top eigenpairs kept.
    hessian_subsample:
        Estimate the Hessian on this many training images (a seeded random subset,
        like captum's ``hessian_dataset``) to cut the cost of every Hessian-vector
        product; None: all of them. The gradients ``g_j`` always use every image.
    cg_tol, cg_max_iter:
        Relative residual at which CG stops, and its iteration cap (None: the
        number of parameters, at most 1000).
    layers, batch_size, seed:
        See :class:`~xeval.influence.base.GradientMethod` (``seed``: Arnoldi's start
        vector).
    """

    name = "influence_function"

    def __init__(
        self,
        *,
        solver: str = "auto",
        damping: float = 1e-3,
        centre: bool = True,
        max_params: int = 2000,
        arnoldi_dim: int = 40,
        top_k: int = 20,
        hessian_subsample: int | None = None,
        cg_tol: float = 1e-8,
        cg_max_iter: int | None = None,
        layers: list[str] | None = None,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(layers=layers, batch_size=batch_size, seed=seed)
        if solver not in SOLVERS:
            raise InputError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        self.solver = solver
        self.damping = _nonneg(damping, "damping")
        self.centre = check_bool(centre, "centre")
        self.max_params = check_positive_int(max_params, "max_params")
        self.arnoldi_dim = check_positive_int(arnoldi_dim, "arnoldi_dim")
        self.top_k = check_positive_int(top_k, "top_k")
        self.hessian_subsample = (
            None
            if hessian_subsample is None
            else check_positive_int(hessian_subsample, "hessian_subsample", minimum=2)
        )
        self.cg_tol = _nonneg(cg_tol, "cg_tol")
        self.cg_max_iter = (
            None if cg_max_iter is None else check_positive_int(cg_max_iter, "cg_max_iter")
        )

    # ---------------------------------------------------------------- internals
    def _setup(self, problem: Problem):
        n = problem.n_train
        if n < 2:
            raise InputError(f"influence_function needs at least 2 training images, got {n}")
        model = problem.model(self.layers)
        params = model.current()
        hess_images = problem.train
        if self.hessian_subsample is not None and self.hessian_subsample < n:
            rng = np.random.default_rng(self.seed)
            pick = np.sort(rng.choice(n, size=self.hessian_subsample, replace=False))
            hess_images = problem.train[pick]
        objective = Objective(model, params, hess_images, l2=problem.l2, batch_size=self.batch_size)
        solver = self.solver
        if solver == "auto":
            solver = "exact" if model.n_params <= self.max_params else "arnoldi"
        if solver == "exact" and model.n_params > 20_000:
            raise InputError(
                f"solver='exact' builds a {model.n_params} x {model.n_params} Hessian "
                "(over 20 000 parameters): use solver='cg' or 'arnoldi', or layers=[...]"
            )
        return model, params, objective, solver

    def _scale(self, n: int) -> float:
        return 1.0 / (n - 1) if self.centre else 1.0 / n

    def _inverse(self, objective: Objective, solver: str):
        """``(apply, proj)``: ``apply(rows) ≈ rows (H + λI)⁻¹`` in the space ``proj``
        maps gradients to (the Arnoldi eigenvectors' coordinates; None: parameters)."""
        if solver == "arnoldi":
            evals, vecs = arnoldi(
                objective,
                n_iter=self.arnoldi_dim,
                top_k=self.top_k,
                damping=self.damping,
                seed=self.seed,
            )
            return (lambda v: v / (evals + self.damping)), _Project(vecs)
        if solver == "exact":
            return exact_inverse(objective, damping=self.damping), None

        def cg(v: torch.Tensor) -> torch.Tensor:
            return conjugate_gradients(
                objective, v, damping=self.damping, tol=self.cg_tol, max_iter=self.cg_max_iter
            )

        return cg, None

    # ------------------------------------------------------------------ methods
    def influence(self, problem: Problem, test: np.ndarray) -> np.ndarray:
        model, params, objective, solver = self._setup(problem)
        n = problem.n_train
        apply, proj = self._inverse(objective, solver)
        u = apply(self.test_grads(model, params, test, proj))  # (H + λI)⁻¹ ∇s_i
        out = torch.empty(len(test), n, dtype=torch.float64)
        for rows, g in self.train_grads(model, params, problem.train, proj):
            out[:, rows] = u @ g.T
        if self.centre:
            out -= out.mean(dim=1, keepdim=True)  # u·ḡ = mean_j u·g_j
        return (out * self._scale(n)).numpy()

    def self_influence(self, problem: Problem) -> np.ndarray:
        model, params, objective, solver = self._setup(problem)
        n = problem.n_train
        same = model.loss is model.score
        apply, proj = self._inverse(objective, solver)
        w = None
        if self.centre:  # u_j·ḡ = s_jᵀ A ḡ = s_j·w with w = A ḡ (A symmetric): a first pass
            g_sum = sum(
                g.sum(dim=0) for _, g in self.train_grads(model, params, problem.train, proj)
            )
            w = apply((g_sum / n)[None])[0]
        out = torch.empty(n, dtype=torch.float64)
        for rows, g in self.train_grads(model, params, problem.train, proj):
            s = g if same else self.test_grads(model, params, problem.train[rows], proj)
            out[rows] = (apply(s) * g).sum(dim=1)
            if w is not None:
                out[rows] -= s @ w
        return (out * self._scale(n)).numpy()


class _Project:
    """``g -> g @ Vᵀ`` onto the rows of ``vecs`` (the Arnoldi eigenvectors)."""

    def __init__(self, vecs: torch.Tensor) -> None:
        self.vecs = vecs

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        return g.double().cpu() @ self.vecs.T
