"""Fuzzing of the dataset readers (issue 13): random trees of files, sizes and modes.

Hypothesis builds random directory trees in the layouts the readers accept (MVTec AD,
the generic folder reader, MVTec LOCO, the built-in textures cache) and near-misses of
them: random names and extensions, empty files, truncated / corrupt PNG and TIFF bytes,
images of random sizes, modes and dtypes (L, RGB, RGBA, LA, I;16, I, F, 1, P; TIFFs of
any shape), zero-size images, masks of another size or mode than their image or with
values other than 0/255, missing ground-truth folders, extra folders and files,
symlinks (to files, dangling, loops), non-UTF-8 file names, unreadable files.

Each tree is read through the registered reader (:data:`xeval.registry.DATASETS`) and
every sample is then loaded as the engine loads it (:func:`xeval.data.iter_batches`
with and without masks, :func:`xeval.data.load_mask`, image headers, the split
fingerprint). The property: either everything loads and every image / mask has the
documented shape, dtype and range, or an :class:`xeval.errors.XevalError` is raised
whose message names a path of the tree. Any other exception is a bug.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xeval.data import iter_batches, load_mask
from xeval.data.io import image_size
from xeval.errors import XevalError
from xeval.registry import DATASETS

# header-only PNGs of 12000x12000 pixels are part of the fuzzing (Pillow warns, then fails)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=False,
)
SLOW = settings(FUZZ, max_examples=600)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
WORK_SIZE = (8, 8)  # the detector input size used to load images

# ----------------------------------------------------------------------- file payloads
MODES = ("L", "RGB", "RGBA", "LA", "I;16", "I", "F", "1", "P")
GOOD_EXTS = (".png", ".png", ".png", ".bmp", ".tif", ".tiff", ".jpg", ".PNG", ".TIF")
ODD_EXTS = (".gif", ".txt", ".npy", "", ".png.bak", ".Png", ".jpeg")
PIL_FORMAT = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}
TIFF_DTYPES = ("uint8", "uint16", "float32", "float64", "int16", "int32", "bool", "int8")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def crafted_png(width: int, height: int, raw: bytes = b"") -> bytes:
    """A PNG whose header claims ``width x height`` (8-bit gray) with ``raw`` pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def _pil_bytes(img: Image.Image, ext: str) -> bytes:
    fmt = PIL_FORMAT.get(ext.lower(), "PNG")
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError, TypeError):  # mode not writable in this format
        buf = io.BytesIO()
        img.convert("RGB" if fmt in ("JPEG", "BMP") else "L").save(buf, format=fmt)
    return buf.getvalue()


def _tiff_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as a TIFF file (tifffile cannot write every zero-size array: then a
    zero-size one it can)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-size arrays: "nonconformant TIFF"
        try:
            tifffile.imwrite(buf, arr)
        except (RuntimeError, ValueError):
            buf = io.BytesIO()
            tifffile.imwrite(buf, np.zeros((0, 5), np.uint8))
    return buf.getvalue()


def _mode_image(mode: str, h: int, w: int, rng: np.random.Generator) -> Image.Image:
    if mode in ("L", "P"):
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
        return img.convert("P") if mode == "P" else img
    if mode == "1":
        return Image.fromarray(rng.random((h, w)) < 0.5)
    if mode in ("RGB", "RGBA", "LA"):
        c = {"RGB": 3, "RGBA": 4, "LA": 2}[mode]
        arr = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        return Image.fromarray(arr)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-5, 70000, (h, w)).astype(np.int32))
    return Image.fromarray(rng.random((h, w)).astype(np.float32) * 1.2 - 0.1)


@st.composite
def sizes(draw) -> tuple[int, int]:
    return draw(st.integers(1, 9)), draw(st.integers(1, 9))


