"""Reader for the MVTec LOCO AD layout (logical and structural anomalies, one ground-truth
file per defect).

Layout::

    <root>/<category>/train/good/<id>.png
    <root>/<category>/validation/good/<id>.png
    <root>/<category>/test/good/<id>.png
    <root>/<category>/test/<type>/<id>.png           (logical_anomalies, structural_anomalies)
    <root>/<category>/ground_truth/<type>/<id>/000.png, 001.png, ...
    <root>/<category>/defects_config.json

Each ground-truth PNG marks **one** defect: its pixels are 0 or the defect's
``pixel_value``. ``defects_config.json`` is a list of entries ``{"defect_name": str,
"pixel_value": int 1..255, "saturation_threshold": number, "relative_saturation": bool}``;
the pixel value of a file selects its entry, whose saturation threshold is the sPRO
saturation of that defect (:mod:`xeval.metrics.spro`): a fraction of the defect's area when
relative (``floor(threshold * area)`` pixels), else a number of pixels (at most the area).

Every anomalous test sample gets one :class:`~xeval.data.sample.RegionRef` per
ground-truth file (sorted by name); its mask is their union. Sample ids are
``"<category>/<split>/<type>/<id>"``, e.g. ``"pushpins/test/logical_anomalies/003"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from xeval.data._common import (
    category_dir,
    check_images_readable,
    list_dir,
    list_images,
    make_sample,
    subfolders,
    validate_split,
)
from xeval.data.io import _single_channel, image_size
from xeval.data.sample import RegionRef, Sample
from xeval.data.split import CategorySplit
from xeval.data.tiny import _save
from xeval.errors import DatasetError, InputError
from xeval.registry import DATASETS

__all__ = [
    "LocoDefect",
    "list_loco_categories",
    "load_mvtec_loco",
    "read_defects_config",
    "write_tiny_loco",
]

CONFIG_NAME = "defects_config.json"
_KEYS = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
_EXPECTED_ENTRY = (
    'expected a list of {"defect_name": str, "pixel_value": int 1..255, '
    '"saturation_threshold": number, "relative_saturation": bool}'
)


@dataclass(frozen=True)
class LocoDefect:
    """One entry of ``defects_config.json``."""

    name: str
    pixel_value: int
    saturation_threshold: float
    relative: bool


# --------------------------------------------------------------------------- config
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_defects_config(path: str | os.PathLike) -> dict[int, LocoDefect]:
    """Read and check a ``defects_config.json``; returns pixel value -> entry.

    Checks: a JSON list of objects with the keys ``defect_name`` (non-empty string),
    ``pixel_value`` (int in 1..255, unique), ``relative_saturation`` (bool) and
    ``saturation_threshold`` (a number in (0, 1] when relative, else an int > 0: a
    number of pixels).

    Raises
    ------
    DatasetError
        Naming the file, the entry, the value found and what was expected.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"defects configuration {p} does not exist ({_EXPECTED_ENTRY})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatasetError(
            f"cannot read defects configuration {p}: {type(exc).__name__}: {exc} "
            f"({_EXPECTED_ENTRY})"
        ) from exc
    if not isinstance(data, list) or not data:
        raise DatasetError(
            f"defects configuration {p} holds {type(data).__name__} "
            f"{str(data)[:60]!r} ({_EXPECTED_ENTRY}, not empty)"
        )
    out: dict[int, LocoDefect] = {}
    for i, e in enumerate(data):
        where = f"defects configuration {p}, entry {i}"
        if not isinstance(e, dict):
            raise DatasetError(f"{where} is {type(e).__name__} {e!r} ({_EXPECTED_ENTRY})")
        missing = [k for k in _KEYS if k not in e]
        if missing:
            raise DatasetError(f"{where} lacks key(s) {missing} ({_EXPECTED_ENTRY})")
        name, value = e["defect_name"], e["pixel_value"]
        thr, rel = e["saturation_threshold"], e["relative_saturation"]
        if not isinstance(name, str) or not name:
            raise DatasetError(f"{where}: defect_name is {name!r} (expected a non-empty string)")
        if not _is_int(value) or not 1 <= value <= 255:
            raise DatasetError(
                f"{where} ({name!r}): pixel_value is {value!r} (expected an int in 1..255)"
            )
        if not isinstance(rel, bool):
            raise DatasetError(
                f"{where} ({name!r}): relative_saturation is {rel!r} (expected true or false)"
            )
        if rel:
            ok = (isinstance(thr, float) or _is_int(thr)) and 0.0 < thr <= 1.0
            if not ok:
                raise DatasetError(
                    f"{where} ({name!r}): saturation_threshold is {thr!r} (expected a "
                    "fraction of the defect's area in (0, 1] since relative_saturation is true)"
                )
        elif not _is_int(thr) or thr <= 0:
            raise DatasetError(
                f"{where} ({name!r}): saturation_threshold is {thr!r} (expected an int > 0, "
                "a number of pixels, since relative_saturation is false)"
            )
        if value in out:
            raise DatasetError(
                f"{where} ({name!r}): pixel_value {value} is already used by defect "
                f"{out[value].name!r} (expected unique pixel values)"
            )
        out[value] = LocoDefect(
            name=name, pixel_value=int(value), saturation_threshold=float(thr), relative=rel
        )
    return out


