"""PatchFeatures' feature and scoring options all produce valid, sensible maps."""

from __future__ import annotations

import numpy as np
import pytest

from xeval.adapters import PatchFeatures


@pytest.mark.parametrize(
    "params",
    [
        {"features": "random_cnn"},
        {"features": "both", "scoring": "gaussian"},
        {"scoring": "gaussian", "per_position": True},
        {"scoring": "knn", "k": 3, "memory_size": 500},
        {"stride": 2, "scales": [1.0, 2.0]},
    ],
)
def test_variants(params, train_images, planted):
    det = PatchFeatures(input_size=32, num_threads=1, **params).fit([train_images])
    images, mask = planted
    scores, maps = det.predict(images)
    assert maps.shape == (4, 32, 32) and np.isfinite(maps).all()
    assert maps[:, mask].mean() > maps[:, ~mask].mean()
    assert det.config()["features"] == params.get("features", "filterbank")


def test_knn_memory_is_subsampled(train_images):
    det = PatchFeatures(input_size=32, memory_size=100, num_threads=1).fit([train_images])
    assert det._stats["memory"].shape[0] == 100