@st.composite
def tiff_array(draw, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    dtype = draw(st.sampled_from(TIFF_DTYPES))
    layout = draw(st.sampled_from(["hw", "hw", "hwc", "chw", "1hw", "pages", "zero"]))
    c = draw(st.sampled_from([1, 2, 3, 4, 5]))
    shape = {
        "hw": (h, w),
        "hwc": (h, w, c),
        "chw": (c, h, w),
        "1hw": (1, h, w),
        "pages": (2, h, w),
        "zero": draw(st.sampled_from([(0, w), (h, 0), (0, 0, 3)])),
    }[layout]
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith("float"):
        arr = rng.random(shape).astype(dtype)
        special = draw(st.sampled_from(["ok", "ok", "big", "neg", "nan"]))
        if special == "big" and arr.size:
            arr.flat[0] = 3.0
        elif special == "neg" and arr.size:
            arr.flat[0] = -1.0
        elif special == "nan" and arr.size:
            arr.flat[0] = np.nan
        return arr
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -300), min(info.max, 70000) + 1, shape).astype(dtype)


@st.composite
def image_bytes(draw, size: tuple[int, int], ext: str) -> bytes:
    """A well-formed image file of ``size`` (or, sometimes, of another one)."""
    h, w = size
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if ext.lower() in (".tif", ".tiff") and draw(st.booleans()):
        return _tiff_bytes(draw(tiff_array(h, w, rng)))
    mode = draw(st.sampled_from(MODES))
    img = _mode_image(mode, h, w, rng)
    if ext.lower() in (".tif", ".tiff"):
        buf = io.BytesIO()
        img.save(buf, format="TIFF")
        return buf.getvalue()
    return _pil_bytes(img, ext)


@st.composite
def mask_bytes(draw, size: tuple[int, int], ext: str) -> bytes:
    """A mask file: binary 0/255 mostly, else another size, mode or set of values."""
    h, w = size
    if draw(st.integers(0, 5)) == 0:  # another size than its image
        h, w = draw(sizes())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    values = draw(
        st.sampled_from(["0/255", "0/255", "0/1", "zeros", "ones255", "random", "0/128", "0/65535"])
    )
    on = rng.random((h, w)) < 0.3
    hi = {"0/255": 255, "0/1": 1, "zeros": 0, "ones255": 255, "0/128": 128, "0/65535": 65535}
    if values == "random":
        arr = rng.integers(0, 256, (h, w))
    else:
        arr = np.where(on | (values == "ones255"), hi[values], 0)
    mode = draw(st.sampled_from(["L", "L", "1", "P", "RGB=", "RGB", "I;16", "F", "LA", "RGBA"]))
    if ext.lower() in (".tif", ".tiff") and draw(st.booleans()):
        dtype = draw(st.sampled_from(["uint8", "uint16", "float32", "bool", "int32", "complex64"]))
        return _tiff_bytes(arr.astype(dtype))
    if mode == "1":
        img = Image.fromarray(arr > 0)
    elif mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16))
    elif mode == "F":
        img = Image.fromarray(arr.astype(np.float32))
    else:
        base = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if mode == "P":
            img = base.convert("P")
        elif mode == "RGB=":
            img = base.convert("RGB")
        elif mode == "RGB":
            rgb = np.stack([np.asarray(base)] * 3, axis=-1)
            rgb[..., 1] = 255 - rgb[..., 1]
            img = Image.fromarray(rgb)
        elif mode in ("LA", "RGBA"):
            img = base.convert(mode)
        else:
            img = base
    if ext.lower() in (".tif", ".tiff"):
        buf = io.BytesIO()
        img.save(buf, format="TIFF")
        return buf.getvalue()
    return _pil_bytes(img, ext)


@st.composite
def corrupt(draw, data: bytes) -> bytes:
    """``data`` as is (mostly), or damaged: truncated, empty, junk, flipped, crafted."""
    kind = draw(
        st.sampled_from(
            ["ok"] * 12 + ["truncate", "empty", "junk", "flip", "zero_png", "huge_png", "text"]
        )
    )
    if kind == "ok":
        return data
    if kind == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "empty":
        return b""
    if kind == "junk":
        return draw(st.binary(min_size=1, max_size=64))
    if kind == "flip":
        if not data:
            return data
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if kind == "zero_png":
        return crafted_png(*draw(st.sampled_from([(0, 4), (4, 0), (0, 0)])))
    if kind == "huge_png":
        return crafted_png(*draw(st.sampled_from([(12000, 12000), (70000, 70000), (1, 2**31 - 1)])))
    return b"this is not an image\n"


