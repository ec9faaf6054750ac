"""Contract tests shared by the built-in detectors (tiny images, few epochs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xeval.adapters import ConvAutoencoder, Detector, NotFittedError, PatchFeatures
from xeval.errors import InputError

FACTORIES = {
    "ae": lambda **kw: ConvAutoencoder(
        input_size=32, epochs=kw.pop("epochs", 15), batch_size=8, width=8, num_threads=1, **kw
    ),
    "pf": lambda **kw: PatchFeatures(
        input_size=32, scales=(1.0, 2.0), context=None, sigma=1.0, num_threads=1, **kw
    ),
    "pf_gauss": lambda **kw: PatchFeatures(
        input_size=32,
        scales=(1.0, 2.0),
        context=None,
        sigma=1.0,
        scoring="gaussian",
        num_threads=1,
        **kw,
    ),
}


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request, train_images) -> Detector:
    det = FACTORIES[request.param]()
    return det.fit([train_images[:12], train_images[12:]])


def test_predict_shapes_and_dtypes(fitted, test_images):
    scores, maps = fitted.predict(test_images)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(scores, maps.reshape(4, -1).max(1))
    np.testing.assert_array_equal(fitted.score(test_images), scores)
    np.testing.assert_array_equal(fitted.anomaly_map(test_images), maps)


def test_predict_is_batch_independent(fitted, test_images):
    _, all_maps = fitted.predict(test_images)
    _, one = fitted.predict(test_images[2:3])
    np.testing.assert_allclose(one[0], all_maps[2], rtol=1e-5, atol=1e-6)


def test_one_channel_images_are_repeated(fitted, test_images):
    grey = test_images[:, :1]
    np.testing.assert_array_equal(
        fitted.predict(grey)[1], fitted.predict(np.repeat(grey, 3, axis=1))[1]
    )


def test_planted_defect_is_hot(fitted, planted):
    images, mask = planted
    _, maps = fitted.predict(images)
    for m in maps:
        assert m[mask].mean() > 2 * m[~mask].mean()
        assert np.unravel_index(m.argmax(), m.shape) in set(zip(*np.nonzero(mask), strict=True))


def test_scores_rank_defective_above_normal(fitted, test_images, planted):
    normal = fitted.score(test_images)
    defective = fitted.score(planted[0])
    assert defective.min() > normal.max()


def test_torch_score_is_differentiable_and_matches_predict(fitted, planted):
    images = planted[0]
    f = fitted.torch_score()
    assert fitted.differentiable and callable(f)
    x = torch.from_numpy(images).requires_grad_(True)
    s = f(x)
    assert s.shape == (4,)
    s.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    np.testing.assert_allclose(s.detach().numpy(), fitted.score(images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_same_seed_same_numbers(kind, train_images, test_images):
    a = FACTORIES[kind](seed=3, **({"epochs": 3} if kind == "ae" else {})).fit([train_images])
    b = FACTORIES[kind](seed=3, **({"epochs": 3} if kind == "ae" else {})).fit([train_images])
    np.testing.assert_array_equal(a.predict(test_images)[1], b.predict(test_images)[1])


def test_autoencoder_seed_changes_weights(train_images, test_images):
    a = FACTORIES["ae"](seed=0, epochs=2).fit([train_images])
    b = FACTORIES["ae"](seed=1, epochs=2).fit([train_images])
    assert not np.array_equal(a.predict(test_images)[1], b.predict(test_images)[1])


def test_fit_leaves_global_rng_alone(train_images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    FACTORIES["ae"](epochs=1).fit([train_images])
    np.testing.assert_array_equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_predict_before_fit(kind, test_images):
    det = FACTORIES[kind]()
    with pytest.raises(NotFittedError, match="fit"):
        det.predict(test_images)
    with pytest.raises(NotFittedError):
        det.torch_score()


@pytest.mark.parametrize(
    ("images", "pattern"),
    [
        (np.zeros((3, 32, 32), np.float32), r"rank 4.*\(3, 32, 32\)"),
        (np.zeros((2, 4, 32, 32), np.float32), r"channels.*\(2, 4, 32, 32\)"),
        (np.zeros((2, 3, 32, 32), np.uint8), r"dtype uint8.*\(2, 3, 32, 32\)"),
        (np.zeros((2, 3, 48, 32), np.float32), r"input_size.*\(2, 3, 48, 32\)"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "NaN"),
        ([[1.0]], "numpy array"),
    ],
)
def test_bad_images_raise_input_error(fitted, images, pattern):
    with pytest.raises(InputError, match="images") as info:
        fitted.predict(images)
    assert info.match(pattern)


def test_bad_fit_batches(train_images):
    det = FACTORIES["pf"]()
    with pytest.raises(InputError, match=r"batches\[0\].*rank 4"):
        det.fit([train_images[0]])
    with pytest.raises(InputError, match="no images"):
        det.fit([])


def test_fit_accepts_input_objects(train_images, test_images):
    from xeval.record import Inputs

    inputs = Inputs(
        ids=[str(i) for i in range(len(train_images))], category="stripes", images=train_images
    )
    a = FACTORIES["pf"]().fit([inputs])
    b = FACTORIES["pf"]().fit([train_images])
    np.testing.assert_array_equal(a.anomaly_map(test_images), b.anomaly_map(test_images))


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_config_and_name(kind):
    det = FACTORIES[kind](name="mine", seed=7)
    cfg = det.config()
    assert det.name == "mine" and cfg["name"] == "mine"
    assert cfg["seed"] == 7 and cfg["input_size"] == [32, 32] and cfg["device"] == "cpu"
    assert det.input_size == (32, 32)
    assert "mine" in repr(det)


def test_bad_hyper_parameters():
    with pytest.raises(InputError, match="input_size"):
        ConvAutoencoder(input_size=30)
    with pytest.raises(InputError, match="features"):
        PatchFeatures(features="vgg")
    with pytest.raises(InputError, match="scoring"):
        PatchFeatures(scoring="svm")
    with pytest.raises(TypeError):
        PatchFeatures(32)  # keyword-only
