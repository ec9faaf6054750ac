"""influence_function: against exact leave-one-out retraining on a closed-form model,
across its three solvers, and against captum's NaiveInfluenceFunction /
ArnoldiInfluenceFunction called directly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _influence_toys import CentreDetector, NetDetector, blobs, one_thread  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

import xeval
from xeval.adapters._torch import load_checkpoint, save_checkpoint
from xeval.errors import InputError
from xeval.influence.base import Problem
from xeval.influence.hessian import Objective, arnoldi

SOLVERS = ["exact", "cg", "arnoldi"]


def _centre_case(n=20, d=6, l2=0.3, seed=0):
    w = np.random.default_rng(seed).uniform(0.5, 2.0, d)
    train, test = blobs(n, d, seed=seed), blobs(5, d, seed=seed + 100)
    det = CentreDetector(w, l2=l2).fit(train)
    c = det.solve(train, w, l2)
    loo_c = np.stack([det.solve(np.delete(train, j, 0), w, l2) for j in range(n)])
    return det, train, test, w, c, loo_c


def _loo_scores(det, test, c, loo_c):
    """Exact leave-one-out retraining: retrained - original score, (n_test, n_train)."""
    s0 = det.score_with(test, c)
    return np.stack([det.score_with(test, cj) - s0 for cj in loo_c], axis=1)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("l2", [0.0, 0.3, 2.0])
def test_spearman_with_exact_leave_one_out_and_sign(solver, l2):
    det, train, test, w, c, loo_c = _centre_case(l2=l2)
    loo = _loo_scores(det, test, c, loo_c)
    got = xeval.influence(
        det, train, test, method="influence_function", l2=l2, solver=solver, damping=0.0
    )
    for i in range(len(test)):
        assert spearmanr(got[i], loo[i]).statistic >= 0.98
    big = np.abs(loo) > 0.05 * np.abs(loo).max()  # sign: positive where removal raises
    assert big.sum() > 20
    np.testing.assert_array_equal(np.sign(got[big]), np.sign(loo[big]))


@pytest.mark.parametrize("solver", SOLVERS)
def test_first_order_term_equals_exact_parameter_change(solver):
    """On a quadratic objective the centred Newton step is the exact leave-one-out
    parameter change: I[i, j] = ∇s_i · (c_{-j} - c) to rounding."""
    det, train, test, w, c, loo_c = _centre_case(l2=0.7)
    got = xeval.influence(
        det, train, test, method="influence_function", l2=0.7, solver=solver, damping=0.0
    )
    x = test.reshape(len(test), -1).astype(np.float64)
    grad_s = -2 * w * (x - c)  # ∇_c Σ w (x - c)²
    np.testing.assert_allclose(got, grad_s @ (loo_c - c).T, rtol=1e-6, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 9),
    l2=st.floats(0.0, 3.0),
    seed=st.integers(0, 10_000),
)
def test_first_order_term_property(n, l2, seed):
    det, train, test, w, c, loo_c = _centre_case(n=n, d=3, l2=l2, seed=seed)
    got = xeval.influence(det, train, test, method="influence_function", l2=l2, damping=0.0)
    grad_s = -2 * w * (test.reshape(len(test), -1).astype(np.float64) - c)
    np.testing.assert_allclose(got, grad_s @ (loo_c - c).T, rtol=1e-6, atol=1e-10)
    # each row of the centred form sums to zero (Σ_j (g_j - ḡ) = 0)
    np.testing.assert_allclose(got.sum(axis=1), 0, atol=1e-10)


def test_uncentred_form_is_koh_and_liang():
    det, train, test, w, c, _ = _centre_case(l2=0.3)
    n = len(train)
    got = xeval.influence(
        det, train, test, method="influence_function", l2=0.3, damping=0.05, centre=False
    )
    xt = train.reshape(n, -1).astype(np.float64)
    g = -2 * w * (xt - c)
    h = np.diag(2 * w + 0.3 + 0.05)
    s = -2 * w * (test.reshape(len(test), -1).astype(np.float64) - c)
    np.testing.assert_allclose(got, s @ np.linalg.inv(h) @ g.T / n, rtol=1e-10)


def test_self_influence_ranks_a_planted_outlier_first_and_is_the_diagonal():
    w = np.ones(4)
    train = blobs(15, 4, seed=3)
    train[7] += 1.5  # planted anomaly
    det = CentreDetector(w, l2=0.1).fit(train)
    for solver in SOLVERS:
        si = xeval.self_influence(det, train, method="influence_function", l2=0.1, solver=solver)
        full = xeval.influence(
            det, train, train, method="influence_function", l2=0.1, solver=solver
        )
        np.testing.assert_allclose(si, np.diag(full), rtol=1e-8, atol=1e-14)
        assert int(np.argmax(si)) == 7  # high = suspicious


# ------------------------------------------------------------------- a small net
@pytest.fixture(scope="module")
def net():
    train = blobs(10, seed=0)
    det = NetDetector(4, seed=1).fit(train, epochs=30, every=10)
    return det, train, blobs(3, seed=1)


def test_hessian_equals_autograd_functional_hessian(net):
    det, train, _ = net
    model = Problem(det, train).model()
    obj = Objective(model, model.current(), train, l2=0.2, batch_size=3)
    ref = torch.autograd.functional.hessian(obj.value, model.flatten(model.current()))
    np.testing.assert_allclose(obj.hessian().numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_exact_cg_and_arnoldi_agree(net):
    det, train, test = net
    kw = dict(method="influence_function", l2=0.05, damping=0.05)
    exact = xeval.influence(det, train, test, solver="exact", **kw)
    cg = xeval.influence(det, train, test, solver="cg", **kw)
    np.testing.assert_allclose(cg, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    full = xeval.influence(det, train, test, solver="arnoldi", arnoldi_dim=51, top_k=51, **kw)
    np.testing.assert_allclose(full, exact, rtol=1e-6, atol=1e-8 * np.abs(exact).max())
    top = xeval.influence(det, train, test, solver="arnoldi", arnoldi_dim=30, top_k=10, **kw)
    for i in range(len(test)):  # the top-10 eigenspace: an approximation, correlated
        assert np.corrcoef(top[i], exact[i])[0, 1] > 0.9


def test_arnoldi_eigenpairs_are_the_top_of_the_spectrum(net):
    det, train, _ = net
    model = Problem(det, train).model()
    obj = Objective(model, model.current(), train, l2=0.0, batch_size=4)
    evals, vecs = arnoldi(obj, n_iter=40, top_k=5, damping=0.0, seed=0)
    ref = torch.linalg.eigvalsh(obj.hessian()).flip(0)[:5]
    np.testing.assert_allclose(evals.numpy(), ref.numpy(), rtol=1e-6)
    resid = obj.hvp(vecs) - evals[:, None] * vecs
    assert float(resid.norm(dim=1).max()) < 1e-5 * float(evals[0])
    evals2, vecs2 = arnoldi(obj, n_iter=40, top_k=5, damping=0.0, seed=0)
    np.testing.assert_array_equal(vecs.numpy(), vecs2.numpy())  # seeded


def _captum_setup(det, train, tmp_path):
    from torch.utils.data import TensorDataset

    path = save_checkpoint(tmp_path / "c.pt", state=det.module.state_dict(), lr=1.0, epoch=0)

    def load(model, p):
        ck = load_checkpoint(p)
        model.load_state_dict(ck.state)
        return ck.lr

    class Identity(torch.nn.Module):  # the model's output is already the loss
        reduction = "none"

        def forward(self, out, y):
            return out

    ds = TensorDataset(torch.from_numpy(train).double(), torch.zeros(len(train)))
    return dict(
        model=copy.deepcopy(det.module),
        train_dataset=ds,
        checkpoint=path,
        checkpoints_load_func=load,
        loss_fn=Identity(),
        batch_size=4,
    )


@pytest.mark.parametrize("solver", SOLVERS)
def test_equals_captum_naive_influence_function(net, tmp_path, solver):
    """captum sums the per-example Hessians (H_sum = n H) and adds hessian_reg r:
    ∇sᵀ (n H + r)⁻¹ g = (1/n) ∇sᵀ (H + r/n)⁻¹ g, our uncentred form with damping r/n."""
    from captum.influence import NaiveInfluenceFunction

    det, train, test = net
    n, r = len(train), 1.0
    nf = NaiveInfluenceFunction(
        **_captum_setup(det, train, tmp_path),
        hessian_reg=r,
        projection_dim=51,
        hessian_inverse_tol=-1e9,
    )
    ref = nf.influence((torch.from_numpy(test).double(), torch.zeros(len(test)))).numpy()
    kw = dict(method="influence_function", damping=r / n, centre=False, solver=solver)
    got = xeval.influence(det, train, test, arnoldi_dim=51, top_k=51, **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    si = xeval.self_influence(det, train, arnoldi_dim=51, top_k=51, **kw)
    np.testing.assert_allclose(si, nf.self_influence().numpy(), rtol=1e-6)


def test_hessian_subsample_equals_captum_hessian_dataset(net, tmp_path):
    """captum with hessian_dataset = m images: (1/m) ∇sᵀ (H_m + r/m)⁻¹ g; ours with
    hessian_subsample=m: (1/n) ∇sᵀ (H_m + λ)⁻¹ g on the same seeded subset."""
    from captum.influence import NaiveInfluenceFunction
    from torch.utils.data import TensorDataset

    det, train, test = net
    n, m, r = len(train), 6, 0.6
    pick = np.sort(np.random.default_rng(4).choice(n, size=m, replace=False))
    sub = TensorDataset(torch.from_numpy(train[pick]).double(), torch.zeros(m))
    nf = NaiveInfluenceFunction(
        **_captum_setup(det, train, tmp_path),
        hessian_dataset=sub,
        hessian_reg=r,
        projection_dim=51,
        hessian_inverse_tol=-1e9,
    )
    ref = nf.influence((torch.from_numpy(test).double(), torch.zeros(len(test)))).numpy()
    got = xeval.influence(
        det,
        train,
        test,
        method="influence_function",
        damping=r / m,
        centre=False,
        solver="exact",
        hessian_subsample=m,
        seed=4,
    )
    np.testing.assert_allclose(got * n / m, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())


def test_arnoldi_correlates_with_captum_arnoldi(net, tmp_path):
    from captum.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction

    det, train, test = net
    n, r = len(train), 1.0
    af = ArnoldiInfluenceFunction(
        **_captum_setup(det, train, tmp_path),
        hessian_reg=r,
        projection_dim=10,
        arnoldi_dim=30,
        seed=0,
    )
    ref = af.influence((torch.from_numpy(test).double(), torch.zeros(len(test)))).numpy()
    got = xeval.influence(
        det,
        train,
        test,
        method="influence_function",
        damping=r / n,
        centre=False,
        solver="arnoldi",
        arnoldi_dim=30,
        top_k=10,
    )
    for i in range(len(test)):
        assert np.corrcoef(got[i], ref[i])[0, 1] > 0.95


# ------------------------------------------------------------------------ errors
def test_indefinite_hessian_is_a_clear_error(net):
    det, train, test = net
    with pytest.raises(InputError, match="not positive definite.*Raise damping"):
        xeval.influence(det, train, test, method="influence_function", solver="exact", damping=0)
    with pytest.raises(InputError, match="not positive definite"):
        xeval.influence(det, train, test, method="influence_function", solver="cg", damping=0)


def test_cg_that_does_not_converge_says_so(net):
    det, train, test = net
    with pytest.raises(InputError, match="did not converge in 1 iterations"):
        xeval.influence(
            det,
            train,
            test,
            method="influence_function",
            solver="cg",
            damping=0.1,
            cg_max_iter=1,
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"solver": "lissa"}, "solver must be one of"),
        ({"damping": -1.0}, "damping must be a finite number >= 0"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"projection_dim": 8}, "unknown option"),
    ],
)
def test_bad_options(net, kwargs, match):
    det, train, test = net
    with pytest.raises(InputError, match=match):
        xeval.influence(det, train, test, method="influence_function", **kwargs)


def test_needs_two_training_images(net):
    det, train, test = net
    with pytest.raises(InputError, match="at least 2 training images"):
        xeval.influence(det, train[:1], test, method="influence_function")


@pytest.mark.parametrize("solver", SOLVERS)
def test_scaling_the_training_loss_changes_nothing_without_l2(solver):
    """Objective mean 2ℓ: H and g double, (H)⁻¹g does not change (the loss-is-not-the-
    score path of self-influence included)."""
    det, train, test, *_ = _centre_case(l2=0.0)
    kw = dict(method="influence_function", solver=solver, damping=0.0)
    a = xeval.influence(det, train, test, **kw)
    b = xeval.influence(det, train, test, loss=lambda m, x: 2 * m(x), **kw)
    np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-14)
    sa = xeval.self_influence(det, train, **kw)
    sb = xeval.self_influence(det, train, loss=lambda m, x: 2 * m(x), **kw)
    np.testing.assert_allclose(sb, sa, rtol=1e-8, atol=1e-14)