# ------------------------------------------------------------------------------ trees
@dataclass
class Tree:
    """A directory tree to write: files (relative path -> bytes), empty folders,
    symlinks (path -> target, relative to the link's folder), non-UTF-8 file names and
    files made unreadable."""

    files: dict[str, bytes] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    raw_names: dict[bytes, bytes] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def write(self, root: Path) -> None:
        for rel in self.dirs:
            (root / rel).mkdir(parents=True, exist_ok=True)
        for rel, data in self.files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_dir():
                continue
            p.write_bytes(data)
        for rel, target in self.links.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(p):
                os.symlink(target, p)
        for rel, data in self.raw_names.items():
            p = os.fsencode(root) + b"/" + rel
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        for rel in self.unreadable:
            p = root / rel
            if p.exists():
                p.chmod(0)


NAMES = st.sampled_from(["000", "001", "002", "a b", "x.y", "é", "-1", "10", ".hid", "000_mask"])
RENAMES = {
    "train": ["Train", "training"],
    "test": ["Test", "testing"],
    "good": ["Good", "ok"],
    "ground_truth": ["groundtruth", "gt", "ground_truth "],
}


@st.composite
def image_file(draw, size: tuple[int, int], *, odd: bool = True) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(GOOD_EXTS + (ODD_EXTS if odd else ())))
    data = draw(image_bytes(size, ext if ext.lower() in PIL_FORMAT or "tif" in ext else ".png"))
    return ext, draw(corrupt(data))


@st.composite
def near_misses(draw, tree: Tree, top: str) -> Tree:
    """Damage a tree: rename folders, drop files, add extras, links, odd names."""
    ops = draw(
        st.lists(
            st.sampled_from(
                [
                    "rename",
                    "drop",
                    "drop_gt",
                    "extra_dir",
                    "extra_file",
                    "link_file",
                    "link_dangling",
                    "link_loop",
                    "raw_name",
                    "dir_named_png",
                    "unreadable",
                    "dup_stem",
                ]
            ),
            max_size=3,
        )
    )
    prefix = f"{top}/" if top else ""
    for op in ops:
        keys = sorted(tree.files)
        if op == "rename" and keys:
            old = draw(st.sampled_from(sorted(RENAMES)))
            new = draw(st.sampled_from(RENAMES[old]))
            tree.files = {
                "/".join(new if c == old else c for c in k.split("/")): v
                for k, v in tree.files.items()
            }
        elif op == "drop" and keys:
            del tree.files[draw(st.sampled_from(keys))]
        elif op == "drop_gt":
            tree.files = {k: v for k, v in tree.files.items() if "/ground_truth/" not in f"/{k}"}
        elif op == "extra_dir":
            tree.dirs.append(prefix + draw(st.sampled_from(["test/empty", "notes", "train/x"])))
        elif op == "extra_file":
            rel = draw(st.sampled_from(["README.txt", "test/Thumbs.db", "train/good/.DS_Store"]))
            tree.files[prefix + rel] = b"junk"
        elif op == "link_file" and keys:
            src = draw(st.sampled_from(keys))
            name = Path(src).parent / ("link" + Path(src).suffix)
            tree.links[str(name)] = Path(src).name
        elif op == "link_dangling":
            where = draw(st.sampled_from(["train/good", "test/good", "test/bad"]))
            tree.links[f"{prefix}{where}/dangling.png"] = "no_such_file.png"
        elif op == "link_loop":
            where = draw(st.sampled_from(["train/good", "test", "test/bad"]))
            tree.links[f"{prefix}{where}/loop"] = ".."
            tree.links[f"{prefix}{where}/self.png"] = "self.png"
        elif op == "raw_name":
            where = draw(st.sampled_from(["train/good", "test/good", "test/bad"]))
            h, w = draw(sizes())
            rel = f"{prefix}{where}/".encode() + b"\xff\xfe" + b".png"
            tree.raw_names[rel] = _pil_bytes(Image.new("L", (w, h)), ".png")
        elif op == "dir_named_png":
            tree.dirs.append(prefix + "train/good/999.png")
            tree.dirs.append(prefix + "ground_truth/bad/000_mask.png")
        elif op == "unreadable" and keys:
            tree.unreadable.append(draw(st.sampled_from(keys)))
        elif op == "dup_stem" and keys:
            src = draw(st.sampled_from(keys))
            other = ".bmp" if not src.endswith(".bmp") else ".png"
            tree.files[str(Path(src).with_suffix(other))] = tree.files[src]
    return tree


