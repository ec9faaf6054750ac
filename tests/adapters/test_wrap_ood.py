"""OOD adapters on a tiny classifier: formulas against hand computation in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, softmax
from torch import nn

from xeval.adapters.ood import (
    EnergyDetector,
    MahalanobisDetector,
    MSPDetector,
    ODINDetector,
    sign_ge,
)
from xeval.adapters.wrap import wrap
from xeval.errors import InputError

K, C, S = 3, 3, 4  # classes, channels, image side
D = C * S * S


def prototypes(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((K, D))
    p -= p.mean(axis=1, keepdims=True)
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


def linear_classifier() -> nn.Module:
    torch.manual_seed(0)
    lin = nn.Linear(D, K)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(prototypes()) * 8)
        lin.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
    return nn.Sequential(nn.Flatten(), lin)


def mlp_classifier() -> nn.Module:
    torch.manual_seed(1)
    first = nn.Linear(D, 12)
    head = nn.Linear(12, K)
    with torch.no_grad():
        first.weight.mul_(3)
    return nn.Sequential(nn.Flatten(), first, nn.ReLU(), head)


def class_images(n: int, *, seed: int, anomalous: bool = False):
    """In-distribution: 0.5 + 0.3 * prototype of a class + noise; anomalous: no pattern."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    x = 0.5 + 0.02 * rng.standard_normal((n, D))
    if not anomalous:
        x += 0.3 * prototypes()[y]
    return x.reshape(n, C, S, S).astype(np.float32), y


def np_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    lin = model[1]
    w, b = lin.weight.detach().numpy().astype(np.float64), lin.bias.detach().numpy()
    return x.reshape(len(x), -1).astype(np.float64) @ w.T + b


def test_msp_and_energy_match_hand_computation():
    model = linear_classifier()
    x, _ = class_images(6, seed=3)
    z = np_logits(model, x)
    for t in (1.0, 2.5):
        msp = wrap(model, method="msp", temperature=t, input_size=S)
        assert isinstance(msp, MSPDetector)
        np.testing.assert_allclose(msp.score(x), -softmax(z / t, axis=1).max(axis=1), rtol=1e-5)
        en = wrap(model, method="energy", temperature=t, input_size=S)
        assert isinstance(en, EnergyDetector)
        np.testing.assert_allclose(en.score(x), -t * logsumexp(z / t, axis=1), rtol=1e-5)


