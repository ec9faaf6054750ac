"""Robustness metrics: max/avg sensitivity and local Lipschitz estimates.

Analytic explainers make the values hand-computable; captum's ``sensitivity_max`` is
called on the very same seeded perturbations for the cross-check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import xeval
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics import avg_sensitivity, local_lipschitz, max_sensitivity
from xeval.metrics.robustness import linf_perturbations

R, K = 0.05, 6


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, size=(3, 3, 8, 8)).astype(np.float32)


def deltas(images, *, radius=R, n=K, seed=0):
    return np.stack(
        [
            linf_perturbations(x, i, radius=radius, n_samples=n, seed=seed) - x[None]
            for i, x in enumerate(images)
        ]
    ).astype(np.float64)  # (B, K, C, H, W)


def test_constant_explainer_is_perfectly_robust(images):
    ones = lambda x: np.ones((len(x), *x.shape[2:]))  # noqa: E731
    zeros = lambda x: np.zeros((len(x), *x.shape[2:]))  # noqa: E731
    for fn in (ones, zeros):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for f in (max_sensitivity, avg_sensitivity):
                raw = f(fn, images, radius=R, n_samples=K, normalise=False)
                assert np.array_equal(raw, [0, 0, 0])
            assert np.array_equal(local_lipschitz(fn, images, radius=R, n_samples=K), [0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(max_sensitivity(ones, images, radius=R, n_samples=K), [0, 0, 0])
    # relative to an all-zero map the change is 0/0: undefined, never a perfect 0
    for f in (max_sensitivity, avg_sensitivity):
        with pytest.warns(UndefinedMetricWarning, match="all zero"):
            assert np.isnan(f(zeros, images, radius=R, n_samples=K)).all()


def test_identity_explainer_equals_perturbation_norm_ratio(images):
    d = deltas(images)
    dn = np.sqrt((d.reshape(3, K, -1) ** 2).sum(-1))  # (B, K)
    xn = np.sqrt((images.astype(np.float64).reshape(3, -1) ** 2).sum(-1))
    ident = lambda x: x  # noqa: E731  (maps of shape (n, C, H, W), flattened)
    got_max = max_sensitivity(ident, images, radius=R, n_samples=K)
    got_avg = avg_sensitivity(ident, images, radius=R, n_samples=K)
    np.testing.assert_allclose(got_max, dn.max(1) / xn, rtol=1e-5)
    np.testing.assert_allclose(got_avg, dn.mean(1) / xn, rtol=1e-5)
    raw = max_sensitivity(ident, images, radius=R, n_samples=K, normalise=False)
    np.testing.assert_allclose(raw, dn.max(1), rtol=1e-5)
    # inf norm on a constant image: max |delta| / 0.5, just below radius / 0.5
    half = np.full((1, 3, 8, 8), 0.5, np.float32)
    v = max_sensitivity(ident, half, radius=R, n_samples=K, norm="inf")
    assert 0.9 * R / 0.5 < v[0] <= R / 0.5 + 1e-6


def test_batch_size_does_not_change_the_numbers(images):
    fn = lambda x: np.tanh(5 * x).sum(1) ** 2  # noqa: E731
    ref = max_sensitivity(fn, images, radius=R, n_samples=K, batch_size=64)
    for bs in (1, 4, 5):
        np.testing.assert_array_equal(
            max_sensitivity(fn, images, radius=R, n_samples=K, batch_size=bs), ref
        )
    calls = []

    def counting(x):
        calls.append(len(x))
        return fn(x)

    avg_sensitivity(counting, images, radius=R, n_samples=K, batch_size=4)
    assert max(calls) <= 4 and sum(calls) == 3 + 3 * K  # originals + all perturbed copies


def test_seed_reproducible_and_changes(images):
    fn = lambda x: np.tanh(5 * x).sum(1) ** 2  # noqa: E731
    a = avg_sensitivity(fn, images, seed=3)
    np.testing.assert_array_equal(a, avg_sensitivity(fn, images, seed=3))
    assert not np.array_equal(a, avg_sensitivity(fn, images, seed=4))


def _tiny_detector():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 1, 3, padding=1)
    ).eval()
    return xeval.wrap(net, input_size=(8, 8), output="map", reduction="mean")


@pytest.mark.parametrize("norm", ["fro", "inf"])
def test_agrees_with_captum_sensitivity_max(images, norm):
    """captum.metrics.sensitivity_max on identical perturbations (saliency of a detector)."""
    from captum.metrics import sensitivity_max

    det = _tiny_detector()

    def explain_np(x):
        return xeval.explain(det, x, "saliency")

    def explain_torch(x):
        x = x[0] if isinstance(x, tuple) else x  # captum passes a tuple for the originals
        # a tuple: captum iterates over the explanation of the originals as a tuple
        return (torch.from_numpy(explain_np(x.detach().numpy().astype(np.float32))),)

    def perturb(inputs, radius):  # captum's order: repeat_interleave (image-major)
        b = inputs.shape[0] // K
        xs = inputs.detach().numpy()[::K]
        assert b == len(images) and np.array_equal(xs, images)
        return torch.from_numpy(
            np.concatenate(
                [linf_perturbations(x, i, radius=radius, n_samples=K) for i, x in enumerate(xs)]
            )
        )

    ours = max_sensitivity(explain_np, images, radius=R, n_samples=K, norm=norm)
    theirs = sensitivity_max(
        explain_torch,
        torch.from_numpy(images),
        perturb_func=perturb,
        perturb_radius=R,
        n_perturb_samples=K,
        norm_ord=norm if norm == "fro" else float("inf"),
    )
    assert ours.shape == (3,) and np.all(ours > 0)
    np.testing.assert_allclose(ours, theirs.numpy().ravel(), rtol=1e-4)


def test_local_lipschitz_of_linear_explainers(images):
    # Phi(x) = c x: ||c d|| / ||d|| = |c| exactly
    np.testing.assert_allclose(local_lipschitz(lambda x: -3.0 * x, images), 3.0, rtol=1e-5)
    # Phi(x) = w * x (per-pixel weights): between min|w| and max|w| (the operator norm),
    # and equal to the hand-computed max over the samples
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=(3, 8, 8))
    got = local_lipschitz(lambda x: w * x, images, radius=R, n_samples=K)
    d = deltas(images)
    num = np.sqrt(((w * d) ** 2).reshape(3, K, -1).sum(-1))
    den = np.sqrt((d**2).reshape(3, K, -1).sum(-1))
    np.testing.assert_allclose(got, (num / den).max(1), rtol=1e-5)
    assert np.all(got <= w.max() + 1e-9) and np.all(got >= w.min() - 1e-9)


def test_clip_keeps_images_in_range():
    x = np.zeros((1, 1, 4, 4), np.float32)
    seen = []
    max_sensitivity(lambda z: seen.append(z.copy()) or z, x + 1e-3, clip=True, n_samples=3)
    assert all(s.min() >= 0 and s.max() <= 1 for s in seen)
    # ||x - x'|| uses the clipped perturbation: the identity explainer stays at exactly 1
    np.testing.assert_allclose(local_lipschitz(lambda z: z, x, clip=True), [1.0], rtol=1e-6)


def test_zero_map_that_moves_is_nan(images):
    def fn(x):  # zero at the originals, non-zero elsewhere
        return (x - images[: len(x)] if len(x) == 3 else x).sum(1)

    with pytest.warns(UndefinedMetricWarning, match="all zero"):
        out = max_sensitivity(fn, images, n_samples=2, batch_size=3)
    assert np.all(np.isnan(out))
    assert np.all(max_sensitivity(fn, images, n_samples=2, batch_size=3, normalise=False) > 0)


def test_input_errors(images):
    ok = lambda x: x.sum(1)  # noqa: E731
    with pytest.raises(InputError, match="radius"):
        max_sensitivity(ok, images, radius=0)
    with pytest.raises(InputError, match="n_samples"):
        max_sensitivity(ok, images, n_samples=0)
    with pytest.raises(InputError, match="norm"):
        max_sensitivity(ok, images, norm="l7")
    with pytest.raises(InputError, match="explain_fn returned shape"):
        max_sensitivity(lambda x: x.sum(), images)
    with pytest.raises(InputError, match="non-finite"):
        max_sensitivity(lambda x: x.sum(1) * np.nan, images)
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        max_sensitivity(ok, images[0])
