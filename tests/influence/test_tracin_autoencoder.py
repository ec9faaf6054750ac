"""tracin and influence_function on the built-in ConvAutoencoder trained with
checkpoints: shapes, seeds, the checkpoints from memory and from files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _influence_toys import one_thread  # noqa: F401

import xeval
from xeval.adapters.autoencoder import ConvAutoencoder


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 0.8, size=(n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    train = _images(6, 0)
    kw = dict(input_size=16, epochs=3, width=4, bottleneck=2, downsample=1, augment=False)
    mem = ConvAutoencoder(checkpoints=3, **kw).fit([train])
    folder = tmp_path_factory.mktemp("ck")
    disk = ConvAutoencoder(checkpoints=3, checkpoint_dir=str(folder), **kw).fit([train])
    return mem, disk, train, _images(2, 1)


def test_tracin_from_memory_equals_from_files(trained):
    mem, disk, train, test = trained
    a = xeval.influence(mem, train, test, method="tracin")
    b = xeval.influence(disk, train, test, method="tracin")
    assert a.shape == (2, 6) and np.all(np.isfinite(a)) and np.ptp(a) > 0
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
    si = xeval.self_influence(mem, train, method="tracin")
    np.testing.assert_allclose(
        si, np.diag(xeval.influence(mem, train, train, method="tracin")), rtol=1e-5
    )
    assert np.all(si > 0)


def test_tracin_projection_is_seeded(trained):
    mem, _, train, test = trained
    a = xeval.influence(mem, train, test, method="tracin", projection_dim=32, seed=5)
    b = xeval.influence(mem, train, test, method="tracin", projection_dim=32, seed=5)
    np.testing.assert_array_equal(a, b)


def test_influence_function_arnoldi_is_seeded_and_self_is_the_diagonal(trained):
    mem, _, train, test = trained
    kw = dict(method="influence_function", solver="arnoldi", arnoldi_dim=8, top_k=4, damping=0.01)
    a = xeval.influence(mem, train, test, seed=1, **kw)
    b = xeval.influence(mem, train, test, seed=1, **kw)
    np.testing.assert_array_equal(a, b)
    si = xeval.self_influence(mem, train, seed=1, **kw)
    full = xeval.influence(mem, train, train, seed=1, **kw)
    np.testing.assert_allclose(si, np.diag(full), rtol=1e-6, atol=1e-12)


def test_influence_function_hessian_subsample(trained):
    mem, _, train, test = trained
    kw = dict(method="influence_function", solver="arnoldi", arnoldi_dim=6, top_k=3, damping=0.01)
    a = xeval.influence(mem, train, test, hessian_subsample=3, seed=0, **kw)
    b = xeval.influence(mem, train, test, hessian_subsample=3, seed=0, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 6) and np.all(np.isfinite(a))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "method, kw",
    [
        ("grad_dot", {}),
        ("tracin", {"projection_dim": 16}),
        ("knn", {}),
        ("influence_function", {"solver": "arnoldi", "arnoldi_dim": 6, "top_k": 3}),
        ("influence_function", {"solver": "cg", "damping": 1.0, "layers": ["decoder.8"]}),
        ("label_free", {"base": "grad_dot"}),
    ],
)
def test_cuda_equals_cpu(trained, method, kw):
    import copy

    mem, _, train, test = trained
    gpu = copy.deepcopy(mem)  # the same weights, on the GPU (checkpoints stay on the CPU)
    gpu.device, gpu._device = "cuda", torch.device("cuda")
    gpu.model_.to("cuda")
    cpu = xeval.influence(mem, train, test, method=method, **kw)
    got = xeval.influence(gpu, train, test, method=method, **kw)
    assert got.shape == cpu.shape and np.all(np.isfinite(got))
    for i in range(len(test)):  # float32 rounding differs between devices
        assert np.corrcoef(got[i], cpu[i])[0, 1] > 0.99