@st.composite
def mvtec_like(draw, top: str, *, defects=("bad", "worse")) -> Tree:
    """``<top>/{train/good, test/good, test/<defect>, ground_truth/<defect>}``."""
    tree = Tree()
    prefix = f"{top}/" if top else ""
    common = draw(sizes())
    same = draw(st.booleans())
    groups = [("train", "good"), ("test", "good")] + [
        ("test", d) for d in draw(st.lists(st.sampled_from(defects), max_size=2, unique=True))
    ]
    for split, defect in groups:
        for _ in range(draw(st.integers(0 if split == "test" else 1, 3))):
            size = common if same else draw(sizes())
            stem = draw(NAMES)
            ext, data = draw(image_file(size))
            tree.files[f"{prefix}{split}/{defect}/{stem}{ext}"] = data
            if defect == "good" or draw(st.integers(0, 9)) == 0:  # 10 %: no mask
                continue
            mstem = draw(st.sampled_from([f"{stem}_mask", f"{stem}_mask", stem, f"{stem}-mask"]))
            mext = draw(st.sampled_from([".png", ".png", ".bmp", ".tif", ".PNG", ".Png", ".jpg"]))
            mdata = draw(corrupt(draw(mask_bytes(size, mext))))
            tree.files[f"{prefix}ground_truth/{defect}/{mstem}{mext}"] = mdata
    return draw(near_misses(tree, top))


@st.composite
def mvtec_case(draw):
    tree = Tree()
    cats = draw(
        st.lists(st.sampled_from(["a", "b", "c d", "ü"]), min_size=1, max_size=2, unique=True)
    )
    for cat in cats:
        sub = draw(mvtec_like(cat))
        tree.files.update(sub.files)
        tree.dirs += sub.dirs
        tree.links.update(sub.links)
        tree.raw_names.update(sub.raw_names)
        tree.unreadable += sub.unreadable
    opts = {
        "validate": draw(st.booleans()),
        "require_masks": draw(st.booleans()),
    }
    choice = draw(st.sampled_from(["all", "all", "given", "missing"]))
    if choice == "given":
        opts["categories"] = cats[:1]
    elif choice == "missing":
        opts["categories"] = ["nope"]
    return tree, opts


GLOBS = [
    "train/good/*",
    "train/**/*",
    "train/good/*.png",
    "train/*",
    "**/*",
    "*",
    "",
    "/abs/*",
    "../*",
    "train/good/[",
    "train/**x/*",
    "test/*/*",
]
MASK_PATTERNS = [
    "ground_truth/{defect}/{stem}_mask.png",
    "ground_truth/{defect}/{stem}.png",
    "ground_truth/{defect}/{name}",
    "ground_truth/{defect}/{stem}_mask.{ext}",
    "{",
    "}",
    "{stem",
    "{bogus}",
    "{0}",
    "{stem.upper}",
    "{stem[9]}",
    "{stem:d}",
    "{stem!x}",
    "/tmp/{stem}.png",
    "../{stem}.png",
    "",
    None,
]


@st.composite
def folder_case(draw):
    tree = draw(mvtec_like(""))
    opts = {"validate": draw(st.booleans())}
    for key, default in (
        ("train_glob", "train/good/*"),
        ("test_normal_glob", "test/good/*"),
        ("test_anomalous_glob", "test/*/*"),
    ):
        pick = draw(st.integers(0, 9))
        if pick >= 7:
            opts[key] = draw(st.sampled_from(GLOBS) | st.text(max_size=8))
        else:
            opts[key] = default
    pick = draw(st.integers(0, 9))
    if pick >= 6:
        pats = st.sampled_from(MASK_PATTERNS) | st.text(max_size=8)
        opts["mask_pattern"] = draw(
            pats | st.lists(st.sampled_from(MASK_PATTERNS[:-1]), min_size=1, max_size=3)
        )
    return tree, opts


