"""Reliability of ``xeval score``: every problem with the maps tree is a clear error that
names what is wrong (the category, the file, both files of a pair, every missing or extra
map up to a cap), nothing is skipped or reshaped silently, and the CLI answers with
``xeval: error: ...`` and exit code 2, never a traceback.

Principles (one test function each, several inputs each):

- P1 missing category: a category of the dataset without a maps folder is an error naming
  it, or, with ``--allow-missing``, a NaN row marked missing and a warning.
- P2 one image, one map: two map files for one image are an error naming both.
- P3 missing and extra maps are listed by name (capped, "and N more").
- P4 every map is readable, 2-D, finite and of the mask's aspect ratio; otherwise an error
  naming the file (same-aspect maps are upsampled, as documented).
"""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from xeval import metrics as M
from xeval.cli import main
from xeval.data import load_masks, load_mvtec, write_tiny_mvtec
from xeval.engine.score import score_folder
from xeval.errors import XevalError

SIZE = (24, 20)  # mask (H, W) of every image
CATS = ("a", "b", "c")


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    """A tiny MVTec tree: 3 categories x (2 good + 2 scratch + 2 stain) test images."""
    root = tmp_path_factory.mktemp("gt")
    return write_tiny_mvtec(
        root,
        categories=CATS,
        n_train=1,
        n_good=2,
        n_defect=2,
        size=SIZE,
        defects=("scratch", "stain"),
    )


def _write_maps(gt, maps_dir, cats=CATS, shape=(12, 10)):
    """One half-resolution ``.npy`` map per test image of ``cats``."""
    rng = np.random.default_rng(1)
    for cat in cats:
        for s in load_mvtec(gt, cat, require_train=False).test:
            d = maps_dir / cat / "test" / s.defect
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{s.image_path.stem}.npy", rng.random(shape).astype(np.float32))
    return maps_dir


@pytest.fixture()
def maps(gt, tmp_path):
    return _write_maps(gt, tmp_path / "maps")


def _cli(capsys, *argv) -> tuple[int, str, str]:
    """``xeval score ...``: exit code, stdout, stderr; never a traceback."""
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _error(capsys, maps, gt, *extra) -> str:
    """The CLI fails cleanly (exit 2, one ``xeval: error:`` line) and the API raises an
    ``XevalError`` with the same message; returns it."""
    rc, _, err = _cli(capsys, "--maps", maps, "--gt", gt, *extra)
    assert rc == 2, err
    assert err.startswith("xeval: error: "), err
    cats = []
    if "--categories" in extra:
        for x in extra[extra.index("--categories") + 1 :]:
            if str(x).startswith("--"):
                break
            cats.append(x)
    with pytest.raises(XevalError) as info:
        score_folder(maps, gt, categories=cats or None)
    assert str(info.value) in err
    return err


# -- P1: a category without maps is an error (or, explicitly, a missing row) ----------


def _drop(maps, cat):
    shutil.rmtree(maps / cat)


def _make_file(maps, cat):
    shutil.rmtree(maps / cat)
    (maps / cat).write_text("not a folder")


def _empty_folder(maps, cat):
    shutil.rmtree(maps / cat)
    (maps / cat).mkdir()


def _hidden_files_only(maps, cat):
    shutil.rmtree(maps / cat)
    (maps / cat / "test" / "good").mkdir(parents=True)
    (maps / cat / "test" / "good" / ".DS_Store").write_bytes(b"\0")


@pytest.mark.parametrize(
    "damage, victims, categories",
    [
        (_drop, ("c",), ()),  # no --categories: every dataset category is scored
        (_drop, ("b", "c"), ()),
        (_drop, ("b",), ("a", "b")),  # listed explicitly
        (_make_file, ("c",), ()),  # a file where the folder should be
        (_empty_folder, ("a",), ()),  # a folder without test/
        (_hidden_files_only, ("b",), ("b", "c")),
    ],
)
def test_p1_category_without_maps_is_an_error(capsys, gt, maps, damage, victims, categories):
    for v in victims:
        damage(maps, v)
    extra = ("--categories", *categories) if categories else ()
    err = _error(capsys, maps, gt, *extra)
    for v in victims:
        assert re.search(rf"\b{v}\b", err) and "folder" in err, err
    assert "--allow-missing" in err  # says how to proceed on purpose


@pytest.mark.parametrize("victims", [("c",), ("a", "c")])
def test_p1_allow_missing_shows_the_category_as_missing(capsys, gt, maps, tmp_path, victims):
    for v in victims:
        _drop(maps, v)
    out_json = tmp_path / "s.json"
    rc, out, err = _cli(capsys, "--maps", maps, "--gt", gt, "--allow-missing", "--json", out_json)
    assert rc == 0, err
    got = json.loads(out_json.read_text())
    assert set(got) == {*CATS, "mean"}
    for v in victims:
        assert "warning" in err and re.search(rf"\b{v}\b", err), err
        assert math.isnan(got[v]["pixel_auroc"]) and math.isnan(got[v]["aupro@0.3"])
        assert "missing" in got[v]["note"]
        assert re.search(rf"^\s*{v}\b.*missing", out, re.M), out
    scored = [c for c in CATS if c not in victims]
    assert got["mean"]["pixel_auroc"] == pytest.approx(
        np.mean([got[c]["pixel_auroc"] for c in scored])
    )
    assert "missing" in got["mean"]["note"]  # the mean says it leaves categories out
    with pytest.warns(UserWarning, match="missing"):
        df = score_folder(maps, gt, allow_missing=True)
    assert list(df["category"]) == [*CATS, "mean"]


