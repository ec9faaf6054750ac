"""Helpers shared by the dataset readers: listing image files and up-front validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from xeval.data.io import IMAGE_EXTENSIONS, image_size, is_image_file, read_mask
from xeval.data.sample import Sample
from xeval.data.split import CategorySplit
from xeval.errors import DatasetError

_EXTS = ", ".join(IMAGE_EXTENSIONS)


def list_dir(folder: Path) -> list[Path]:
    """The entries of ``folder`` (DatasetError naming it when it cannot be listed)."""
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise DatasetError(
            f"cannot list folder {folder}: {type(exc).__name__}: {exc.strerror or exc} "
            "(expected a readable folder)"
        ) from exc


def subfolders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder`` (none if no folder)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in list_dir(folder) if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (empty if no folder)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in list_dir(folder) if is_image_file(p)), key=lambda p: p.name)


def check_utf8_name(path: Path) -> None:
    """File and folder names must be valid UTF-8: they become sample ids, which end up in
    reports and tables (a name that is not is shown with escapes)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = exc.object[exc.start].encode("utf-8", "surrogateescape")[:1]
        raise DatasetError(
            f"file name {str(path)!r} is not valid UTF-8 (byte 0x{byte.hex() or '??'}); "
            "expected UTF-8 file and folder names: rename it"
        ) from None


def sample_id(category: str, root: Path, image_path: Path) -> str:
    """``"<category>/<path relative to the category folder, without extension>"``."""
    rel = image_path.relative_to(root).with_suffix("")
    return f"{category}/{rel.as_posix()}"


def make_sample(
    *,
    category: str,
    root: Path,
    split: str,
    defect: str,
    image_path: Path,
    mask_path: Path | None = None,
) -> Sample:
    for p in (image_path, mask_path):
        if p is not None:
            check_utf8_name(p)
    label = 0 if defect == "good" else 1
    return Sample(
        id=sample_id(category, root, image_path),
        category=category,
        split=split,
        label=label,
        defect=defect,
        image_path=image_path,
        mask_path=mask_path,
    )


def check_nonempty(samples: Sequence[Sample], *, what: str, where: str) -> None:
    """Raise when ``samples`` is empty, naming the folder or pattern searched."""
    if not samples:
        raise DatasetError(
            f"the {what} is empty: no image found in {where} "
            f"(expected at least one file with extension {_EXTS})"
        )


def check_unique_ids(samples: Iterable[Sample]) -> None:
    """Raise when two files map to the same sample id (e.g. ``001.png`` and ``001.jpg``)."""
    by_id: dict[str, list[Path]] = {}
    for s in samples:
        by_id.setdefault(s.id, []).append(s.image_path)
    dups = {k: v for k, v in by_id.items() if len(v) > 1}
    if dups:
        k, paths = next(iter(dups.items()))
        raise DatasetError(
            f"sample id {k!r} is not unique: files {', '.join(map(str, paths))} "
            "(expected one image per file name stem in a folder)"
        )


def check_images_readable(samples: Iterable[Sample]) -> None:
    """Read every image header (raises DatasetError naming an unreadable file)."""
    for s in samples:
        image_size(s.image_path)


def check_masks(samples: Iterable[Sample]) -> None:
    """Every anomalous sample has a binary mask of the size of its image."""
    for s in samples:
        if s.label != 1:
            continue
        if s.mask_path is None:
            raise DatasetError(
                f"anomalous test image {s.image_path} has no ground-truth mask "
                "(expected a mask file for every defective image)"
            )
        size = image_size(s.image_path)
        mask = read_mask(s.mask_path)  # raises on non-binary values
        if mask.shape != size:
            raise DatasetError(
                f"mask file {s.mask_path} has size {mask.shape[0]}x{mask.shape[1]} (HxW) but "
                f"its image {s.image_path} is {size[0]}x{size[1]} "
                "(expected the mask at the image's native size)"
            )


def validate_split(
    split: CategorySplit,
    *,
    train_where: str,
    test_where: str,
    require_masks: bool = True,
    require_train: bool = True,
) -> None:
    """Run every up-front check on a freshly listed split.

    Parameters
    ----------
    split:
        The split to check.
    train_where, test_where:
        Where the images were looked for (folder or glob), for error messages.
    require_masks:
        Check that every anomalous test image has a binary mask of its size.
    """
    if require_train:
        check_nonempty(
            split.train, what=f"train set of category {split.category!r}", where=train_where
        )
    check_nonempty(split.test, what=f"test set of category {split.category!r}", where=test_where)
    check_unique_ids([*split.train, *split.test])
    bad = [s for s in split.train if s.label != 0]
    if bad:
        raise DatasetError(
            f"train image {bad[0].image_path} is labelled anomalous ({bad[0].defect!r}) "
            "(expected normal images only in the train set)"
        )
    check_images_readable([*split.train, *split.test])
    if require_masks:
        check_masks(split.test)


def describe_counts(samples: Iterable[Sample]) -> str:
    c = Counter(s.defect for s in samples)
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))


def category_dir(root, category: str, list_categories) -> Path:
    """``root/category`` after checking both exist; the error lists the categories
    ``list_categories(root)`` finds."""
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"dataset root {r} does not exist or is not a folder")
    cat_dir = r / category
    if not cat_dir.is_dir():
        try:
            avail = ", ".join(list_categories(r))
        except DatasetError:
            avail = "none"
        raise DatasetError(
            f"category folder {cat_dir} does not exist (category {category!r}; "
            f"categories found under {r}: {avail})"
        )
    return cat_dir