LOCO_DEFECTS = [
    {
        "defect_name": "missing",
        "pixel_value": 255,
        "saturation_threshold": 0.5,
        "relative_saturation": True,
    },
    {
        "defect_name": "extra",
        "pixel_value": 254,
        "saturation_threshold": 12,
        "relative_saturation": False,
    },
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3),
    max_leaves=8,
)


@st.composite
def loco_config_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["ok"] * 6 + ["mutate", "random", "deep", "bytes", "bom"]))
    entries = json.loads(json.dumps(LOCO_DEFECTS))
    if kind == "mutate":
        e = draw(st.sampled_from(entries))
        key = draw(st.sampled_from(sorted(e)))
        if draw(st.booleans()):
            del e[key]
        else:
            e[key] = draw(JSON_VALUES)
    elif kind == "random":
        return json.dumps(draw(JSON_VALUES)).encode()
    elif kind == "deep":
        n = draw(st.sampled_from([50, 900, 5000, 100000]))
        return b"[" * n + b"]" * n
    elif kind == "bytes":
        return draw(st.binary(max_size=40))
    text = json.dumps(entries)
    return ("\ufeff" + text).encode() if kind == "bom" else text.encode()


@st.composite
def gt_png(draw, size: tuple[int, int]) -> bytes:
    """One-defect ground truth: 0 and one value (mostly 254/255), else near-misses."""
    h, w = size
    if draw(st.integers(0, 5)) == 0:
        h, w = draw(sizes())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    value = draw(st.sampled_from([255, 255, 254, 254, 7, 0]))
    arr = np.where(rng.random((h, w)) < 0.4, value, 0).astype(np.uint8)
    if arr.max() == 0 and value:
        arr.flat[0] = value
    variant = draw(st.sampled_from(["L"] * 5 + ["two", "P", "RGB", "I;16", "F", "1"]))
    if variant == "two":
        arr.flat[-1] = 3
    if variant == "I;16":
        img = Image.fromarray(arr.astype(np.uint16))
    elif variant == "F":
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.float32)).save(buf, format="TIFF")
        return buf.getvalue()
    elif variant == "1":
        img = Image.fromarray(arr > 0)
    else:
        img = Image.fromarray(arr)
        if variant in ("P", "RGB"):
            img = img.convert(variant)
    return draw(corrupt(_pil_bytes(img, ".png")))


@st.composite
def loco_case(draw):
    tree = Tree()
    cat = "box"
    p = f"{cat}/"
    if draw(st.integers(0, 9)):
        tree.files[p + "defects_config.json"] = draw(loco_config_bytes())
    common = draw(sizes())
    groups = [("train", "good"), ("validation", "good"), ("test", "good")] + [
        ("test", t)
        for t in draw(
            st.lists(
                st.sampled_from(["logical_anomalies", "structural_anomalies"]),
                max_size=2,
                unique=True,
            )
        )
    ]
    for split, kind in groups:
        for _ in range(draw(st.integers(0 if split != "train" else 1, 2))):
            size = common if draw(st.booleans()) else draw(sizes())
            stem = draw(NAMES)
            ext, data = draw(image_file(size))
            tree.files[f"{p}{split}/{kind}/{stem}{ext}"] = data
            if kind == "good":
                continue
            for k in range(draw(st.integers(0, 2))):
                tree.files[f"{p}ground_truth/{kind}/{stem}/{k:03d}.png"] = draw(gt_png(size))
    if draw(st.integers(0, 5)) == 0:  # an orphan ground-truth folder
        tree.files[f"{p}ground_truth/logical_anomalies/zzz/000.png"] = draw(gt_png(common))
    tree = draw(near_misses(tree, cat))
    opts = {"validate": draw(st.booleans())}
    return tree, opts


