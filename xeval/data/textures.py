"""The built-in benchmark ``textures``: real photographs with synthetic defects.

Each category is one texture photograph shipped inside scikit-image (on disk, no
download): ``brick``, ``grass``, ``gravel`` (grey, CC0) and ``tissue`` (colour,
immunohistochemistry, no known copyright restrictions). Tiles are cut at the photo's
native resolution; the **top 60 %** of the photo gives the training tiles and the
**bottom 40 %** the test tiles (disjoint areas); crops are random inside each area,
with random horizontal / vertical flips. Test tiles are normal (``good``) or carry one
synthetic defect per tile (:mod:`xeval.data.defects`: ``scratch``, ``stain``,
``cut_paste``, ``hole``) with an exact pixel mask, placed uniformly over the tile (every
pixel equally likely to be defective, borders included; defects may be cut by the
border), so a centre prior is no better than chance (version 2; version 1 put about
48 % of the mask pixels in the central quarter of the area).

The dataset is written once, in MVTec AD layout (png images, 0/255 png masks
``ground_truth/<kind>/<id>_mask.png``), under a cache folder whose name encodes the
version, the parameters and the seed, and is read with
:func:`~xeval.data.mvtec.load_mvtec`. It is built in a temporary folder renamed
atomically when complete: an interrupted build never leaves a dataset that looks
complete. Same seed and parameters: byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from xeval.data.defects import DEFECT_KINDS, make_defect
from xeval.data.mvtec import load_mvtec
from xeval.data.split import CategorySplit
from xeval.errors import DatasetError, InputError
from xeval.progress import progress
from xeval.registry import DATASETS
from xeval.rng import rng as make_rng

__all__ = [
    "TEXTURES_VERSION",
    "CATEGORIES",
    "QUICK_CATEGORIES",
    "DEFECT_KINDS",
    "build_textures",
    "load_textures",
    "default_cache_dir",
    "textures_params",
]

#: Bump when the generated content changes (it is part of the cache key).
TEXTURES_VERSION = 2

#: category -> scikit-image data function giving the photograph.
_SOURCES: dict[str, str] = {
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "tissue": "immunohistochemistry",
}
_LICENSES: dict[str, str] = {
    "brick": "CC0 (CC0Textures Bricks25, via scikit-image data)",
    "grass": "CC0 (DeviantArt linolafett Grass-01, via scikit-image data)",
    "gravel": "CC0 (CC0Textures Gravel04, via scikit-image data)",
    "tissue": "no known copyright restrictions (CMMI IHC image, via scikit-image data)",
}
CATEGORIES: tuple[str, ...] = tuple(_SOURCES)
QUICK_CATEGORIES: tuple[str, ...] = ("brick", "gravel", "tissue")
TRAIN_FRACTION = 0.6

_DEFAULTS = {"tile": 128, "n_train": 60, "n_test_good": 20, "n_test_defect_per_kind": 10}
_QUICK = {"tile": 64, "n_train": 12, "n_test_good": 4, "n_test_defect_per_kind": 2}
_CARD = "dataset.json"


def default_cache_dir() -> Path:
    """``$XEVAL_CACHE`` if set, else ``~/.cache/xeval``."""
    env = os.environ.get("XEVAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xeval"


@cache
def _photo(category: str) -> np.ndarray:
    """The category's photograph as uint8 ``(H, W, C)``, C = 1 (grey) or 3."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, _SOURCES[category])())
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3]
    img.setflags(write=False)
    return img


def _regions(category: str, tile: int) -> dict[str, tuple[int, int]]:
    """Row ranges ``[y0, y1)`` of the train and test areas of the photograph."""
    h, w = _photo(category).shape[:2]
    cut = int(round(TRAIN_FRACTION * h))
    regions = {"train": (0, cut), "test": (cut, h)}
    for name, (y0, y1) in regions.items():
        if y1 - y0 < tile or w < tile:
            raise InputError(
                f"tile={tile} is larger than the {name} area of the {category!r} photograph "
                f"({y1 - y0}x{w}) (expected tile <= {min(h - cut, cut, w)})"
            )
    return regions


def _crop(photo: np.ndarray, rows: tuple[int, int], tile: int, rng: np.random.Generator):
    """A random ``tile x tile`` crop inside ``rows``, randomly flipped."""
    y = int(rng.integers(rows[0], rows[1] - tile + 1))
    x = int(rng.integers(0, photo.shape[1] - tile + 1))
    out = photo[y : y + tile, x : x + tile]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    return np.ascontiguousarray(out)


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """An independent stream per (seed, category, part): changing one count keeps the rest."""
    return make_rng(int(seed), *keys)


