"""Load samples into :class:`~xeval.record.Record` s: images resized, masks native."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from xeval.data.io import read_image, read_label_mask, read_mask
from xeval.data.sample import RegionRef, Sample
from xeval.errors import DatasetError, InputError
from xeval.record import DefectRegion, Inputs, Record, Targets

__all__ = ["iter_batches", "load_mask", "load_masks", "load_regions", "resize_image"]


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float32 ``(H, W, C)`` image to ``size = (H, W)``, bilinear.

    Pillow's bilinear filter widens its support when downsampling (antialiased); each
    channel is resized in float (mode ``"F"``), so no 8-bit quantisation happens. The
    result is clipped to ``[0, 1]`` (bilinear weights are convex: this only removes
    rounding error).
    """
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image.astype(np.float32, copy=False)
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (w, h), resample=Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32, copy=False)


def saturation_pixels(ref: RegionRef, area: int) -> float:
    """The sPRO saturation area of a defect of ``area`` pixels: ``floor(saturation *
    area)`` when relative, else ``min(saturation, area)``; at least one pixel."""
    sat = math.floor(ref.saturation * area) if ref.relative else min(ref.saturation, area)
    return float(max(sat, 1))


def load_regions(sample: Sample, size: tuple[int, int] | None = None) -> tuple[DefectRegion, ...]:
    """The per-defect ground truth of ``sample`` (empty for formats without it)."""
    out = []
    for ref in sample.regions:
        m = read_label_mask(ref.path, value=ref.value)
        if size is not None and m.shape != tuple(size):
            raise DatasetError(
                f"ground-truth file {ref.path} has size {m.shape} but its image "
                f"{sample.image_path} is {tuple(size)} (expected the image's native size)"
            )
        out.append(
            DefectRegion(mask=m, saturation=saturation_pixels(ref, int(m.sum())), defect=ref.defect)
        )
    return tuple(out)


def load_mask(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """Native-resolution bool mask of ``sample``.

    Normal samples (label 0) without a mask file get an all-False mask of ``size``
    (the native image size). An anomalous sample without a mask file is an error. A
    sample with per-defect ground-truth files (``regions``) gets their union.
    """
    if sample.regions:
        regions = load_regions(sample, size)
        mask = regions[0].mask.copy()
        for r in regions[1:]:
            if r.mask.shape != mask.shape:
                raise DatasetError(
                    f"ground-truth files of {sample.id!r} have different sizes "
                    f"({mask.shape} and {r.mask.shape})"
                )
            mask |= r.mask
        return mask
    if sample.mask_path is not None:
        mask = read_mask(sample.mask_path)
        if size is not None and mask.shape != tuple(size):
            raise DatasetError(
                f"mask file {sample.mask_path} has size {mask.shape} but its image "
                f"{sample.image_path} is {tuple(size)} (expected the image's native size)"
            )
        return mask
    if sample.label == 1:
        raise DatasetError(
            f"anomalous sample {sample.id!r} ({sample.image_path}) has no mask file "
            "(pass with_masks=False for datasets without pixel ground truth)"
        )
    if size is None:
        from xeval.data.io import image_size

        size = image_size(sample.image_path)
    return np.zeros(size, dtype=bool)


def load_masks(samples: Sequence[Sample]) -> list[np.ndarray]:
    """Native-resolution bool masks of ``samples`` (all-False for normal samples)."""
    return [load_mask(s) for s in samples]


def _load_one(sample: Sample, image_size: tuple[int, int], with_masks: bool) -> tuple:
    img = read_image(sample.image_path)
    native = (int(img.shape[0]), int(img.shape[1]))
    regions = load_regions(sample, native) if with_masks and sample.regions else ()
    if regions:
        mask = np.logical_or.reduce([r.mask for r in regions])
    else:
        mask = load_mask(sample, native) if with_masks else None
    return resize_image(img, image_size).transpose(2, 0, 1), mask, native, regions


def _batch_category(samples: Sequence[Sample], category: str | None) -> str:
    if category is not None:
        return category
    cats = sorted({s.category for s in samples})
    if len(cats) > 1:
        raise InputError(
            f"samples of a batch come from several categories {cats} "
            "(expected one category, or pass category=...)"
        )
    return cats[0]


def iter_batches(
    samples: Sequence[Sample],
    *,
    batch_size: int,
    image_size: tuple[int, int],
    with_masks: bool = True,
    category: str | None = None,
    num_workers: int = 0,
) -> Iterator[Record]:
    """Yield batches of loaded samples, in the order given.

    Parameters
    ----------
    samples:
        Samples to load (e.g. ``split.test``).
    batch_size:
        Samples per batch (the last batch may be smaller).
    image_size:
        ``(H, W)`` working resolution: every image is resized to it (bilinear,
        antialiased when downsampling).
    with_masks:
        Load masks at their **native** resolution (all-False for normal samples);
        False gives ``targets.masks = None`` (and allows anomalous samples without masks).
    category:
        Category recorded in the batch; by default the samples' common category.
    num_workers:
        Threads used to decode images (0: in the calling thread).

    Yields
    ------
    Record
        ``inputs``: ``ids``, ``category``, ``images (B, 3, H, W)`` float32 in [0, 1],
        ``native_sizes`` ``(H_i, W_i)``, ``video_ids`` / ``frame_index`` for video
        frames; ``targets``: ``labels (B,)`` int64, ``masks`` (list of bool
        ``(H_i, W_i)``, or None), ``defects``, and ``regions`` (per-defect ground truth,
        None when no sample has it).
    """
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"image_size must be (H, W) with positive ints, got {image_size!r}")
    samples = list(samples)
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    try:
        for start in range(0, len(samples), int(batch_size)):
            chunk = samples[start : start + int(batch_size)]
            cat = _batch_category(chunk, category)
            if pool is None:
                loaded = [_load_one(s, size, with_masks) for s in chunk]
            else:
                loaded = list(pool.map(lambda s: _load_one(s, size, with_masks), chunk))
            videos = [s.video for s in chunk]
            has_video = any(v is not None for v in videos)
            has_regions = with_masks and any(s.regions for s in chunk)
            inputs = Inputs(
                ids=[s.id for s in chunk],
                category=cat,
                images=np.stack([x[0] for x in loaded]).astype(np.float32, copy=False),
                native_sizes=[x[2] for x in loaded],
                video_ids=videos if has_video else None,
                frame_index=(
                    np.array([-1 if s.frame is None else s.frame for s in chunk], np.int64)
                    if has_video
                    else None
                ),
            )
            targets = Targets(
                labels=np.array([s.label for s in chunk], dtype=np.int64),
                masks=[x[1] for x in loaded] if with_masks else None,
                defects=[s.defect for s in chunk],
                regions=[x[3] for x in loaded] if has_regions else None,
            )
            yield Record(inputs, targets)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