# ------------------------------------------------------------------------ the property
def _check_record(rec, *, with_masks: bool) -> None:
    imgs = rec.inputs.images
    b = len(rec.ids)
    assert imgs.dtype == np.float32 and imgs.shape == (b, 3, *WORK_SIZE), imgs.shape
    assert np.isfinite(imgs).all() and imgs.min() >= 0.0 and imgs.max() <= 1.0
    sizes_ = rec.inputs.native_sizes
    assert len(sizes_) == b and all(h >= 1 and w >= 1 for h, w in sizes_), sizes_
    labels = rec.targets.labels
    assert labels.dtype == np.int64 and set(labels.tolist()) <= {0, 1}
    if not with_masks:
        assert rec.targets.masks is None
        return
    for mask, size, label in zip(rec.targets.masks, sizes_, labels, strict=True):
        assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == tuple(size)
        if label == 0:
            assert not mask.any()
    if rec.targets.regions is not None:
        for regs, size in zip(rec.targets.regions, sizes_, strict=True):
            for r in regs:
                assert r.mask.dtype == bool and r.mask.shape == tuple(size)
                assert r.saturation is None or r.saturation >= 1


def load_like_the_engine(splits) -> None:
    """Everything the engine reads from a dataset: fingerprint, headers, images, masks."""
    assert isinstance(splits, dict)
    for cat, split in splits.items():
        assert split.category == cat
        split.counts()
        _ = split.defects
        split.fingerprint()
        split.fingerprint(content=True)
        for s in split.validation:
            image_size(s.image_path)  # calibration counts pixels from the headers
        for samples, with_masks in (
            (split.train, False),
            (split.validation, False),
            (split.test, True),
        ):
            if not samples:
                continue
            done = 0
            for rec in iter_batches(
                samples, batch_size=2, image_size=WORK_SIZE, with_masks=with_masks, category=cat
            ):
                _check_record(rec, with_masks=with_masks)
                # the header agrees with the pixels (calibration counts pixels from it)
                for s, native in zip(samples[done:], rec.inputs.native_sizes, strict=False):
                    assert image_size(s.image_path) == tuple(native), (s.image_path, native)
                done += len(rec.ids)
            assert done == len(samples)
        for s in split.test:
            m = load_mask(s)  # `xeval score` reads masks without their image
            assert m.dtype == bool and m.ndim == 2
            assert m.shape == image_size(s.image_path)


def check_reader(fmt: str, tree: Tree, opts: dict) -> None:
    """Write ``tree``, read it with the registered reader ``fmt``, load every sample;
    only success or an XevalError naming a path of the tree is acceptable."""
    tmp = Path(tempfile.mkdtemp(prefix="xeval-fuzz-"))
    root = tmp / "ds"
    try:
        root.mkdir()
        tree.write(root)
        reader = DATASETS.get(fmt)
        try:
            splits = reader(path=str(root), **opts)
            load_like_the_engine(splits)
        except XevalError as exc:
            msg = str(exc)
            assert str(root) in msg, f"{type(exc).__name__} does not name a path: {msg}"
    finally:
        for p in tree.unreadable:  # give back the permissions rmtree needs
            if (root / p).exists() and not (root / p).is_symlink():
                (root / p).chmod(0o755)
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- tests
@FUZZ
@given(mvtec_case())
def test_fuzz_mvtec(case):
    tree, opts = case
    check_reader("mvtec", tree, opts)


@FUZZ
@given(folder_case())
def test_fuzz_folder(case):
    tree, opts = case
    check_reader("folder", tree, opts)


@FUZZ
@given(loco_case())
def test_fuzz_mvtec_loco(case):
    tree, opts = case
    check_reader("mvtec_loco", tree, opts)


@pytest.mark.slow
@SLOW
@given(st.sampled_from(["mvtec", "folder", "mvtec_loco"]), st.data())
def test_fuzz_readers_long(fmt, data):
    strat = {"mvtec": mvtec_case, "folder": folder_case, "mvtec_loco": loco_case}[fmt]
    tree, opts = data.draw(strat())
    check_reader(fmt, tree, opts)


