"""label_free: the base method restricted to the encoder's parameters (Crabbé & van
der Schaar 2022); on the built-in autoencoder and a toy."""

from __future__ import annotations

import numpy as np
import pytest
from _influence_toys import CentreDetector, NetDetector, blobs, one_thread  # noqa: F401

import xeval
from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.errors import ConfigError, InputError
from xeval.influence.label_free import encoder_parameters


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 0.8, size=(n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def ae():
    train = _images(6, 0)
    det = ConvAutoencoder(
        input_size=16,
        epochs=2,
        width=4,
        bottleneck=2,
        downsample=1,
        augment=False,
        checkpoints=2,
    ).fit([train])
    return det, train, _images(2, 1)


def test_encoder_parameters_are_the_encoders(ae):
    det, train, _ = ae
    names = encoder_parameters(det, train[:1])
    expected = [f"encoder.{n}" for n, _ in det.torch_module().encoder.named_parameters()]
    assert names == expected


@pytest.mark.parametrize("base", ["grad_dot", "tracin"])
def test_equals_the_base_method_on_encoder_layers(ae, base):
    det, train, test = ae
    got = xeval.influence(det, train, test, method="label_free", base=base)
    ref = xeval.influence(det, train, test, method=base, layers=["encoder"])
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    full = xeval.influence(det, train, test, method=base)
    assert not np.allclose(got, full)  # the decoder's gradients are left out
    si = xeval.self_influence(det, train, method="label_free", base=base)
    np.testing.assert_allclose(
        si, xeval.self_influence(det, train, method=base, layers=["encoder"]), rtol=1e-12
    )


def test_influence_function_base_with_options(ae):
    det, train, test = ae
    kw = dict(solver="arnoldi", arnoldi_dim=8, top_k=4, damping=0.1, seed=2)
    got = xeval.influence(det, train, test, method="label_free", **kw)
    ref = xeval.influence(det, train, test, method="influence_function", layers=["encoder"], **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_toy_whose_score_is_all_encoder():
    train, test = blobs(8, seed=0), blobs(2, seed=1)
    det = NetDetector(4).fit(train, epochs=5, every=5)
    got = xeval.influence(det, train, test, method="label_free", base="grad_dot")
    np.testing.assert_allclose(
        got, xeval.influence(det, train, test, method="grad_dot"), rtol=1e-12
    )


def test_errors():
    det = CentreDetector(np.ones(4)).fit(blobs(5))
    with pytest.raises(InputError, match="'label_free' cannot run on detector 'centre'.*encoder"):
        xeval.influence(det, blobs(5), blobs(2), method="label_free")
    net = NetDetector(4)
    with pytest.raises(InputError, match="label_free base must be one of"):
        xeval.influence(net, blobs(5), blobs(2), method="label_free", base="knn")
    with pytest.raises(InputError, match="drop 'layers'"):
        xeval.influence(net, blobs(5), blobs(2), method="label_free", layers=["encoder"])
    with pytest.raises(ConfigError, match="unknown option"):
        xeval.influence(net, blobs(5), blobs(2), method="label_free", base="grad_dot", solver="cg")
