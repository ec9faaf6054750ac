"""Dataset readers and the built-in synthetic benchmarks.

- :func:`load_mvtec`, :func:`list_categories`: MVTec AD and MVTec-like layouts.
- :func:`load_folder`: any folder layout described by glob patterns.
- :func:`iter_batches`: samples -> :class:`~xeval.batch.Batch` (images resized, masks
  at native resolution).
- :func:`build_textures`, :func:`load_textures`: the built-in ``textures`` benchmark.
- :func:`write_tiny_mvtec`: tiny MVTec-layout fixtures for tests.
- :func:`read_image`, :func:`read_mask`, :func:`read_map`: file readers.
"""

from __future__ import annotations

from xeval.data.defects import DEFECT_KINDS, make_defect
from xeval.data.folder import load_folder
from xeval.data.io import IMAGE_EXTENSIONS, image_size, read_image, read_map, read_mask
from xeval.data.loader import iter_batches, load_mask, load_masks, resize_image
from xeval.data.mvtec import list_categories, load_mvtec
from xeval.data.sample import Sample
from xeval.data.split import CategorySplit
from xeval.data.textures import (
    CATEGORIES as TEXTURES_CATEGORIES,
)
from xeval.data.textures import (
    TEXTURES_VERSION,
    build_textures,
    default_cache_dir,
    load_textures,
)
from xeval.data.tiny import write_tiny_mvtec

__all__ = [
    "Batch",
    "CategorySplit",
    "DEFECT_KINDS",
    "IMAGE_EXTENSIONS",
    "Sample",
    "TEXTURES_CATEGORIES",
    "TEXTURES_VERSION",
    "build_textures",
    "default_cache_dir",
    "image_size",
    "iter_batches",
    "list_categories",
    "load_folder",
    "load_mask",
    "load_masks",
    "load_mvtec",
    "load_textures",
    "make_defect",
    "read_image",
    "read_map",
    "read_mask",
    "resize_image",
    "write_tiny_mvtec",
]
