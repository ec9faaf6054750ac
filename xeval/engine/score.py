"""Score precomputed anomaly maps against a dataset's ground truth (``xeval score``).

Maps are laid out like the dataset's test split:
``<maps>/<category>/test/<defect>/<stem>.<ext>`` with ``ext`` in tiff/tif/npy/png (any
case). The tree is checked before anything is scored, and every problem is an
:class:`~xeval.errors.InputError` that names what is wrong:

- every category of the dataset (or of ``categories``) needs maps: a category without
  any (no folder, an empty one) is an error, or with ``allow_missing=True`` a row of NaN
  marked ``missing`` in ``note``, with a :class:`~xeval.errors.MissingDataWarning`;
  without ``categories``, a category folder of the maps that the dataset lacks is an
  error too;
- exactly one map file per test image: two files for one image (``000.tiff`` and
  ``000.npy``) are an error naming both; test images without a map and files that are
  not the map of a test image (another stem, defect or format, too deep, outside
  ``test/``) are listed by name (at most :data:`LIST_CAP` of each, then "and N more").
  Hidden files and folders (``.DS_Store``) are ignored;
- every map must be readable, numeric and real, 2-D (a single channel), non-empty and
  finite; a map of another size than its mask is resized bilinearly to the mask's
  native size (never the reverse) when both have the same aspect ratio up to one pixel
  of rounding (see :func:`same_aspect`), and is an error otherwise.

Image score = max of the map.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xeval.data.io import read_map
from xeval.data.loader import load_mask
from xeval.data.mvtec import list_categories, load_mvtec
from xeval.errors import InputError, MissingDataWarning
from xeval.metrics import ImageMetrics, PixelRanking, ThresholdMetrics
from xeval.metrics.resize import resize_to, same_aspect

#: Map file extensions (compared in lower case).
MAP_EXTENSIONS = (".tiff", ".tif", ".npy", ".png")
#: At most this many names are listed per kind of problem in an error message.
LIST_CAP = 10
_LAYOUT = "<maps>/<category>/test/<defect>/<id>.<tiff|tif|npy|png>"


def _listing(items, cap: int = LIST_CAP) -> str:
    """``a, b, c and 7 more``."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:cap])
    return shown + (f" and {len(items) - cap} more" if len(items) > cap else "")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


@dataclass
class CategoryMaps:
    """The map files found under ``<maps>/<category>``.

    ``maps`` maps ``(defect, stem)`` to the map files of that image (more than one is an
    error); ``others`` are the visible files that are not laid out as maps.
    """

    folder: Path
    maps: dict[tuple[str, str], list[Path]] = field(default_factory=dict)
    others: list[Path] = field(default_factory=list)

    @property
    def missing(self) -> bool:
        """No visible file at all: the category has no maps."""
        return not self.maps and not self.others


def index_maps(maps_dir: Path, category: str) -> CategoryMaps:
    """List the files of ``<maps_dir>/<category>`` (see the module docstring)."""
    folder = maps_dir / category
    found = CategoryMaps(folder)
    if not folder.is_dir():
        return found
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if _hidden(rel) or p.is_dir():
            continue
        parts = rel.parts
        if len(parts) == 3 and parts[0] == "test" and p.suffix.lower() in MAP_EXTENSIONS:
            found.maps.setdefault((parts[1], p.stem), []).append(p)
        else:
            found.others.append(p)
    return found


def _check_layout(maps_dir: Path, splits: dict, indexes: dict[str, CategoryMaps]) -> None:
    """One map file per test image, no other file: else one error listing every problem."""
    doubles, missing, extra = [], [], []
    for cat, split in splits.items():
        idx = indexes[cat]
        expected = {(s.defect, Path(s.image_path).stem): s for s in split.test}
        for key, s in expected.items():
            paths = idx.maps.get(key, [])
            if not paths:
                missing.append(s.id)
            elif len(paths) > 1:
                doubles.append(f"{s.id} ({' and '.join(str(p) for p in paths)})")
        unexpected = [p for key, ps in idx.maps.items() if key not in expected for p in ps]
        extra += sorted(p.relative_to(maps_dir).as_posix() for p in unexpected + idx.others)
    problems = []
    if doubles:
        problems.append(
            f"{len(doubles)} test image(s) with two or more map files (keep one per "
            f"image): {_listing(doubles)}"
        )
    if missing:
        problems.append(
            f"{len(missing)} test image(s) with no anomaly map (expected {_LAYOUT}): "
            f"{_listing(missing)}"
        )
    if extra:
        problems.append(
            f"{len(extra)} file(s) under {maps_dir} that are not the map of a test image "
            "(no test image has that defect and name, or the file is not a "
            f"{'/'.join(e[1:] for e in MAP_EXTENSIONS)} map in <category>/test/<defect>/): "
            f"{_listing(extra)}"
        )
    if problems:
        raise InputError("the maps do not match the test images: " + "; ".join(problems))