def _source_patch(category: str, tile: int, rng: np.random.Generator) -> np.ndarray:
    """A float patch of another texture (for ``cut_paste``)."""
    others = [c for c in CATEGORIES if c != category]
    other = others[int(rng.integers(len(others)))]
    photo = _photo(other)
    return _crop(photo, (0, photo.shape[0]), tile, rng).astype(np.float64) / 255.0


def _save_png(path: Path, arr: np.ndarray) -> None:
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format="PNG", compress_level=6)


def _write_category(out: Path, category: str, params: dict, seed: int) -> dict:
    tile = params["tile"]
    photo = _photo(category)
    regions = _regions(category, tile)
    cat = out / category
    counts: dict[str, int] = {}
    folder = cat / "train" / "good"
    folder.mkdir(parents=True)
    rng = _rng(seed, category, "train")
    for i in range(params["n_train"]):
        _save_png(folder / f"{i:03d}.png", _crop(photo, regions["train"], tile, rng))
    counts["train/good"] = params["n_train"]
    folder = cat / "test" / "good"
    folder.mkdir(parents=True)
    rng = _rng(seed, category, "test", "good")
    for i in range(params["n_test_good"]):
        _save_png(folder / f"{i:03d}.png", _crop(photo, regions["test"], tile, rng))
    counts["test/good"] = params["n_test_good"]
    for kind in params["defects"]:
        folder, gt = cat / "test" / kind, cat / "ground_truth" / kind
        folder.mkdir(parents=True)
        gt.mkdir(parents=True)
        rng = _rng(seed, category, "test", kind)
        for i in range(params["n_test_defect_per_kind"]):
            clean = _crop(photo, regions["test"], tile, rng)
            source = _source_patch(category, tile, rng) if kind == "cut_paste" else None
            img, mask = make_defect(kind, clean, rng, source=source)
            _save_png(folder / f"{i:03d}.png", img)
            _save_png(gt / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
        counts[f"test/{kind}"] = params["n_test_defect_per_kind"]
    return counts


def textures_params(
    *,
    quick: bool = False,
    categories: Sequence[str] | None = None,
    defects: Sequence[str] | None = None,
    tile: int | None = None,
    n_train: int | None = None,
    n_test_good: int | None = None,
    n_test_defect_per_kind: int | None = None,
) -> dict:
    """The resolved build parameters (defaults filled in), validated."""
    base = dict(_QUICK if quick else _DEFAULTS)
    given = {
        "tile": tile,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_test_defect_per_kind": n_test_defect_per_kind,
    }
    for k, v in given.items():
        if v is not None and (not isinstance(v, numbers.Integral) or isinstance(v, bool)):
            raise InputError(f"{k} must be an integer, got {v!r}")
    base.update({k: int(v) for k, v in given.items() if v is not None})
    for what, names in (("categories", categories), ("defects", defects)):
        if names is not None and (
            isinstance(names, str) or not all(isinstance(n, str) for n in names)
        ):
            raise InputError(f"{what} must be a list of names, got {names!r}")
    cats = (
        list(categories)
        if categories is not None
        else list(QUICK_CATEGORIES if quick else CATEGORIES)
    )
    kinds = list(defects) if defects is not None else list(DEFECT_KINDS)
    for c in cats:
        if c not in _SOURCES:
            raise InputError(f"unknown textures category {c!r} (expected one of {CATEGORIES})")
    for k in kinds:
        if k not in DEFECT_KINDS:
            raise InputError(f"unknown defect kind {k!r} (expected one of {DEFECT_KINDS})")
    if not cats or not kinds:
        raise InputError("categories and defects must not be empty")
    if len(set(cats)) != len(cats) or len(set(kinds)) != len(kinds):
        raise InputError(f"duplicate categories or defects: {cats}, {kinds}")
    if base["tile"] < 16:
        raise InputError(f"tile must be >= 16 pixels, got {base['tile']}")
    for k in ("n_train", "n_test_good", "n_test_defect_per_kind"):
        if base[k] < 1:
            raise InputError(f"{k} must be >= 1, got {base[k]}")
    return {**base, "categories": cats, "defects": kinds}


def _cache_key(params: dict, seed: int) -> str:
    blob = json.dumps({**params, "version": TEXTURES_VERSION}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    return f"textures-v{TEXTURES_VERSION}-t{params['tile']}-seed{seed}-{digest}"


def _card(params: dict, seed: int, counts: dict) -> dict:
    return {
        "name": "textures",
        "format": "mvtec",
        "version": TEXTURES_VERSION,
        "seed": seed,
        "params": params,
        "categories": params["categories"],
        "defect_kinds": params["defects"],
        "counts": counts,
        "sources": {c: f"skimage.data.{_SOURCES[c]}()" for c in params["categories"]},
        "licenses": {c: _LICENSES[c] for c in params["categories"]},
        "split": f"train tiles from the top {TRAIN_FRACTION:.0%} of each photograph, "
        "test tiles from the rest (disjoint areas)",
        "generator": "xeval.data.textures.build_textures",
    }


def build_textures(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    quick: bool = False,
    categories: Sequence[str] | None = None,
    defects: Sequence[str] | None = None,
    tile: int | None = None,
    n_train: int | None = None,
    n_test_good: int | None = None,
    n_test_defect_per_kind: int | None = None,
) -> Path:
    """Build (once) the ``textures`` benchmark and return its dataset root.

    Parameters
    ----------
    root:
        Cache folder; the dataset goes to ``root/<key>`` where the key holds the version,
        the tile size, the seed and a hash of all parameters. Default
        :func:`default_cache_dir` ``/ "textures"``.
    seed:
        Seed of every random draw (crops, flips, defects).
    quick:
        Tiny version for tests: categories ``brick, gravel, tissue``, tile 64,
        12 train, 4 good and 2 per defect kind per category. Explicit arguments win.
    categories:
        Subset of :data:`CATEGORIES` (default all four).
    defects:
        Subset of :data:`~xeval.data.defects.DEFECT_KINDS` (default all four).
    tile:
        Tile side in pixels (native resolution, no resampling). Default 128.
    n_train, n_test_good, n_test_defect_per_kind:
        Tiles per category: normal train (default 60), normal test (20), defective test
        per defect kind (10).

    Returns
    -------
    pathlib.Path
        Dataset root in MVTec AD layout, with a ``dataset.json`` card; read it with
        :func:`~xeval.data.mvtec.load_mvtec` or :func:`load_textures`.
    """
    params = textures_params(
        quick=quick,
        categories=categories,
        defects=defects,
        tile=tile,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect_per_kind=n_test_defect_per_kind,
    )
    cache = Path(root) if root is not None else default_cache_dir() / "textures"
    final = cache / _cache_key(params, int(seed))
    if (final / _CARD).is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{final.name}.tmp-"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is a shared cache
        cats = params["categories"]
        counts = {
            c: _write_category(tmp, c, params, int(seed))
            for c in progress(cats, desc="building the textures benchmark")
        }
        card = json.dumps(_card(params, int(seed), counts), indent=2, sort_keys=True) + "\n"
        (tmp / _CARD).write_text(card, encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _CARD).is_file():  # not a concurrent build that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_textures(
    root: str | os.PathLike | None = None, *, seed: int = 0, quick: bool = False, **params
) -> dict[str, CategorySplit]:
    """Build (if needed) and read the ``textures`` benchmark: ``{category: CategorySplit}``.

    Accepts the keyword arguments of :func:`build_textures`.
    """
    path = build_textures(root, seed=seed, quick=quick, **params)
    return {c: load_mvtec(path, c) for c in _card_categories(path / _CARD)}


def _card_categories(card: Path) -> list[str]:
    """The categories listed by the dataset card of a built benchmark."""
    fix = f"(expected the card written by build_textures; delete {card.parent} to rebuild it)"
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatasetError(
            f"cannot read the dataset card {card}: {type(exc).__name__}: {exc} {fix}"
        ) from exc
    cats = data.get("categories") if isinstance(data, dict) else None
    if not (isinstance(cats, list) and cats and all(isinstance(c, str) and c for c in cats)):
        raise DatasetError(
            f"the dataset card {card} lists categories {cats!r} (a list of category names) {fix}"
        )
    return cats


@DATASETS.register(name="textures")
def read_textures(
    *,
    seed: int = 0,
    quick: bool = False,
    categories: list[str] | None = None,
    defects: list[str] | None = None,
    tile: int | None = None,
    n_train: int | None = None,
    n_test_good: int | None = None,
    n_test_defect_per_kind: int | None = None,
    root: str | None = None,
) -> dict[str, CategorySplit]:
    """Dataset format ``textures``: the built-in benchmark (built on first use in the
    cache, ``$XEVAL_CACHE`` or ``~/.cache/xeval``); options as :func:`build_textures`."""
    return load_textures(
        root,
        seed=seed,
        quick=quick,
        categories=categories,
        defects=defects,
        tile=tile,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect_per_kind=n_test_defect_per_kind,
    )
