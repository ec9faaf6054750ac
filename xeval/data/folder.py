"""A generic folder reader for datasets that are almost, but not quite, MVTec-like.

Images are found with glob patterns relative to ``root``; masks with a format pattern.

Mask pattern placeholders
-------------------------
``{defect}``
    Name of the folder holding the anomalous image (its defect type).
``{stem}``
    Image file name without extension (``"000"`` for ``test/crack/000.png``).
``{name}``
    Image file name with extension (``"000.png"``).
``{ext}``
    Image extension without the dot (``"png"``).

Example: BTAD-like ``mask_pattern="ground_truth/{defect}/{stem}.png"``; several
patterns may be given, the first existing file wins.
"""

from __future__ import annotations

import os
import string
from collections.abc import Sequence
from pathlib import Path

from xeval.data._common import make_sample, validate_split
from xeval.data.io import is_image_file
from xeval.data.split import CategorySplit
from xeval.errors import DatasetError
from xeval.registry import DATASETS

__all__ = ["load_folder"]


_FIELDS = ("defect", "stem", "name", "ext")


def _check_relative(root: Path, pattern, what: str, example: str) -> None:
    """``pattern`` is a non-empty string relative to ``root`` that stays inside it."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise DatasetError(
            f"{what} {pattern!r} under the dataset root {root} must be a non-empty string "
            f"(expected e.g. {example!r})"
        )
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise DatasetError(
            f"{what} {pattern!r} must be relative to the dataset root {root} and stay "
            f"inside it (expected e.g. {example!r})"
        )


def _glob(root: Path, pattern: str) -> list[Path]:
    """Image files matching ``pattern`` under ``root``, sorted by relative path."""
    _check_relative(root, pattern, "glob pattern", "train/good/*")
    try:
        found = [p for p in root.glob(pattern) if is_image_file(p)]
    except (ValueError, IndexError, NotImplementedError, OSError) as exc:
        raise DatasetError(
            f"glob pattern {pattern!r} under the dataset root {root} is not valid: "
            f"{type(exc).__name__}: {exc} (expected e.g. 'train/good/*' or 'train/**/*.png')"
        ) from exc
    return sorted(found, key=lambda p: p.as_posix())


def _check_mask_pattern(root: Path, pattern) -> None:
    """A mask pattern uses only the plain placeholders (no index, attribute, conversion
    or format spec) and names a path inside ``root``."""
    _check_relative(root, pattern, "mask pattern", "ground_truth/{defect}/{stem}_mask.png")
    expected = "(expected only the placeholders {defect}, {stem}, {name}, {ext})"
    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise DatasetError(
            f"mask pattern {pattern!r} of the dataset root {root} is not a valid format "
            f"string: {exc} {expected}"
        ) from exc
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "")
        shown += (f":{spec}" if spec else "") + "}"
        if field not in _FIELDS:
            raise DatasetError(
                f"mask pattern {pattern!r} of the dataset root {root} uses an unknown "
                f"placeholder {shown} {expected}"
            )
        if spec or conversion:
            raise DatasetError(
                f"mask pattern {pattern!r} of the dataset root {root} uses the placeholder "
                f"{shown} with a conversion or format spec {expected}"
            )


def _mask_for(root: Path, image: Path, patterns: Sequence[str]) -> tuple[Path | None, list[Path]]:
    """First existing mask among ``patterns`` (checked by :func:`_check_mask_pattern`)
    for ``image``, and the candidates tried."""
    fields = {
        "defect": image.parent.name,
        "stem": image.stem,
        "name": image.name,
        "ext": image.suffix[1:],
    }
    tried: list[Path] = []
    for pattern in patterns:
        rel = pattern.format(**fields)
        cand = root / rel
        tried.append(cand)
        if cand.is_file():
            return cand, tried
    return None, tried


def load_folder(
    root: str | os.PathLike,
    *,
    category: str = "default",
    train_glob: str = "train/good/*",
    test_normal_glob: str = "test/good/*",
    test_anomalous_glob: str = "test/*/*",
    mask_pattern: str | Sequence[str] | None = "ground_truth/{defect}/{stem}_mask.png",
    validate: bool = True,
) -> CategorySplit:
    """List a dataset laid out in folders described by glob patterns.

    Parameters
    ----------
    root:
        Dataset folder; every pattern is relative to it.
    category:
        Category name given to every sample.
    train_glob:
        Normal training images (``pathlib`` glob; ``**`` recurses).
    test_normal_glob:
        Normal test images.
    test_anomalous_glob:
        Anomalous test images; files also matched by ``test_normal_glob`` or
        ``train_glob`` are excluded (so the default ``test/*/*`` skips ``test/good``).
        The defect type is the name of the image's parent folder; images in a folder
        named ``good`` are taken as normal.
    mask_pattern:
        Mask path relative to ``root``, a format string with the placeholders
        ``{defect}``, ``{stem}``, ``{name}``, ``{ext}`` (module docstring); a list of
        patterns is tried in order; None when the dataset has no pixel ground truth
        (then anomalous samples have ``mask_path=None`` and masks are not required).
    validate:
        Check up front as :func:`~xeval.data.mvtec.load_mvtec` does.

    Returns
    -------
    CategorySplit
        Sample ids are ``"<category>/<path relative to root without extension>"``.

    Raises
    ------
    DatasetError
        Missing root, empty split, missing / mis-sized / non-binary mask, duplicate ids.
    """
    r = Path(root)
    if not r.is_dir():
        raise DatasetError(f"dataset root {r} does not exist or is not a folder")
    patterns: list[str] = (
        []
        if mask_pattern is None
        else [mask_pattern]
        if isinstance(mask_pattern, str)
        else list(mask_pattern)
    )
    for pattern in patterns:
        _check_mask_pattern(r, pattern)
    train_files = _glob(r, train_glob)
    normal_files = _glob(r, test_normal_glob)
    taken = set(train_files) | set(normal_files)
    anomalous_files = [p for p in _glob(r, test_anomalous_glob) if p not in taken]

    def mk(split: str, defect: str, p: Path, mask: Path | None = None):
        return make_sample(
            category=category, root=r, split=split, defect=defect, image_path=p, mask_path=mask
        )

    train = [mk("train", "good", p) for p in train_files]
    test = [mk("test", "good", p) for p in normal_files]
    for p in anomalous_files:
        if p.parent.name == "good":  # a normal image the normal glob did not select
            test.append(mk("test", "good", p))
            continue
        mask, tried = _mask_for(r, p, patterns) if patterns else (None, [])
        if validate and patterns and mask is None:
            raise DatasetError(
                f"anomalous test image {p} has no ground-truth mask: looked for "
                f"{', '.join(map(str, tried))} (expected a mask file for every defective image)"
            )
        test.append(mk("test", p.parent.name, p, mask))
    split = CategorySplit(
        category=category,
        train=sorted(train, key=lambda s: s.id),
        test=sorted(test, key=lambda s: s.id),
        root=r,
    )
    if validate:
        validate_split(
            split,
            train_where=f"{r}/{train_glob}",
            test_where=f"{r}/{test_normal_glob} and {r}/{test_anomalous_glob}",
            require_masks=bool(patterns),
        )
    return split


@DATASETS.register(name="folder")
def read_folder(
    *,
    path: str,
    category: str = "default",
    train_glob: str = "train/good/*",
    test_normal_glob: str = "test/good/*",
    test_anomalous_glob: str = "test/*/*",
    mask_pattern: str | list[str] | None = "ground_truth/{defect}/{stem}_mask.png",
    validate: bool = True,
    seed: int = 0,
) -> dict[str, CategorySplit]:
    """Dataset format ``folder``: any layout described by glob patterns (one category);
    see :func:`load_folder`. ``seed`` is unused."""
    return {
        category: load_folder(
            path,
            category=category,
            train_glob=train_glob,
            test_normal_glob=test_normal_glob,
            test_anomalous_glob=test_anomalous_glob,
            mask_pattern=mask_pattern,
            validate=validate,
        )
    }