def load_map(path: Path, mask_shape: tuple[int, int], *, image: str = "") -> np.ndarray:
    """Read the map ``path`` of a test image whose mask has ``mask_shape`` and bring it to
    that shape (see the module docstring); every problem is an error naming the file."""
    amap = read_map(path)  # refuses archives, complex values; float64 kept exactly
    of = f" (test image {image})" if image else ""
    if amap.size == 0:
        raise InputError(f"map file {path}{of} is empty: shape {amap.shape}")
    bad = int(amap.size - np.count_nonzero(np.isfinite(amap)))
    if bad:
        raise InputError(
            f"map file {path}{of} holds {bad} NaN or infinite value(s); expected finite numbers"
        )
    if amap.shape != tuple(mask_shape):
        if not same_aspect(amap.shape, mask_shape):
            raise InputError(
                f"map file {path}{of} has shape {amap.shape} and its mask {tuple(mask_shape)}: "
                "their aspect ratios differ, so the map cannot be resized to the mask "
                "without distortion (expected the mask's shape, or the same aspect ratio "
                "at another resolution)"
            )
        try:
            amap = resize_to(amap, mask_shape)
        except InputError as exc:
            raise InputError(f"map file {path}{of}: {exc}") from exc
    return amap


def _load_pair(path: Path, sample) -> tuple[np.ndarray, np.ndarray]:
    mask = load_mask(sample)
    return mask, load_map(path, mask.shape, image=sample.id)


def _score_split(
    split,
    index: CategoryMaps,
    *,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    workers: int = 4,
) -> dict:
    pix = PixelRanking(fpr_limits=fpr_limits, mode=mode)
    img = ImageMetrics()
    thr = ThresholdMetrics(threshold=threshold) if threshold is not None else None
    ps, ist = pix.init(), img.init()
    ts = thr.init() if thr else None
    paths = [index.maps[(s.defect, Path(s.image_path).stem)][0] for s in split.test]
    with ThreadPoolExecutor(max_workers=workers) as ex:  # decoding releases the GIL
        pairs = ex.map(_load_pair, paths, split.test)
        for s, (mask, amap) in zip(split.test, pairs, strict=True):
            pix.update(ps, mask, amap)
            img.update(ist, [s.label], [float(amap.max())], ids=[s.id])
            if thr:
                thr.update(ts, mask, amap)
    out = {"n_images": len(split.test)}
    out.update(img.compute(ist))
    p = pix.compute(ps)
    for k in ("pixel_auroc", "pixel_aupr", *(f"aupro@{x:g}" for x in pix.fpr_limits), "iou_oracle"):
        out[k] = p.get(k, math.nan)
    out.update({k: v for k, v in p.items() if k.startswith("error_bound/")})
    if thr:
        t = thr.compute(ts)
        out.update({k: t[k] for k in ("pro@t", "iou@t", "dice@t", "iou_per_image@t")})
    return out


def _load_split(gt_dir: Path, category: str):
    split = load_mvtec(gt_dir, category, require_train=False)
    if not split.test:
        raise InputError(f"category {category!r} of {gt_dir} has no test images")
    return split


def score_category(
    maps_dir: Path,
    gt_dir: Path,
    category: str,
    *,
    fpr_limits=(0.3,),
    mode: str = "exact",
    threshold: float | None = None,
    workers: int = 4,
) -> dict:
    """All image and pixel metrics of one category, after checking its maps (see the
    module docstring)."""
    maps_dir, gt_dir = Path(maps_dir), Path(gt_dir)
    split = _load_split(gt_dir, category)
    index = index_maps(maps_dir, category)
    _check_layout(maps_dir, {category: split}, {category: index})
    return _score_split(
        split, index, fpr_limits=fpr_limits, mode=mode, threshold=threshold, workers=workers
    )


