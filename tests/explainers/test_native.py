"""NativeMap returns the detector's own map, unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from xeval.adapters.base import Detector
from xeval.errors import InputError
from xeval.explainers import NativeMap
from xeval.record import Inputs


class Toy(Detector):
    name = "toy"
    calls = 0

    def fit(self, batches):
        return self

    def predict(self, images):
        Toy.calls += 1
        maps = images.mean(axis=1)[:, ::2, ::2] * 10.0  # own (coarser) resolution
        return maps.reshape(len(maps), -1).max(1), maps.astype(np.float32)


def batch(n: int = 2) -> Inputs:
    images = np.random.default_rng(0).random((n, 3, 8, 8), dtype=np.float32)
    return Inputs(ids=[str(i) for i in range(n)], category="c", images=images)


def test_native_uses_given_maps_without_calling_the_detector():
    given = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    Toy.calls = 0
    out = NativeMap().explain(Toy(), batch(), maps=given)
    assert Toy.calls == 0 and out.dtype == np.float32
    np.testing.assert_array_equal(out, given.astype(np.float32))


def test_native_calls_anomaly_map_when_maps_missing():
    b = batch()
    out = NativeMap().explain(Toy(), b)
    np.testing.assert_array_equal(out, Toy().anomaly_map(b.images))
    assert out.shape == (2, 4, 4)  # no resizing, no normalisation


def test_native_checks_map_shape():
    with pytest.raises(InputError, match=r"'toy'.*maps of shape \(3, 4, 4\) for 2 images"):
        NativeMap().explain(Toy(), batch(), maps=np.zeros((3, 4, 4)))


def test_native_requires_map():
    assert NativeMap.requires == frozenset({"map"})
