"""Dataset readers and the built-in synthetic benchmarks.

- :func:`load_mvtec`, :func:`list_categories`: MVTec AD and MVTec-like layouts.
- :func:`load_mvtec_loco`, :func:`list_loco_categories`: MVTec LOCO AD (per-defect
  ground truth with sPRO saturation).
- :func:`load_folder`: any folder layout described by glob patterns.
- :func:`iter_batches`: samples -> :class:`~xeval.record.Record` (inputs: images
  resized; targets: masks at native resolution, labels, regions).

Each format is registered in :data:`xeval.registry.DATASETS` (``mvtec``, ``mvtec_loco``,
``folder``, ``textures``) and described by a card in ``datasets/``.
- :func:`build_textures`, :func:`load_textures`: the built-in ``textures`` benchmark.
- :func:`write_tiny_mvtec`: tiny MVTec-layout fixtures for tests.
- :func:`read_image`, :func:`read_mask`, :func:`read_map`: file readers.
"""

from __future__ import annotations

from xeval.data.defects import DEFECT_KINDS, make_defect
from xeval.data.folder import load_folder
from xeval.data.io import IMAGE_EXTENSIONS, image_size, read_image, read_map, read_mask
from xeval.data.loader import iter_batches, load_mask, load_masks, resize_image
from xeval.data.loco import list_loco_categories, load_mvtec_loco, write_tiny_loco
from xeval.data.mvtec import list_categories, load_mvtec
from xeval.data.sample import RegionRef, Sample
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
    "RegionRef",
    "list_loco_categories",
    "load_mvtec_loco",
    "write_tiny_loco",
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
