"""iter_batches: shapes, dtypes, native masks."""

from __future__ import annotations

import numpy as np
import pytest

from xeval.data import iter_batches, load_masks, load_mvtec, resize_image, write_tiny_mvtec
from xeval.data.sample import Sample
from xeval.errors import DatasetError, InputError


@pytest.fixture
def split(tmp_path):
    root = write_tiny_mvtec(tmp_path, defects=("scratch", "hole"), size=(24, 40))
    return load_mvtec(root, "a")


def test_batches_shapes_and_dtypes(split):
    batches = list(iter_batches(split.test, batch_size=4, image_size=(16, 20)))
    assert [len(b) for b in batches] == [4, 2]
    b = batches[0]
    x, t = b.inputs, b.targets  # what explainers may see | what only metrics see
    assert x.images.shape == (4, 3, 16, 20) and x.images.dtype == np.float32
    assert 0.0 <= x.images.min() and x.images.max() <= 1.0
    assert t.labels.dtype == np.int64
    assert b.category == x.category == "a"
    assert x.native_sizes == [(24, 40)] * 4
    assert not hasattr(x, "masks") and not hasattr(x, "labels")
    for m, lab in zip(t.masks, t.labels, strict=True):
        assert m.dtype == bool and m.shape == (24, 40)
        assert m.any() == bool(lab)
    assert t.regions is None and x.video_ids is None
    assert [i for r in batches for i in r.ids] == [s.id for s in split.test]
    assert [d for r in batches for d in r.targets.defects] == [s.defect for s in split.test]


def test_without_masks_threads_and_native_size(split):
    (b,) = iter_batches(
        split.train, batch_size=8, image_size=(24, 40), with_masks=False, num_workers=2
    )
    assert b.targets.masks is None and b.inputs.images.shape == (4, 3, 24, 40)
    assert np.all(b.targets.labels == 0)


def test_load_masks(split):
    masks = load_masks(split.test)
    assert [m.any() for m in masks] == [s.label == 1 for s in split.test]


def test_resize_is_antialiased():
    img = np.zeros((64, 64, 3), dtype=np.float32)
    img[::2] = 1.0  # stripes: a plain subsampling would give all 0 or all 1
    out = resize_image(img, (8, 8))
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out, 0.5, atol=0.1)


def test_loader_errors(split):
    with pytest.raises(InputError, match="batch_size"):
        next(iter_batches(split.test, batch_size=0, image_size=(8, 8)))
    s = next(s for s in split.test if s.label == 1)
    orphan = Sample(s.id, s.category, s.split, 1, s.defect, s.image_path, None)
    with pytest.raises(DatasetError, match="no mask"):
        next(iter_batches([orphan], batch_size=1, image_size=(8, 8)))
    (b,) = iter_batches([orphan], batch_size=1, image_size=(8, 8), with_masks=False)
    assert b.targets.labels.tolist() == [1]
    other = Sample("z/x", "z", "test", 0, "good", s.image_path)
    with pytest.raises(InputError, match="several categories"):
        next(iter_batches([s, other], batch_size=2, image_size=(8, 8)))
