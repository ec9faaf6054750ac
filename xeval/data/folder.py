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
from collections.abc import Sequence
from pathlib import Path

from xeval.data._common import make_sample, validate_split
from xeval.data.io import is_image_file
from xeval.data.split import CategorySplit
from xeval.errors import DatasetError
from xeval.registry import DATASETS

__all__ = ["load_folder"]


def _glob(root: Path, pattern: str) -> list[Path]:
    """Image files matching ``pattern`` under ``root``, sorted by relative path."""
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise DatasetError(
            f"glob pattern {pattern!r} must be relative to the dataset root {root} "
            "(expected e.g. 'train/good/*')"
        )
    return sorted((p for p in root.glob(pattern) if is_image_file(p)), key=lambda p: p.as_posix())


def _mask_for(root: Path, image: Path, patterns: Sequence[str]) -> tuple[Path | None, list[Path]]:
    """First existing mask among ``patterns`` for ``image``, and the candidates tried."""
    fields = {
        "defect": image.parent.name,
        "stem": image.stem,
        "name": image.name,
        "ext": image.suffix[1:],
    }
    tried: list[Path] = []
    for pattern in patterns:
        try:
            rel = pattern.format(**fields)
        except (KeyError, IndexError) as exc:
            raise DatasetError(
                f"mask pattern {pattern!r} uses an unknown placeholder {exc} "
                "(expected only {defect}, {stem}, {name}, {ext})"
            ) from exc
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