# ------------------------------------------------------------------------ ground truth
def _gt_value_and_size(path: Path) -> tuple[int, tuple[int, int]]:
    """The single non-zero value of a one-defect ground-truth file and its ``(H, W)``.

    8-bit gray and palette files are counted with Pillow's histogram (no array copy);
    other modes through their pixel array.
    """
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.mode in ("L", "P"):
                hist = img.histogram()[:256]
                values = [v for v in range(1, 256) if hist[v]]
            else:
                arr = _single_channel(np.asarray(img), path, "ground-truth file")
                if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
                    raise DatasetError(
                        f"ground-truth file {path} holds dtype {arr.dtype} (expected integers)"
                    )
                values = np.unique(arr[arr != 0]).astype(np.int64).tolist()
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(
            f"cannot read ground-truth file {path}: {type(exc).__name__}: {exc} "
            "(expected a single-channel PNG)"
        ) from exc
    if len(values) != 1:
        found = "no defect pixel (all 0)" if not values else f"values {values[:8]}"
        raise DatasetError(
            f"ground-truth file {path} holds {found} besides 0 (expected 0 and exactly one "
            "defect value, the defect's pixel_value in defects_config.json)"
        )
    return int(values[0]), (int(h), int(w))


def _gt_files(gt_dir: Path) -> list[Path]:
    if not gt_dir.is_dir():
        return []
    return sorted(
        (p for p in list_dir(gt_dir) if p.suffix.lower() == ".png" and p.name[0] != "."),
        key=lambda p: p.name,
    )


def _regions(
    img: Path, gt_dir: Path, config: dict[int, LocoDefect], config_path: Path, *, validate: bool
) -> tuple[RegionRef, ...]:
    files = _gt_files(gt_dir)
    if not files:
        if validate:
            why = "is empty" if gt_dir.is_dir() else "does not exist"
            raise DatasetError(
                f"anomalous test image {img} has no ground truth: folder {gt_dir} {why} "
                "(expected one PNG per defect: 000.png, 001.png, ...)"
            )
        return ()
    size = image_size(img) if validate else None
    out = []
    for f in files:
        value, gt_size = _gt_value_and_size(f)
        entry = config.get(value)
        if entry is None:
            raise DatasetError(
                f"ground-truth file {f} marks its defect with value {value}, which is not a "
                f"pixel_value of {config_path} (expected one of {sorted(config)})"
            )
        if size is not None and gt_size != size:
            raise DatasetError(
                f"ground-truth file {f} has size {gt_size[0]}x{gt_size[1]} (HxW) but its image "
                f"{img} is {size[0]}x{size[1]} (expected the image's native size)"
            )
        out.append(
            RegionRef(
                path=f,
                saturation=entry.saturation_threshold,
                relative=entry.relative,
                defect=entry.name,
                value=value,
            )
        )
    return tuple(out)