def test_p1_allow_missing_needs_at_least_one_category(capsys, gt, tmp_path):
    (tmp_path / "maps").mkdir()
    rc, _, err = _cli(capsys, "--maps", tmp_path / "maps", "--gt", gt, "--allow-missing")
    assert rc == 2 and "no category" in err


@pytest.mark.parametrize("name", ["bottle", "a_v2"])
def test_p1_maps_of_a_category_the_dataset_lacks_are_an_error(capsys, gt, maps, name):
    shutil.copytree(maps / "a", maps / name)
    err = _error(capsys, maps, gt)
    assert name in err


def test_p1_hidden_entries_and_loose_files_at_the_top_are_ignored(capsys, gt, maps):
    (maps / ".ipynb_checkpoints").mkdir()
    (maps / "README.txt").write_text("maps of my detector")
    rc, _, err = _cli(capsys, "--maps", maps, "--gt", gt)
    assert rc == 0, err


# -- P2: one map per image -------------------------------------------------------------


def _tiff(p, a):
    tifffile.imwrite(p, a)


def _png(p, a):
    Image.fromarray((a * 255).astype(np.uint8)).save(p)


@pytest.mark.parametrize(
    "where, second",
    [
        ("a/test/scratch/000", (".tiff", _tiff)),
        ("a/test/scratch/000", (".tif", _tiff)),
        ("b/test/good/001", (".png", _png)),
        ("c/test/stain/000", (".NPY", np.save)),
    ],
)
def test_p2_two_maps_for_one_image_name_both(capsys, gt, maps, where, second):
    npy = maps / f"{where}.npy"
    ext, save = second
    other = maps / f"{where}{ext}"
    save(other, np.load(npy)) if save is not np.save else shutil.copy(npy, other)
    err = _error(capsys, maps, gt)
    assert str(npy) in err and str(other) in err, err


def test_p2_many_duplicates_are_capped(capsys, gt, maps):
    for p in sorted(maps.rglob("*.npy")):
        tifffile.imwrite(p.with_suffix(".tiff"), np.load(p))
    err = _error(capsys, maps, gt)
    assert re.search(r"and \d+ more", err), err
    assert len(err) < 4000


# -- P3: missing and extra maps are listed ----------------------------------------------


def _ids(maps, pattern):
    return sorted(maps.glob(pattern))


@pytest.mark.parametrize(
    "remove",
    [
        ["a/test/scratch/001.npy"],
        ["a/test/scratch/001.npy", "a/test/good/000.npy", "c/test/stain/001.npy"],
        ["b/test/good/000.npy", "b/test/good/001.npy"],
    ],
)
def test_p3_missing_maps_are_all_listed(capsys, gt, maps, remove):
    for r in remove:
        (maps / r).unlink()
    err = _error(capsys, maps, gt)
    assert "missing" in err or "no anomaly map" in err
    for r in remove:
        assert r[: -len(".npy")] in err, (r, err)


def test_p3_many_missing_maps_are_capped(capsys, gt, maps):
    for cat in CATS:  # all but one map of each category: 15 missing maps
        for p in _ids(maps, f"{cat}/test/*/*.npy")[1:]:
            p.unlink()
    err = _error(capsys, maps, gt)
    assert re.search(r"and 5 more", err), err


@pytest.mark.parametrize(
    "extra",
    [
        "a/test/scratch/099.npy",  # no image 099
        "b/test/crack/000.npy",  # no defect folder crack in the dataset
        "c/test/good/000_map.npy",  # a naming convention that does not match
        "a/test/good/sub/000.npy",  # too deep
        "a/test/good/000.jpg",  # not a map format
        "a/train/good/000.npy",  # outside test/
    ],
)
def test_p3_extra_maps_are_listed(capsys, gt, maps, extra):
    p = maps / extra
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p.with_suffix(".npy"), np.zeros((12, 10), np.float32))
    if p.suffix != ".npy":
        p.with_suffix(".npy").rename(p)
    err = _error(capsys, maps, gt)
    assert extra in err, err


def test_p3_missing_and_extra_together(capsys, gt, maps):
    (maps / "a/test/stain/001.npy").rename(maps / "a/test/stain/001_map.npy")
    err = _error(capsys, maps, gt)
    assert "a/test/stain/001" in err and "a/test/stain/001_map.npy" in err, err


# -- P4: maps that cannot be used are errors naming the file ----------------------------


def _save_npy(a):
    return lambda p: np.save(p, a)


def _raw(data: bytes):
    return lambda p: p.write_bytes(data)


