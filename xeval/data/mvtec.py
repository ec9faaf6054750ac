"""Reader for the MVTec AD layout (and MVTec-like BTAD, MPDD, converted VisA).

Layout::

    <root>/<category>/train/good/<id>.<ext>
    <root>/<category>/test/good/<id>.<ext>
    <root>/<category>/test/<defect>/<id>.<ext>
    <root>/<category>/ground_truth/<defect>/<id>_mask.<ext>   (or <id>.<ext>)

``<ext>`` is any of :data:`~xeval.data.io.IMAGE_EXTENSIONS` (case-insensitive); a mask may
have another extension than its image (BTAD: ``.bmp`` images, ``.png`` masks). Masks
are 0/255 (or 0/1) at the image's native size; normal images have none.

Sample ids are ``"<category>/<split>/<defect>/<id>"``, e.g. ``"bottle/test/broken_large/000"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from xeval.data._common import (
    category_dir,
    list_dir,
    list_images,
    make_sample,
    subfolders,
    validate_split,
)
from xeval.data.io import IMAGE_EXTENSIONS, is_image_file
from xeval.data.sample import Sample
from xeval.data.split import CategorySplit
from xeval.errors import DatasetError
from xeval.registry import DATASETS

__all__ = ["list_categories", "load_mvtec", "find_mask"]


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")


def list_categories(root: str | os.PathLike) -> list[str]:
    """Sorted names of the category folders under ``root``.

    A category folder is a visible sub-folder holding ``train/`` or ``test/``.

    Raises
    ------
    DatasetError
        ``root`` is not a folder, or holds no category folder.
    """
    r = Path(root)
    _check_root(r)
    cats = sorted(
        p.name
        for p in list_dir(r)
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / "train").is_dir() or (p / "test").is_dir())
    )
    if not cats:
        raise DatasetError(
            f"dataset root {r} holds no category folder "
            "(expected <root>/<category>/train/good and <root>/<category>/test/<defect>)"
        )
    return cats


def find_mask(gt_dir: Path, stem: str) -> Path | None:
    """The mask of image ``stem`` in ``gt_dir``: ``<stem>_mask.<ext>`` first, then ``<stem>.<ext>``.

    Returns None when there is none.
    """
    if not gt_dir.is_dir():
        return None
    for name in (f"{stem}_mask", stem):
        for ext in IMAGE_EXTENSIONS:
            for e in (ext, ext.upper()):
                p = gt_dir / f"{name}{e}"
                if p.is_file():
                    return p
    # the extension in any other case (".Png"), as images are listed
    by_name = {}
    for p in sorted(list_dir(gt_dir), key=lambda p: p.name):
        if is_image_file(p):
            by_name.setdefault((p.stem, p.suffix.lower()), p)
    for name in (f"{stem}_mask", stem):
        for ext in IMAGE_EXTENSIONS:
            if (name, ext) in by_name:
                return by_name[name, ext]
    return None


def _test_samples(category: str, cat_dir: Path, *, validate: bool) -> list[Sample]:
    test_dir = cat_dir / "test"
    out: list[Sample] = []
    if not test_dir.is_dir():
        return out
    defects = subfolders(test_dir)
    for defect in defects:
        gt_dir = cat_dir / "ground_truth" / defect
        for img in list_images(test_dir / defect):
            mask = None if defect == "good" else find_mask(gt_dir, img.stem)
            if validate and defect != "good" and mask is None:
                raise DatasetError(
                    f"anomalous test image {img} has no ground-truth mask: looked for "
                    f"{gt_dir / (img.stem + '_mask.png')} or {gt_dir / (img.stem + '.png')} "
                    f"(any of {', '.join(IMAGE_EXTENSIONS)})"
                )
            out.append(
                make_sample(
                    category=category,
                    root=cat_dir,
                    split="test",
                    defect=defect,
                    image_path=img,
                    mask_path=mask,
                )
            )
    return out


def load_mvtec(
    root: str | os.PathLike,
    category: str,
    *,
    validate: bool = True,
    require_masks: bool = True,
    require_train: bool = True,
) -> CategorySplit:
    """List one category of an MVTec-AD-like dataset.

    Parameters
    ----------
    root:
        Dataset root (the folder holding the category folders).
    category:
        Category folder name.
    validate:
        Check up front (image headers only, masks fully): the category folder exists,
        train and test sets are not empty, every defective test image has a mask of its
        size, masks are binary, ids are unique. With False, only list the files.
    require_masks:
        With False, anomalous images without a mask are accepted (``mask_path=None``),
        for datasets with image-level labels only.
    require_train:
        With False, a category without ``train/good`` images is accepted (scoring
        precomputed maps needs the test split only).

    Returns
    -------
    CategorySplit
        Samples sorted by id (folder, then file name): deterministic.

    Raises
    ------
    DatasetError
        With the offending file or folder, the value found and what was expected.
    """
    cat_dir = category_dir(root, category, list_categories)
    train = [
        make_sample(category=category, root=cat_dir, split="train", defect="good", image_path=p)
        for p in list_images(cat_dir / "train" / "good")
    ]
    test = _test_samples(category, cat_dir, validate=validate and require_masks)
    split = CategorySplit(
        category=category,
        train=sorted(train, key=lambda s: s.id),
        test=sorted(test, key=lambda s: s.id),
        root=cat_dir.parent,
    )
    if validate:
        validate_split(
            split,
            train_where=str(cat_dir / "train" / "good"),
            test_where=str(cat_dir / "test") + "/<defect>/",
            require_masks=require_masks,
            require_train=require_train,
        )
    return split


@DATASETS.register(name="mvtec")
def read_mvtec(
    *,
    path: str,
    categories: list[str] | None = None,
    validate: bool = True,
    require_masks: bool = True,
    seed: int = 0,
) -> dict[str, CategorySplit]:
    """Dataset format ``mvtec``: MVTec AD and MVTec-like layouts (BTAD, MPDD, VisA
    converted) under ``path``; every category folder unless ``categories`` is given.
    ``seed`` is unused (the layout fixes the splits)."""
    cats = categories or list_categories(path)
    return {c: load_mvtec(path, c, validate=validate, require_masks=require_masks) for c in cats}