def _select_categories(maps_dir: Path, gt_dir: Path, categories) -> list[str]:
    known = list_categories(gt_dir)
    if categories is None:
        strays = sorted(
            p.name
            for p in maps_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in known
        )
        if strays:
            raise InputError(
                f"--maps {maps_dir} holds maps of categories that {gt_dir} does not have: "
                f"{_listing(strays)} (dataset categories: {_listing(known)}); rename them, "
                "or choose the categories to score with --categories"
            )
        return known
    cats = [str(c) for c in categories]
    doubles = sorted({c for c in cats if cats.count(c) > 1})
    if doubles:
        raise InputError(f"categories {cats} name {_listing(doubles)} more than once")
    unknown = [c for c in cats if c not in known]
    if unknown:
        raise InputError(
            f"categories {_listing(unknown)}: not categories of {gt_dir} "
            f"(its categories: {_listing(known)})"
        )
    return cats


def score_folder(
    maps_dir,
    gt_dir,
    *,
    categories=None,
    fpr_limits=(0.3,),
    mode="exact",
    threshold=None,
    allow_missing: bool = False,
) -> pd.DataFrame:
    """One row per category plus a ``mean`` row (unweighted mean over the scored
    categories); ``note`` says which categories are missing (``allow_missing=True``).

    ``categories`` defaults to every category of ``gt_dir``. The whole maps tree is
    checked (see the module docstring) before anything is scored.
    """
    maps_dir, gt_dir = Path(maps_dir), Path(gt_dir)
    if not maps_dir.is_dir():
        raise InputError(f"--maps {maps_dir} is not a folder (expected {_LAYOUT})")
    cats = _select_categories(maps_dir, gt_dir, categories)
    if "mean" in cats:
        raise InputError(
            f"{gt_dir} has a category named 'mean', which the table uses for the mean row"
        )
    indexes = {c: index_maps(maps_dir, c) for c in cats}
    missing = [c for c in cats if indexes[c].missing]
    if len(missing) == len(cats):
        raise InputError(
            f"no category of {gt_dir} has maps under {maps_dir} (expected {_LAYOUT}; "
            f"categories: {_listing(cats)})"
        )
    if missing:
        where = _listing(f"{c!r} ({maps_dir / c})" for c in missing)
        if not allow_missing:
            raise InputError(
                f"no maps for {len(missing)} of {len(cats)} categories: the maps folder of "
                f"{where} is missing or holds no map file (expected {_LAYOUT}); score the "
                "others with "
                "--categories, or pass --allow-missing to show them as missing (NaN)"
            )
        warnings.warn(
            f"no maps for categories {where}: they are shown as missing (NaN) and left out "
            "of the mean",
            MissingDataWarning,
            stacklevel=2,
        )
    present = [c for c in cats if c not in missing]
    splits = {c: _load_split(gt_dir, c) for c in present}
    _check_layout(maps_dir, splits, indexes)
    rows = []
    for c in cats:
        if c in missing:
            rows.append(
                {"category": c, "n_images": 0, "note": f"missing: no maps in {maps_dir / c}"}
            )
            continue
        r = _score_split(
            splits[c], indexes[c], fpr_limits=fpr_limits, mode=mode, threshold=threshold
        )
        rows.append({"category": c, **r, "note": ""})
    df = pd.DataFrame(rows)
    scored = df[~df["category"].isin(missing)]
    values = scored.drop(columns=["category", "note"])
    num = values.mean(numeric_only=True)
    mean = {"category": "mean", **num.to_dict()}
    mean["n_images"] = int(scored["n_images"].sum())
    notes = (
        [f"mean of {len(present)} of {len(cats)} categories (missing: {', '.join(missing)})"]
        if missing
        else []
    )
    for col in values.select_dtypes("number").columns:
        undefined = scored.loc[values[col].isna(), "category"].tolist()
        if undefined:
            notes.append(f"{col} undefined (NaN) in {', '.join(undefined)}: mean of the others")
    mean["note"] = "; ".join(notes)
    out = pd.concat([df, pd.DataFrame([mean])], ignore_index=True)
    return out[[c for c in out.columns if c != "note"] + ["note"]]
