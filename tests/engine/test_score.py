"""`xeval score` on a tiny MVTec tree: numbers equal the metric functions called
directly; missing maps and bad inputs give clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from xeval import metrics as M
from xeval.cli import main
from xeval.data import load_masks, load_mvtec, write_tiny_mvtec
from xeval.engine.score import score_folder
from xeval.errors import InputError


@pytest.fixture()
def tree(tmp_path):
    gt = write_tiny_mvtec(
        tmp_path / "gt",
        categories=("a", "b"),
        n_good=3,
        n_defect=3,
        size=(24, 20),
        defects=("scratch", "stain"),
    )
    maps_dir = tmp_path / "maps"
    rng = np.random.default_rng(0)
    truth = {}
    for cat in ("a", "b"):
        split = load_mvtec(gt, cat)
        masks = load_masks(split.test)
        maps, labels = [], []
        for s, m in zip(split.test, masks, strict=True):
            a = (rng.random((12, 10)) * 0.5).astype(np.float32)  # half resolution
            d = maps_dir / cat / "test" / s.defect
            d.mkdir(parents=True, exist_ok=True)
            stem = s.image_path.stem
            if s.defect == "good":
                np.save(d / f"{stem}.npy", a)
            else:
                tifffile.imwrite(d / f"{stem}.tiff", a)
            maps.append(M.resize_to(a, m.shape))
            labels.append(s.label)
        truth[cat] = (masks, maps, labels)
    return gt, maps_dir, truth


def test_score_matches_direct_metrics(tree, tmp_path, capsys):
    gt, maps_dir, truth = tree
    out = tmp_path / "s.json"
    assert main(["score", "--maps", str(maps_dir), "--gt", str(gt), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    for cat, (masks, maps, labels) in truth.items():
        assert got[cat]["aupro@0.3"] == pytest.approx(M.aupro(masks, maps), abs=1e-12)
        assert got[cat]["pixel_auroc"] == pytest.approx(M.pixel_auroc(masks, maps), abs=1e-12)
        assert got[cat]["pixel_aupr"] == pytest.approx(M.pixel_aupr(masks, maps), abs=1e-12)
        scores = [m.max() for m in maps]
        assert got[cat]["image_auroc"] == pytest.approx(M.image_auroc(labels, scores))
    mean = np.mean([got[c]["pixel_auroc"] for c in ("a", "b")])
    assert got["mean"]["pixel_auroc"] == pytest.approx(mean)
    assert "pixel_auroc" in capsys.readouterr().out


def test_score_threshold_metrics(tree):
    gt, maps_dir, truth = tree
    df = score_folder(maps_dir, gt, categories=["a"], threshold=0.3)
    masks, maps, _ = truth["a"]
    assert df.loc[0, "iou@t"] == pytest.approx(M.iou(masks, maps, threshold=0.3))


def test_missing_map_names_the_file(tree, capsys):
    gt, maps_dir, _ = tree
    victim = next((maps_dir / "a" / "test" / "scratch").iterdir())
    victim.unlink()
    with pytest.raises(InputError, match=f"a/test/scratch/{victim.stem}"):
        score_folder(maps_dir, gt, categories=["a"])
    assert main(["score", "--maps", str(maps_dir), "--gt", str(gt)]) == 2
    assert "no anomaly map" in capsys.readouterr().err


def test_nan_map_is_an_error(tree):
    gt, maps_dir, _ = tree
    p = next((maps_dir / "b" / "test" / "good").iterdir())
    a = np.load(p)
    a[0, 0] = np.nan
    np.save(p, a)
    with pytest.raises(InputError, match="NaN"):
        score_folder(maps_dir, gt, categories=["b"])


def test_no_matching_category(tmp_path, tree):
    gt, _, _ = tree
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no category"):
        score_folder(tmp_path / "empty", gt)