def _check_orphan_gt(cat_dir: Path, test: list[Sample]) -> None:
    """Every ground-truth folder belongs to an anomalous test image."""
    gt_root = cat_dir / "ground_truth"
    if not gt_root.is_dir():
        return
    have = {(s.defect, s.image_path.stem) for s in test if s.label == 1}
    for kind in subfolders(gt_root):
        for name in subfolders(gt_root / kind):
            d = gt_root / kind / name
            if (kind, name) not in have:
                raise DatasetError(
                    f"ground-truth folder {d} has no anomalous test image "
                    f"(expected {cat_dir / 'test' / kind / name}.png)"
                )


# -------------------------------------------------------------------------- listing
def list_loco_categories(root: str | os.PathLike) -> list[str]:
    """Sorted names of the category folders under ``root`` (visible sub-folders holding
    ``train/``, ``test/`` or a ``defects_config.json``).

    Raises
    ------
    DatasetError
        ``root`` is not a folder, or holds no category folder.
    """
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"dataset root {r} does not exist or is not a folder")
    cats = sorted(
        p.name
        for p in list_dir(r)
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / "train").is_dir() or (p / "test").is_dir() or (p / CONFIG_NAME).is_file())
    )
    if not cats:
        raise DatasetError(
            f"dataset root {r} holds no category folder (expected "
            f"<root>/<category>/{{train,validation,test}}/... and <category>/{CONFIG_NAME})"
        )
    return cats


def _good(category: str, cat_dir: Path, split: str) -> list[Sample]:
    return [
        make_sample(category=category, root=cat_dir, split=split, defect="good", image_path=p)
        for p in list_images(cat_dir / split / "good")
    ]


def load_mvtec_loco(
    root: str | os.PathLike, category: str, *, validate: bool = True
) -> CategorySplit:
    """List one category of MVTec LOCO AD.

    Parameters
    ----------
    root:
        Dataset root (the folder holding the category folders).
    category:
        Category folder name (``"breakfast_box"``, ``"pushpins"``...).
    validate:
        Check up front: train and test sets not empty, ids unique, images readable
        (headers), every anomalous test image has a ground-truth folder with at least one
        PNG of its size, no ground-truth folder without its image. The configuration and
        the values of the ground-truth files are always checked: each file is read to find
        its defect (they are small), whatever ``validate`` says.

    Returns
    -------
    CategorySplit
        ``train`` = ``train/good``, ``validation`` = ``validation/good``, ``test`` =
        ``test/*`` (label 0 for ``good``, else 1 with ``defect`` = the folder name); each
        anomalous sample has ``regions`` (one per ground-truth file) and no
        ``mask_path``. Sorted by id: deterministic.

    Raises
    ------
    DatasetError
        Naming the offending file or folder, the value found and what was expected.
    """
    cat_dir = category_dir(root, category, list_loco_categories)
    config_path = cat_dir / CONFIG_NAME
    config = read_defects_config(config_path)
    test: list[Sample] = []
    test_dir = cat_dir / "test"
    types = subfolders(test_dir)
    for kind in types:
        for img in list_images(test_dir / kind):
            s = make_sample(
                category=category, root=cat_dir, split="test", defect=kind, image_path=img
            )
            if s.label == 1:
                gt_dir = cat_dir / "ground_truth" / kind / img.stem
                regions = _regions(img, gt_dir, config, config_path, validate=validate)
                s = replace(s, regions=regions)
            test.append(s)
    split = CategorySplit(
        category=category,
        train=sorted(_good(category, cat_dir, "train"), key=lambda s: s.id),
        test=sorted(test, key=lambda s: s.id),
        root=cat_dir.parent,
        validation=sorted(_good(category, cat_dir, "validation"), key=lambda s: s.id),
    )
    if validate:
        validate_split(
            split,
            train_where=str(cat_dir / "train" / "good"),
            test_where=str(cat_dir / "test") + "/<type>/",
            require_masks=False,
        )
        check_images_readable(split.validation)
        _check_orphan_gt(cat_dir, split.test)
    return split