def _npz(p):
    with open(p, "wb") as f:
        np.savez(f, m=np.zeros((12, 10)))


def _truncated(p):
    np.save(p, np.zeros((12, 10), np.float32))
    p.write_bytes(p.read_bytes()[:-50])


def _dangling(p):
    p.unlink(missing_ok=True)
    p.symlink_to(p.parent / "nowhere.npy")


_nan = np.zeros((12, 10), np.float32)
_nan[3, 4] = np.nan

BAD_MAPS = {
    "empty_file": _raw(b""),
    "truncated_npy": _truncated,
    "garbage": _raw(b"this is not a numpy file at all" * 10),
    "npz_named_npy": _npz,
    "pickled_object": lambda p: np.save(p, np.array([{}, 1], dtype=object), allow_pickle=True),
    "strings": _save_npy(np.array([["a", "b"], ["c", "d"]])),
    "complex": _save_npy(np.ones((12, 10), np.complex64) * (1 + 2j)),
    "one_dimensional": _save_npy(np.zeros(120, np.float32)),
    "three_channels": _save_npy(np.random.default_rng(0).random((12, 10, 3))),
    "empty_array": _save_npy(np.zeros((0, 10), np.float32)),
    "nan": _save_npy(_nan),
    "inf": _save_npy(np.full((12, 10), np.inf, np.float32)),
    "other_aspect_square": _save_npy(np.zeros((12, 12), np.float32)),
    "other_aspect_transposed": _save_npy(np.zeros((20, 24), np.float32)),
    "other_aspect_wide": _save_npy(np.zeros((24, 40), np.float32)),
    "dangling_link": _dangling,
}


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", list(BAD_MAPS))
def test_p4_unusable_map_is_an_error_naming_the_file(capsys, gt, maps, kind):
    victim = maps / "b" / "test" / "stain" / "001.npy"
    BAD_MAPS[kind](victim)
    err = _error(capsys, maps, gt, "--categories", "b")
    assert str(victim) in err, err


@pytest.mark.parametrize("kind", ["garbage_tiff", "garbage_png", "rgb_png"])
def test_p4_unusable_tiff_and_png(capsys, gt, maps, kind):
    victim = maps / "a" / "test" / "good" / "000.npy"
    victim.unlink()
    if kind == "garbage_tiff":
        victim = victim.with_suffix(".tiff")
        victim.write_bytes(b"II*\x00" + b"\xff" * 40)
    elif kind == "garbage_png":
        victim = victim.with_suffix(".png")
        victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    else:
        victim = victim.with_suffix(".png")
        rgb = np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(victim)
    err = _error(capsys, maps, gt, "--categories", "a")
    assert str(victim) in err, err


@pytest.mark.parametrize("shape", [(12, 10), (6, 5), (24, 20), (48, 40), (36, 30), (7, 6)])
def test_p4_same_aspect_maps_are_resized_to_the_mask(gt, tmp_path, shape):
    maps = _write_maps(gt, tmp_path / "maps", cats=("a",), shape=shape)
    split = load_mvtec(gt, "a", require_train=False)
    masks = load_masks(split.test)
    amaps = [
        M.resize_to(np.load(maps / "a" / "test" / s.defect / f"{s.image_path.stem}.npy"), SIZE)
        for s in split.test
    ]
    df = score_folder(maps, gt, categories=["a"])
    assert df.loc[0, "pixel_auroc"] == pytest.approx(M.pixel_auroc(masks, amaps), abs=1e-12)


def test_mean_row_names_categories_where_a_metric_is_undefined(tmp_path):
    """A category without anomalous test images has NaN AUROC; the mean row says it
    averaged the other categories, instead of skipping the NaN silently."""
    root = write_tiny_mvtec(tmp_path / "gt", categories=("a",), n_train=1, size=SIZE)
    write_tiny_mvtec(root, categories=("b",), n_train=1, n_defect=0, size=SIZE)
    maps = _write_maps(root, tmp_path / "maps", cats=("a", "b"))
    with pytest.warns(UserWarning):
        df = score_folder(maps, root)
    b = df[df["category"] == "b"].iloc[0]
    mean = df[df["category"] == "mean"].iloc[0]
    assert np.isnan(b["image_auroc"])
    assert mean["image_auroc"] == df[df["category"] == "a"].iloc[0]["image_auroc"]
    assert "image_auroc undefined (NaN) in b: mean of the others" in mean["note"]


def test_p4_float64_maps_beyond_float32_are_scored_exactly(gt, tmp_path):
    """Maps of 1e300 * m are read as float64 (not cast to inf): every rank metric equals
    that of m itself."""
    small = _write_maps(gt, tmp_path / "small", cats=("a",))
    big = tmp_path / "big"
    for f in small.rglob("*.npy"):
        out = big / f.relative_to(small)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, np.load(f).astype(np.float64) * 1e300)
    a = score_folder(small, gt, categories=["a"])
    b = score_folder(big, gt, categories=["a"])
    for col in ("image_auroc", "pixel_auroc", "aupro@0.3"):
        assert b[col].iloc[0] == pytest.approx(a[col].iloc[0], abs=1e-9), col
