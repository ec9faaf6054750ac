"""Readers of single files: images, masks, maps."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from xeval.data.io import image_size, read_image, read_map, read_mask
from xeval.errors import DatasetError


def test_read_image_rgb_gray_and_16bit(tmp_path):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = read_image(tmp_path / "rgb.png")
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-7)

    gray = np.array([[0, 255], [128, 64]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.bmp")
    out = read_image(tmp_path / "g.bmp")
    assert out.shape == (2, 2, 3)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert out.max() == 1.0

    g16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(out[..., 0], g16 / 65535.0, atol=1e-6)
    tifffile.imwrite(tmp_path / "g16.tif", g16)
    np.testing.assert_allclose(read_image(tmp_path / "g16.tif")[..., 1], g16 / 65535.0, atol=1e-6)
    rgba = np.zeros((3, 3, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (3, 3, 3)
    assert image_size(tmp_path / "rgb.png") == (4, 5)


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="bad.png"):
        read_image(tmp_path / "bad.png")


@pytest.mark.parametrize("hi", [1, 255])
def test_read_mask_binary(tmp_path, hi):
    m = np.zeros((6, 7), dtype=np.uint8)
    m[2:4, 3:5] = hi
    Image.fromarray(m).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == bool and out.shape == (6, 7) and out.sum() == 4


def test_read_mask_identical_channels_ok_and_different_refused(tmp_path):
    m = np.zeros((4, 4, 3), dtype=np.uint8)
    m[1, 1] = 255
    Image.fromarray(m).save(tmp_path / "rgb_mask.png")
    assert read_mask(tmp_path / "rgb_mask.png").sum() == 1
    m[2, 2, 0] = 255
    Image.fromarray(m).save(tmp_path / "rgb_bad.png")
    with pytest.raises(DatasetError, match="rgb_bad.png"):
        read_mask(tmp_path / "rgb_bad.png")


def test_read_mask_non_binary_names_file_and_values(tmp_path):
    m = np.zeros((4, 4), dtype=np.uint8)
    m[0, 0], m[1, 1] = 255, 128
    Image.fromarray(m).save(tmp_path / "gray_mask.png")
    with pytest.raises(DatasetError, match=r"gray_mask\.png.*128"):
        read_mask(tmp_path / "gray_mask.png")
    m[1, 1] = 1  # {0, 1, 255} is not binary either
    Image.fromarray(m).save(tmp_path / "mixed.png")
    with pytest.raises(DatasetError, match="mixed.png"):
        read_mask(tmp_path / "mixed.png")


def test_read_map_formats(tmp_path):
    a = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    a[0, 0] = np.nan  # passed through: metrics validate
    np.save(tmp_path / "m.npy", a)
    out = read_map(tmp_path / "m.npy")
    assert out.dtype == np.float32 and out.shape == (5, 6) and np.isnan(out[0, 0])
    np.save(tmp_path / "m1.npy", a[None].astype(np.float64))
    assert read_map(tmp_path / "m1.npy").shape == (5, 6)
    tifffile.imwrite(tmp_path / "m.tiff", a)
    np.testing.assert_array_equal(read_map(tmp_path / "m.tiff")[1:], a[1:])
    q = np.array([[0, 7], [200, 255]], dtype=np.uint8)
    Image.fromarray(q).save(tmp_path / "q.png")
    np.testing.assert_array_equal(read_map(tmp_path / "q.png"), q.astype(np.float32))


def test_read_map_errors(tmp_path):
    np.save(tmp_path / "multi.npy", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(DatasetError, match=r"multi\.npy.*\(4, 4, 3\)"):
        read_map(tmp_path / "multi.npy")
    (tmp_path / "m.txt").write_text("1")
    with pytest.raises(DatasetError, match="m.txt"):
        read_map(tmp_path / "m.txt")