# --------------------------------------------------- one fault in a valid MVTec tree
FAULTS = [
    "truncate",
    "empty",
    "junk",
    "zero_tiff",
    "mask_size",
    "mask_values",
    "mask_rgb",
    "delete_mask",
    "mode",
]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    from xeval.data import write_tiny_mvtec

    return write_tiny_mvtec(
        tmp_path_factory.mktemp("tiny") / "ds", n_train=2, n_good=1, n_defect=2, size=(12, 10)
    )


@FUZZ
@given(fault=st.sampled_from(FAULTS), pick=st.integers(0, 10**6), seed=st.integers(0, 99))
def test_single_fault_names_the_file(tiny_tree, fault, pick, seed):
    """A valid tree with one damaged file: it loads, or the error names that file."""
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix="xeval-fault-"))
    try:
        root = tmp / "ds"
        shutil.copytree(tiny_tree, root)
        masks = sorted(root.rglob("*_mask.png"))
        images = sorted(p for p in root.rglob("*.png") if p not in masks)
        mask_faults = ("mask_size", "mask_values", "mask_rgb", "delete_mask")
        pool = masks if fault in mask_faults else images + masks
        target = pool[pick % len(pool)]
        named = target
        if fault == "truncate":  # cut inside the pixel data
            data = target.read_bytes()
            target.write_bytes(data[: int(rng.integers(8, len(data) // 2))])
        elif fault == "empty":
            target.write_bytes(b"")
        elif fault == "junk":
            target.write_bytes(rng.bytes(int(rng.integers(1, 64))))
        elif fault == "zero_tiff":
            target.unlink()
            target = target.with_suffix(".tif")
            target.write_bytes(_tiff_bytes(np.zeros((0, 10), np.uint8)))
            named = target
        elif fault == "mask_size":
            Image.new("L", (int(rng.integers(1, 9)), 12)).save(target)
        elif fault == "mask_values":
            Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(target)
        elif fault == "mask_rgb":
            Image.fromarray(rng.integers(0, 2, (12, 10, 3), dtype=np.uint8) * 255).save(target)
        elif fault == "delete_mask":
            target.unlink()
            defect = target.parent.name
            named = root / "a" / "test" / defect / target.name.replace("_mask", "")
        elif fault == "mode":
            img = Image.open(target)
            img.convert(str(rng.choice(["RGBA", "LA", "P", "I;16"]))).save(target)
        try:
            load_like_the_engine(DATASETS.get("mvtec")(path=str(root)))
        except XevalError as exc:
            assert str(named) in str(exc), f"{fault} of {named}: {exc}"
        else:
            valid_faults = ("mode",)
            assert fault in valid_faults or (fault == "mask_rgb" and _rgb_equal(target)), fault
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rgb_equal(path: Path) -> bool:
    arr = np.asarray(Image.open(path))
    return bool((arr == arr[..., :1]).all())


# ---------------------------------------------------------- textures cache, damaged
TEXTURE_PARAMS = {
    "categories": ["brick"],
    "defects": ["scratch"],
    "tile": 16,
    "n_train": 2,
    "n_test_good": 1,
    "n_test_defect_per_kind": 1,
}


@pytest.fixture(scope="module")
def textures_cache(tmp_path_factory):
    from xeval.data.textures import build_textures

    root = tmp_path_factory.mktemp("textures")
    build_textures(root, **TEXTURE_PARAMS)
    return root


@FUZZ
@given(
    damage=st.lists(
        st.tuples(
            st.sampled_from(["card", "png", "delete", "card_key", "card_cats"]),
            st.integers(0, 10**6),
            st.binary(max_size=24),
        ),
        min_size=1,
        max_size=2,
    )
)
def test_fuzz_textures_cache(textures_cache, damage):
    """A damaged textures cache: rebuilt, loaded, or an error naming the file."""
    tmp = Path(tempfile.mkdtemp(prefix="xeval-tex-"))
    try:
        root = tmp / "cache"
        shutil.copytree(textures_cache, root)
        (ds,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        card = ds / "dataset.json"
        files = sorted(p for p in ds.rglob("*.png"))
        for what, pick, junk in damage:
            if what == "card":
                card.write_bytes(junk)
            elif what == "card_key":
                c = json.loads(card.read_text()) if _is_json(card) else {}
                c.pop("categories", None)
                card.write_text(json.dumps(c))
            elif what == "card_cats":
                c = json.loads(card.read_text()) if _is_json(card) else {}
                c["categories"] = [None, 3] if pick % 2 else "brick"
                card.write_text(json.dumps(c))
            elif what == "png" and files:
                files[pick % len(files)].write_bytes(junk)
            elif what == "delete" and files:
                f = files[pick % len(files)]
                if f.exists():
                    f.unlink()
        try:
            load_like_the_engine(DATASETS.get("textures")(root=str(root), **TEXTURE_PARAMS))
        except XevalError as exc:
            assert str(root) in str(exc), str(exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _is_json(p: Path) -> bool:
    try:
        return isinstance(json.loads(p.read_text()), dict)
    except Exception:  # noqa: BLE001
        return False


@FUZZ
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "tile": st.sampled_from([-1, 0, 15, 10**9]),
            "n_train": st.sampled_from([-3, 0]),
            "n_test_good": st.sampled_from([-1, 0]),
            "n_test_defect_per_kind": st.sampled_from([-1, 0]),
            "categories": st.sampled_from([[], ["nope"], ["brick", "brick"], "brick"]),
            "defects": st.sampled_from([[], ["nope"], ["scratch", "scratch"], "scratch"]),
        },
    ).filter(bool)
)
def test_fuzz_textures_params(params):
    """Invalid build parameters are an error before anything is written."""
    tmp = Path(tempfile.mkdtemp(prefix="xeval-texp-"))
    try:
        with pytest.raises(XevalError):
            DATASETS.get("textures")(root=str(tmp), **{**TEXTURE_PARAMS, **params})
        assert not any(tmp.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.skipif(IS_ROOT, reason="running as root: chmod 000 does not stop reads")
def test_unreadable_files_and_folders(tmp_path):
    from xeval.data import write_tiny_mvtec

    root = write_tiny_mvtec(tmp_path / "ds", n_train=2, n_good=1, n_defect=1, size=(8, 8))
    for target in (
        root / "a" / "train" / "good" / "000.png",
        root / "a" / "ground_truth" / "scratch" / "000_mask.png",
        root / "a" / "test" / "scratch",
    ):
        target.chmod(0)
        try:
            try:
                load_like_the_engine(DATASETS.get("mvtec")(path=str(root)))
            except XevalError as exc:
                assert str(target) in str(exc), str(exc)
        finally:
            target.chmod(0o755)


@pytest.mark.parametrize(
    "target",
    ["a/train/good/000.png", "a/ground_truth/scratch/000_mask.png", "a/test/scratch", "a/test"],
)
def test_unreadable_simulated(tmp_path, monkeypatch, target):
    """The same as root can see it: opening the file or listing the folder raises
    PermissionError (chmod 000 does not stop root)."""
    import builtins
    import pathlib

    from xeval.data import write_tiny_mvtec

    root = write_tiny_mvtec(tmp_path / "ds", n_train=2, n_good=1, n_defect=1, size=(8, 8))
    bad = root / target
    real_open, real_iterdir = builtins.open, pathlib.Path.iterdir

    def fake_open(file, *args, **kwargs):
        if isinstance(file, str | os.PathLike) and Path(file) == bad:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    def fake_iterdir(self):
        if self == bad:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(pathlib.Path, "iterdir", fake_iterdir)
    with pytest.raises(XevalError) as info:
        load_like_the_engine(DATASETS.get("mvtec")(path=str(root)))
    assert str(bad) in str(info.value)


def test_generators_make_what_they_say():
    """Sanity of the fuzz generators themselves: a clean draw is a readable image."""
    data = _pil_bytes(_mode_image("I;16", 3, 4, np.random.default_rng(0)), ".png")
    assert Image.open(io.BytesIO(data)).size == (4, 3)
    assert len(crafted_png(0, 4)) > 8