@DATASETS.register(name="mvtec_loco")
def read_mvtec_loco(
    *,
    path: str,
    categories: list[str] | None = None,
    validate: bool = True,
    seed: int = 0,
) -> dict[str, CategorySplit]:
    """Dataset format ``mvtec_loco``: MVTec LOCO AD under ``path`` (per-defect ground
    truth with sPRO saturation thresholds, shipped validation split); every category
    folder unless ``categories`` is given. ``seed`` is unused (the layout fixes the
    splits)."""
    cats = categories or list_loco_categories(path)
    return {c: load_mvtec_loco(path, c, validate=validate) for c in cats}


# ------------------------------------------------------------------------- fixture
#: The defects of :func:`write_tiny_loco`: one relative and one absolute saturation.
TINY_DEFECTS = (
    {
        "defect_name": "missing_part",
        "pixel_value": 255,
        "saturation_threshold": 0.5,
        "relative_saturation": True,
    },
    {
        "defect_name": "extra_part",
        "pixel_value": 254,
        "saturation_threshold": 12,
        "relative_saturation": False,
    },
)
# Rectangle sizes cycled over the defects written (areas 6, 20, 9, 30): with the
# thresholds above both the capped (area < 12) and the uncapped absolute case occur.
_TINY_BOXES = ((2, 3), (4, 5), (3, 3), (5, 6))


def write_tiny_loco(
    root: str | os.PathLike,
    *,
    categories: Sequence[str] = ("a",),
    n_train: int = 3,
    n_validation: int = 2,
    n_good: int = 2,
    n_per_type: int = 2,
    size: tuple[int, int] = (16, 20),
    seed: int = 0,
) -> Path:
    """Write a tiny dataset in MVTec LOCO AD layout under ``root`` and return ``root``.

    Each category gets :data:`TINY_DEFECTS` as ``defects_config.json`` (``missing_part``,
    value 255, relative saturation 0.5; ``extra_part``, value 254, 12 pixels), and
    ``n_per_type`` images in each of ``test/logical_anomalies`` and
    ``test/structural_anomalies``: image ``i`` has ``1 + i % 2`` defects (rectangles that
    may overlap), each written as its own ground-truth PNG ``ground_truth/<type>/<id>/
    00k.png`` holding 0 and the defect's pixel value. Logical images use
    ``missing_part`` first, structural ones ``extra_part`` first.

    Parameters
    ----------
    root:
        Output folder (created; existing files with the same names are overwritten).
    categories:
        Category folder names.
    n_train, n_validation, n_good, n_per_type:
        Normal train, validation and test images; anomalous test images per type.
    size:
        ``(H, W)`` of every image (at least 8x8).
    seed:
        Seed of the random draws (same seed: same files).
    """
    from xeval.data.tiny import noise_texture

    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 8:
        raise InputError(f"size must be at least (8, 8), got {size!r}")
    r = Path(root)
    rng = np.random.default_rng(seed)
    box = 0
    for cat in categories:
        base = r / cat
        base.mkdir(parents=True, exist_ok=True)
        (base / CONFIG_NAME).write_text(json.dumps(list(TINY_DEFECTS), indent=2) + "\n")
        for split, n in (("train", n_train), ("validation", n_validation), ("test", n_good)):
            for i in range(n):
                _save(base / split / "good" / f"{i:03d}.png", noise_texture((h, w), rng))
        for kind, first in (("logical_anomalies", 0), ("structural_anomalies", 1)):
            for i in range(n_per_type):
                img = noise_texture((h, w), rng)
                for k in range(1 + i % 2):
                    d = TINY_DEFECTS[(first + k) % len(TINY_DEFECTS)]
                    bh, bw = _TINY_BOXES[box % len(_TINY_BOXES)]
                    box += 1
                    y = int(rng.integers(0, h - bh + 1))
                    x = int(rng.integers(0, w - bw + 1))
                    gt = np.zeros((h, w), np.uint8)
                    gt[y : y + bh, x : x + bw] = d["pixel_value"]
                    img[y : y + bh, x : x + bw] = 255 - img[y : y + bh, x : x + bw]
                    _save(base / "ground_truth" / kind / f"{i:03d}" / f"{k:03d}.png", gt)
                _save(base / "test" / kind / f"{i:03d}.png", img)
    return r
