"""tracin: the sum over checkpoints of learning rate x gradient dot products, by hand
and against captum's TracInCP called directly."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _influence_toys import CentreDetector, NetDetector, blobs, one_thread  # noqa: F401

import xeval
from xeval.adapters._torch import Checkpoint, load_checkpoint, save_checkpoint
from xeval.errors import InputError


@pytest.fixture(scope="module")
def net():
    train = blobs(10, seed=0)
    det = NetDetector(4, seed=1, lr=0.1).fit(train, epochs=12, every=4)
    assert len(det.checkpoints_) == 3
    return det, train, blobs(3, seed=1)


def _grads_at(det, state, images):
    module = copy.deepcopy(det.module)
    module.load_state_dict(state)
    params = list(module.parameters())
    out = []
    for x in images:
        s = module(torch.from_numpy(x[None]).double()).sum()
        out.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(s, params)]))
    return torch.stack(out).numpy()


def test_equals_sum_of_lr_times_hand_computed_gradient_dots(net):
    det, train, test = net
    got = xeval.influence(det, train, test, method="tracin")
    expected = sum(
        ck.lr * _grads_at(det, ck.state, test) @ _grads_at(det, ck.state, train).T
        for ck in det.checkpoints_
    )
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    # not the current parameters' grad_dot (the checkpoints are used)
    assert not np.allclose(got, 0.1 * 3 * xeval.influence(det, train, test, method="grad_dot"))
    si = xeval.self_influence(det, train, method="tracin", batch_size=4)
    expected_si = sum(
        ck.lr * (_grads_at(det, ck.state, train) ** 2).sum(1) for ck in det.checkpoints_
    )
    np.testing.assert_allclose(si, expected_si, rtol=1e-10)


def test_equals_captum_tracincp(net, tmp_path):
    from captum.influence import TracInCP
    from torch.utils.data import TensorDataset

    det, train, test = net
    paths = [
        save_checkpoint(tmp_path / f"c{k}.pt", state=ck.state, lr=ck.lr, epoch=ck.epoch)
        for k, ck in enumerate(det.checkpoints_)
    ]

    def load(model, path):  # weights_only, not captum's default torch.load
        ck = load_checkpoint(path)
        model.load_state_dict(ck.state)
        return ck.lr

    tc = TracInCP(
        copy.deepcopy(det.module),
        TensorDataset(torch.from_numpy(train).double(), torch.zeros(len(train))),
        paths,
        checkpoints_load_func=load,
        loss_fn=None,
        batch_size=4,
        sample_wise_grads_per_batch=False,
    )
    ref = tc.influence((torch.from_numpy(test).double(), torch.zeros(len(test)))).numpy()
    got = xeval.influence(det, train, test, method="tracin")
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(
        xeval.self_influence(det, train, method="tracin"), tc.self_influence().numpy(), rtol=1e-10
    )
    # the same from the files, and from (state, lr) pairs
    from_files = xeval.influence(det, train, test, method="tracin", checkpoints=paths)
    np.testing.assert_allclose(from_files, got, rtol=1e-12)
    pairs = [(ck.state, ck.lr) for ck in det.checkpoints_]
    np.testing.assert_allclose(
        xeval.influence(det, train, test, method="tracin", checkpoints=pairs), got, rtol=1e-12
    )


def test_learning_rates_weight_the_checkpoints(net):
    det, train, test = net
    one = [(ck.state, 1.0) for ck in det.checkpoints_[:1]]
    two = [(ck.state, 2.5) for ck in det.checkpoints_[:1]]
    a = xeval.influence(det, train, test, method="tracin", checkpoints=one)
    b = xeval.influence(det, train, test, method="tracin", checkpoints=two)
    np.testing.assert_allclose(b, 2.5 * a, rtol=1e-12)


def test_projection_is_seeded_and_unbiased_in_expectation(net):
    det, train, test = net
    exact = xeval.influence(det, train, test, method="tracin")
    a = xeval.influence(det, train, test, method="tracin", projection_dim=8, seed=1)
    b = xeval.influence(det, train, test, method="tracin", projection_dim=8, seed=1)
    np.testing.assert_array_equal(a, b)
    mean = np.mean(
        [
            xeval.influence(det, train, test, method="tracin", projection_dim=8, seed=s)
            for s in range(60)
        ],
        axis=0,
    )
    # E[<gR, hR>] = <g, h>: the mean over seeds approaches the exact value
    assert np.abs(mean - exact).max() < 0.35 * np.abs(exact).max()


def test_without_checkpoints_is_a_clear_error():
    det = CentreDetector(np.ones(4)).fit(blobs(5))
    with pytest.raises(InputError, match="'tracin' cannot run on detector 'centre'.*checkpoints"):
        xeval.influence(det, blobs(5), blobs(2), method="tracin")
    with pytest.raises(InputError, match="Methods that work with this detector:.*grad_dot"):
        xeval.self_influence(det, blobs(5), method="tracin")


@pytest.mark.parametrize(
    "checkpoints, match",
    [
        ("a.pt", "must be a list of checkpoints"),
        ([42], r"checkpoints\[0\] must be a Checkpoint, a file path"),
        ([({"centre": torch.zeros(4)}, 0.0)], "learning rate must be > 0"),
        (["/nonexistent/c.pt"], "does not exist"),
    ],
)
def test_bad_checkpoints(checkpoints, match):
    det = CentreDetector(np.ones(4)).fit(blobs(5))
    with pytest.raises(InputError, match=match):
        xeval.influence(det, blobs(5), blobs(2), method="tracin", checkpoints=checkpoints)


def test_checkpoint_of_another_model_is_a_clear_error():
    det = CentreDetector(np.ones(4)).fit(blobs(5))
    wrong = [Checkpoint(epoch=1, lr=0.1, state={"centre": torch.zeros(3, dtype=torch.float64)})]
    with pytest.raises(InputError, match="parameter 'centre' has shape"):
        xeval.influence(det, blobs(5), blobs(2), method="tracin", checkpoints=wrong)
    with pytest.raises(InputError, match="lacks parameter"):
        xeval.influence(
            det,
            blobs(5),
            blobs(2),
            method="tracin",
            checkpoints=[Checkpoint(epoch=1, lr=0.1, state={"other": torch.zeros(4)})],
        )