@pytest.mark.parametrize("method", ["msp", "energy", "odin", "mahalanobis"])
def test_direction_shapes_and_torch_score(method):
    model = mlp_classifier() if method == "mahalanobis" else linear_classifier()
    kw = {"temperature": 10.0, "epsilon": 0.002} if method == "odin" else {}
    det = wrap(model, method=method, input_size=S, batch_size=5, **kw)
    train, y = class_images(120, seed=0)
    det.fit([(train[:60], y[:60]), (train[60:], y[60:])])
    normal, _ = class_images(10, seed=1)
    anomal, _ = class_images(10, seed=2, anomalous=True)
    s, m = det.predict(normal)
    assert s.shape == (10,) and s.dtype == np.float32 and m.shape == (10, 0, 0)
    assert det.score(anomal).min() > s.max()
    assert det.has_map is False
    with pytest.raises(InputError, match=r"image scores only.*gradient attributions"):
        det.anomaly_map(normal)
    fn = det.torch_score()
    xt = torch.from_numpy(anomal).requires_grad_(True)
    out = fn(xt)
    np.testing.assert_allclose(out.detach().numpy(), det.score(anomal), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert float(xt.grad.abs().sum()) > 0
    assert det.torch_module() is model
    assert det.config()["method"] == method


def test_odin_perturbation_matches_hand_computation_and_raises_confidence():
    model = linear_classifier()
    t, eps = 5.0, 0.01
    det = ODINDetector(model, temperature=t, epsilon=eps, input_size=S)
    x, _ = class_images(6, seed=4)
    w = model[1].weight.detach().numpy().astype(np.float64)
    z = np_logits(model, x)
    p = softmax(z / t, axis=1)
    onehot = np.eye(K)[z.argmax(axis=1)]
    grad = ((onehot - p) @ w) / t  # d/dx log softmax_yhat(z / T)
    step = np.where(grad >= 0, 1.0, -1.0).reshape(x.shape)
    x_tilde = x + eps * step
    z_t = np_logits(model, x_tilde)
    expected = -softmax(z_t / t, axis=1).max(axis=1)
    np.testing.assert_allclose(det.score(x), expected, rtol=1e-5)
    np.testing.assert_allclose(
        det.perturb(torch.from_numpy(x)).numpy(), x_tilde, rtol=1e-6, atol=1e-7
    )
    # the step raises the max softmax: the ODIN score falls below the same-T MSP score
    msp_t = MSPDetector(model, temperature=t, input_size=S).score(x)
    assert np.all(det.score(x) < msp_t)
    # eps = 0 reduces to temperature-scaled MSP
    np.testing.assert_allclose(
        ODINDetector(model, temperature=t, epsilon=0.0, input_size=S).score(x), msp_t, rtol=1e-6
    )
    assert torch.equal(sign_ge(torch.tensor([-1.0, 0.0, 2.0])), torch.tensor([-1.0, 1.0, 1.0]))


def np_mahalanobis(feats_train, y, feats_test):
    classes = np.unique(y)
    means = np.stack([feats_train[y == c].mean(axis=0) for c in classes])
    centred = feats_train - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / len(feats_train)
    prec = np.linalg.pinv(cov)
    diff = feats_test[:, None, :] - means[None]
    d = np.einsum("bkd,de,bke->bk", diff, prec, diff)
    return d, means, prec


def np_hidden(model, x):
    first = model[1]
    w, b = first.weight.detach().numpy().astype(np.float64), first.bias.detach().numpy()
    return np.maximum(x.reshape(len(x), -1).astype(np.float64) @ w.T + b, 0), w, b


def test_mahalanobis_matches_numpy():
    model = mlp_classifier()
    train, y = class_images(150, seed=0)
    test, _ = class_images(8, seed=5)
    det = MahalanobisDetector(model, input_size=S)  # penultimate: input of the last Linear
    det.fit([(train, y)])
    f_train, _, _ = np_hidden(model, train)
    f_test, _, _ = np_hidden(model, test)
    d, means, prec = np_mahalanobis(f_train, y, f_test)
    np.testing.assert_allclose(det.means_.cpu().numpy(), means, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(det.score(test), d.min(axis=1), rtol=1e-4)
    # sklearn's EmpiricalCovariance (used by Lee et al.'s code) gives the same precision
    from sklearn.covariance import EmpiricalCovariance

    centred = f_train - means[y]
    ec = EmpiricalCovariance(assume_centered=False).fit(centred)
    np.testing.assert_allclose(ec.precision_, prec, rtol=1e-4, atol=1e-6)


def test_mahalanobis_perturbation_on_a_linear_layer():
    model = mlp_classifier()
    train, y = class_images(150, seed=0)
    test, _ = class_images(5, seed=6, anomalous=True)
    eps = 0.003
    det = MahalanobisDetector(model, layer="1", epsilon=eps, input_size=S).fit([(train, y)])
    _, w, b = np_hidden(model, train)
    lin = lambda x: x.reshape(len(x), -1).astype(np.float64) @ w.T + b  # noqa: E731
    d, means, prec = np_mahalanobis(lin(train), y, lin(test))
    c = d.argmin(axis=1)
    grad = 2 * ((lin(test) - means[c]) @ prec) @ w  # d/dx of the closest-class distance
    x_tilde = test - eps * np.where(grad >= 0, 1.0, -1.0).reshape(test.shape)
    d_t, _, _ = np_mahalanobis(lin(train), y, lin(x_tilde))
    np.testing.assert_allclose(det.score(test), d_t.min(axis=1), rtol=1e-4)
    # the step moves towards the closest class: the distance drops
    plain = MahalanobisDetector(model, layer="1", input_size=S).fit([(train, y)])
    assert np.all(det.score(test) < plain.score(test))


def test_mahalanobis_unlabelled_batches():
    model = mlp_classifier()
    train, _ = class_images(90, seed=0)
    with torch.no_grad():
        pred = model(torch.from_numpy(train)).argmax(dim=1).numpy()
    a = MahalanobisDetector(model, input_size=S).fit([train[:50], train[50:]])
    b = MahalanobisDetector(model, input_size=S).fit((train, pred))  # one labelled tuple
    np.testing.assert_allclose(a.score(train[:5]), b.score(train[:5]), rtol=1e-5)
    single = MahalanobisDetector(model, input_size=S, labels="single").fit(train)
    assert len(single.classes_) == 1


def test_map_fn_and_errors():
    model = linear_classifier()
    x, _ = class_images(3, seed=0)
    det = wrap(model, method="energy", input_size=S, map_fn=lambda t: (t - 0.5).abs().mean(dim=1))
    s, m = det.predict(x)
    assert det.has_map and m.shape == (3, S, S)
    np.testing.assert_allclose(det.anomaly_map(x), np.abs(x - 0.5).mean(axis=1), rtol=1e-5)

    class ScoreOnly(nn.Module):
        def forward(self, t):
            return t.flatten(1).sum(dim=1)

    with pytest.raises(InputError, match=r"EnergyDetector 'e'.*logits of shape \(B, K\)"):
        wrap(ScoreOnly(), method="energy", name="e", input_size=S).predict(x)
    with pytest.raises(InputError, match="not a sub-module.*sub-modules"):
        MahalanobisDetector(model, layer="nope")
    with pytest.raises(InputError, match="not fitted"):
        MahalanobisDetector(mlp_classifier(), input_size=S).predict(x)
    with pytest.raises(InputError, match="labels must be"):
        MahalanobisDetector(mlp_classifier(), input_size=S).fit([(x, np.array([0.5, 1, 2]))])
    with pytest.raises(InputError, match="temperature must be a positive"):
        wrap(model, method="odin", temperature=0)
    with pytest.raises(InputError, match="OOD method must be one of"):
        wrap(model, method="nope")

    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear_classifier()

        def forward(self, t):
            return {"logits": self.net(t), "aux": 0}

    det = wrap(Dict(), method="msp", logits="logits", input_size=S)
    np.testing.assert_allclose(
        det.score(x), -softmax(np_logits(model, x), axis=1).max(axis=1), rtol=1e-5
    )
