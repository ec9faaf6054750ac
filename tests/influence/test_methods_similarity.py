"""grad_dot / grad_cos / knn / representation against hand computations, scikit-learn
and captum; seeds and projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _influence_toys import NetDetector, blobs, one_thread  # noqa: F401
from scipy.stats import spearmanr
from sklearn.neighbors import NearestNeighbors

import xeval
from xeval.errors import InputError
from xeval.influence.gradients import RandomProjection


@pytest.fixture(scope="module")
def net():
    train = blobs(10, seed=0)
    det = NetDetector(4, seed=1).fit(train, epochs=10, every=5)
    return det, train, blobs(3, seed=1)


def _hand_grads(det, images):
    """One torch.autograd.grad call per image, flattened over module.parameters()."""
    params = list(det.module.parameters())
    out = []
    for x in images:
        s = det.torch_score()(torch.from_numpy(x[None])).sum()
        out.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(s, params)]))
    return torch.stack(out).double().numpy()


def test_grad_dot_equals_hand_computed_dot_products(net):
    det, train, test = net
    got = xeval.influence(det, train, test, method="grad_dot")
    expected = _hand_grads(det, test) @ _hand_grads(det, train).T
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)
    assert np.abs(got).max() > 0  # not trivially zero


def test_grad_cos_equals_hand_computed_cosines(net):
    det, train, test = net
    got = xeval.influence(det, train, test, method="grad_cos")
    a, b = _hand_grads(det, test), _hand_grads(det, train)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(got, a @ b.T, rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(got) <= 1 + 1e-12)


def test_grad_dot_self_influence_is_squared_gradient_norm(net):
    det, train, _ = net
    got = xeval.self_influence(det, train, method="grad_dot", batch_size=3)
    g = _hand_grads(det, train)
    np.testing.assert_allclose(got, (g * g).sum(axis=1), rtol=1e-10)
    full = xeval.influence(det, train, train, method="grad_dot")
    np.testing.assert_allclose(got, np.diag(full), rtol=1e-10)


def test_grad_dot_with_a_custom_loss_uses_it_for_training_images_only(net):
    det, train, test = net

    def loss(module, x):  # a different per-example training loss
        return module(x.double()) ** 2

    got = xeval.influence(det, train, test, method="grad_dot", loss=loss)
    params = list(det.module.parameters())
    gl = []
    for x in train:
        s = loss(det.module, torch.from_numpy(x[None])).sum()
        gl.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(s, params)]))
    expected = _hand_grads(det, test) @ torch.stack(gl).double().numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_layers_restrict_the_parameters(net):
    det, train, test = net
    got = xeval.influence(det, train, test, method="grad_dot", layers=["encoder.2"])
    params = [det.module.encoder[2].weight, det.module.encoder[2].bias]

    def grads(images):
        out = []
        for x in images:
            s = det.torch_score()(torch.from_numpy(x[None])).sum()
            out.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(s, params)]))
        return torch.stack(out).numpy()

    np.testing.assert_allclose(got, grads(test) @ grads(train).T, rtol=1e-10, atol=1e-14)


def test_batch_size_does_not_change_the_result(net):
    det, train, test = net
    a = xeval.influence(det, train, test, method="grad_dot", batch_size=1)
    b = xeval.influence(det, train, test, method="grad_dot", batch_size=7)
    np.testing.assert_allclose(a, b, rtol=1e-12)


# ----------------------------------------------------------------- projections
def test_projection_is_seeded_and_unbiased(net):
    det, train, test = net
    a = xeval.influence(det, train, test, method="grad_dot", projection_dim=16, seed=3)
    b = xeval.influence(det, train, test, method="grad_dot", projection_dim=16, seed=3)
    c = xeval.influence(det, train, test, method="grad_dot", projection_dim=16, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    exact = xeval.influence(det, train, test, method="grad_dot")
    big = xeval.influence(det, train, test, method="grad_dot", projection_dim=4000, seed=0)
    for i in range(len(test)):  # JL: a wide projection keeps the order
        assert spearmanr(big[i], exact[i]).statistic > 0.9


def test_random_projection_blocks_do_not_change_the_matrix():
    g = torch.randn(5, 1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    cached = RandomProjection(1000, 7, seed=2, block=100)
    streamed = RandomProjection(1000, 7, seed=2, block=100, cache_bytes=0)
    assert cached._cache is not None and streamed._cache is None
    np.testing.assert_allclose(cached(g).numpy(), streamed(g).numpy(), rtol=1e-12)
    r = torch.cat(list(cached._blocks()))
    np.testing.assert_allclose(cached(g).numpy(), (g @ r.double()).numpy(), rtol=1e-12)
    # entries N(0, 1/k): the empirical variance is near 1/7
    big = torch.cat(list(RandomProjection(20000, 7, seed=0)._blocks()))
    assert abs(float(big.var()) * 7 - 1) < 0.05


# ---------------------------------------------------------------- feature space
def _features(det, images):
    with torch.no_grad():
        return det.encoder()(torch.from_numpy(images)).numpy()


def test_knn_matches_sklearn_nearest_neighbors(net):
    det, train, test = net
    got = xeval.influence(det, train, test, method="knn")
    f_tr, f_te = _features(det, train), _features(det, test)
    nn_ = NearestNeighbors(n_neighbors=len(train)).fit(f_tr)
    dist, idx = nn_.kneighbors(f_te)
    for i in range(len(test)):
        np.testing.assert_allclose(-got[i, idx[i]], dist[i], rtol=1e-10)
        assert list(np.argsort(-got[i], kind="stable")) == list(idx[i])


@pytest.mark.parametrize("k", [1, 3])
def test_knn_self_influence_is_the_leave_one_out_neighbour_distance(net, k):
    det, train, _ = net
    got = xeval.self_influence(det, train, method="knn", k=k)
    dist, _ = NearestNeighbors(n_neighbors=k).fit(_features(det, train)).kneighbors()
    np.testing.assert_allclose(got, dist.mean(axis=1), rtol=1e-10)


def test_knn_on_pixels_and_duplicates():
    det = NetDetector(4)
    train = blobs(6, seed=2)
    train[3] = train[1]  # a duplicate: its leave-one-out distance is 0
    got = xeval.self_influence(det, train, method="knn", features="pixels")
    dist, _ = NearestNeighbors(n_neighbors=1).fit(train.reshape(6, -1)).kneighbors()
    np.testing.assert_allclose(got, dist[:, 0], rtol=1e-10, atol=1e-12)
    assert got[1] == 0 and got[3] == 0


def test_representation_cosine_and_dot(net):
    det, train, test = net
    f_tr, f_te = _features(det, train).astype(float), _features(det, test).astype(float)
    dot = xeval.influence(det, train, test, method="representation", similarity="dot")
    np.testing.assert_allclose(dot, f_te @ f_tr.T, rtol=1e-10)
    cos = xeval.influence(det, train, test, method="representation")
    a = f_te / np.linalg.norm(f_te, axis=1, keepdims=True)
    b = f_tr / np.linalg.norm(f_tr, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, a @ b.T, rtol=1e-10)
    si = xeval.self_influence(det, train, method="representation", similarity="dot")
    np.testing.assert_allclose(si, (f_tr**2).sum(axis=1), rtol=1e-10)


def test_representation_top_k_equals_captum_similarity_influence(net, tmp_path):
    from captum.influence import SimilarityInfluence

    det, train, test = net
    got = xeval.influence(det, train, test, method="representation")
    ds = torch.from_numpy(train.reshape(len(train), -1)).double()  # a tensor is a Dataset
    model = det.module.encoder
    # two layers: with one, captum 0.9 wraps LayerActivation's list in another list;
    # batch_size divides n_train: a shorter last batch breaks its top-k
    sim = SimilarityInfluence(
        model, ["0", "2"], ds, str(tmp_path), batch_size=5, similarity_direction="max"
    )
    res = sim.influence(torch.from_numpy(test.reshape(len(test), -1)).double(), top_k=4)
    idx, scores = res["2"]
    np.testing.assert_array_equal(idx.numpy(), np.argsort(-got, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(scores.numpy(), -np.sort(-got, axis=1)[:, :4], rtol=1e-6)


def test_count_sketch_equals_its_dense_matrix_and_is_unbiased():
    from xeval.influence.gradients import CountSketch

    g = torch.randn(4, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cs = CountSketch(300, 20, seed=3)
    dense = torch.zeros(300, 20, dtype=torch.float64)  # one ±1 per row
    dense[torch.arange(300), cs.bucket] = cs.sign.double()
    np.testing.assert_allclose(cs(g).numpy(), (g @ dense).numpy(), rtol=1e-12)
    assert set(np.unique(np.abs(dense.numpy()).sum(axis=1))) == {1.0}
    # E[<Sg, Sh>] = <g, h>: the mean over 400 seeds is near the exact products
    exact = (g @ g.T).numpy()
    mean = np.mean(
        [
            (CountSketch(300, 20, seed=s)(g) @ CountSketch(300, 20, seed=s)(g).T).numpy()
            for s in range(400)
        ],
        axis=0,
    )
    assert np.abs(mean - exact).max() < 0.1 * np.abs(exact).max()


def test_count_sketch_through_the_api(net):
    det, train, test = net
    a = xeval.influence(
        det, train, test, method="tracin", projection_dim=32, projection="count_sketch", seed=2
    )
    b = xeval.influence(
        det, train, test, method="tracin", projection_dim=32, projection="count_sketch", seed=2
    )
    np.testing.assert_array_equal(a, b)
    exact = xeval.influence(det, train, test, method="tracin")
    for i in range(len(test)):  # 32 buckets for 51 parameters: the order survives
        assert spearmanr(a[i], exact[i]).statistic > 0.5
    with pytest.raises(InputError, match="projection must be one of"):
        xeval.influence(det, train, test, method="grad_dot", projection_dim=8, projection="srht")
