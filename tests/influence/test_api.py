"""xeval.influence / xeval.self_influence: the public entry points, their errors, and
the built-in detectors."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from _influence_toys import BlackBox, NetDetector, blobs, one_thread  # noqa: F401

import xeval
from xeval.adapters.autoencoder import ConvAutoencoder
from xeval.adapters.patch_features import PatchFeatures
from xeval.errors import ConfigError, InputError
from xeval.influence import INFLUENCE_METHODS, available_methods


def _stripes(n, size=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    ph = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    img = 0.5 + 0.25 * np.sin(2 * np.pi * (xx + yy)[None] / 8 + ph)
    img = img + 0.03 * rng.standard_normal((n, size, size))
    return np.repeat(np.clip(img, 0, 1)[:, None], 3, axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def ae():
    train = _stripes(8)
    det = ConvAutoencoder(
        input_size=16, epochs=2, width=4, bottleneck=2, downsample=1, augment=False
    ).fit([train])
    return det, train, _stripes(3, seed=1)


def test_public_names():
    import xeval.influence as pkg

    assert callable(xeval.influence) and callable(pkg)
    assert xeval.self_influence is pkg.self_influence
    params = inspect.signature(xeval.influence).parameters
    assert list(params)[:3] == ["detector", "train_images", "test_images"]
    assert params["method"].kind is inspect.Parameter.KEYWORD_ONLY
    assert {"grad_dot", "grad_cos", "knn", "representation"} <= set(INFLUENCE_METHODS.names())


@pytest.mark.parametrize("method", ["grad_dot", "grad_cos", "knn", "representation"])
def test_conv_autoencoder_shapes_and_determinism(ae, method):
    det, train, test = ae
    a = xeval.influence(det, train, test, method=method)
    b = xeval.influence(det, train, test, method=method)
    assert a.shape == (3, 8) and a.dtype == np.float64 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert np.ptp(a) > 0


def test_conv_autoencoder_gradients_use_all_parameters_of_the_frozen_module(ae):
    det, train, test = ae
    module = det.torch_module()
    assert not any(p.requires_grad for p in module.parameters())  # frozen after fit
    full = xeval.influence(det, train, test, method="grad_dot")
    part = xeval.influence(det, train, test, method="grad_dot", layers=["decoder"])
    enc = xeval.influence(det, train, test, method="grad_dot", layers=["encoder"])
    np.testing.assert_allclose(full, part + enc, rtol=1e-6, atol=1e-12)


def test_self_influence_is_the_diagonal(ae):
    det, train, _ = ae
    si = xeval.self_influence(det, train, method="grad_dot")
    np.testing.assert_allclose(
        si, np.diag(xeval.influence(det, train, train, method="grad_dot")), rtol=1e-6
    )


def test_unknown_method_and_option_list_the_valid_ones(ae):
    det, train, test = ae
    with pytest.raises(ConfigError, match="unknown influence method 'nope'.*grad_dot"):
        xeval.influence(det, train, test, method="nope")
    with pytest.raises(ConfigError, match="unknown option.*'bogus'.*valid options"):
        xeval.influence(det, train, test, method="grad_dot", bogus=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l2": -1.0}, "l2 must be a finite number >= 0"),
        ({"l2": float("nan")}, "l2 must be"),
        ({"loss": "mse"}, "loss must be None or a callable"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"seed": 1.5}, "option .seed. must be an integer, got 1.5"),
        ({"projection_dim": 0}, "projection_dim must be an integer >= 1"),
        ({"layers": ["nope"]}, "layers: 'nope' names no parameter.*modules with parameters"),
    ],
)
def test_bad_options(ae, kwargs, match):
    det, train, test = ae
    with pytest.raises(InputError, match=match):
        xeval.influence(det, train, test, method="grad_dot", **kwargs)


def test_bad_images(ae):
    det, train, test = ae
    with pytest.raises(InputError, match="train_images must have shape"):
        xeval.influence(det, train[0], test, method="grad_dot")
    with pytest.raises(InputError, match="test_images must be floating point"):
        xeval.influence(det, train, (test * 255).astype(np.uint8), method="grad_dot")
    with pytest.raises(InputError, match="must match"):
        xeval.influence(det, train, test[:, :, :8, :8], method="knn")
    bad = train.copy()
    bad[2, 0, 1, 1] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        xeval.self_influence(det, bad, method="knn")


def test_score_must_be_one_number_per_image():
    det = NetDetector(4)
    with pytest.raises(InputError, match="one number per image"):
        xeval.influence(
            det, blobs(4), blobs(2), method="grad_dot", loss=lambda m, x: m(x.double()).sum()
        )


def test_patch_features_has_no_parameters_and_lists_working_methods():
    train = _stripes(6, size=16)
    det = PatchFeatures(input_size=16, scales=(1.0,), memory_size=64).fit([train])
    with pytest.raises(InputError) as err:
        xeval.influence(det, train, train[:2], method="grad_dot")
    msg = str(err.value)
    assert "method 'grad_dot' cannot run on detector 'patch_features'" in msg
    assert "learned torch parameters" in msg
    assert "Methods that work with this detector: knn, representation" in msg
    assert "knn" in available_methods(det) and "grad_dot" not in available_methods(det)
    s = xeval.self_influence(det, train, method="knn")  # features: the anomaly map
    assert s.shape == (6,) and np.all(s >= 0)


def test_black_box_supports_knn_on_pixels_only():
    det = BlackBox()
    with pytest.raises(InputError, match="cannot run on detector 'black_box'.*needs"):
        xeval.influence(det, blobs(4), blobs(2), method="knn")
    out = xeval.influence(det, blobs(4), blobs(2), method="knn", features="pixels")
    assert out.shape == (2, 4)
    with pytest.raises(InputError, match="cannot run on detector 'black_box'"):
        xeval.self_influence(det, blobs(4), method="grad_dot")


def test_grad_cos_has_no_self_influence():
    with pytest.raises(InputError, match="grad_cos' has no self-influence"):
        xeval.self_influence(NetDetector(4), blobs(4), method="grad_cos")


def test_knn_k_too_large():
    with pytest.raises(InputError, match="k <= n_train - 1"):
        xeval.self_influence(NetDetector(4), blobs(3), method="knn", k=3)
