"""Golden results: `xeval demo --quick` gives every number of tests/golden (see its
README for when and why they were last regenerated), to 1e-9 relative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xeval.cli import main

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
RENAME = {"gini": "gini_sparseness", "entropy": "entropy_complexity"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("golden")
    mp.setenv("XEVAL_CACHE", str(tmp / "cache"))
    try:
        assert main(["demo", "--quick", "--out", str(tmp / "demo"), "--no-resume"]) == 0
    finally:
        mp.undo()
    return tmp / "demo"


def _same(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=1e-9, atol=1e-12)


def test_results_unchanged(demo):
    old = pd.read_csv(GOLDEN / "results.csv")
    if "label" not in old:  # written by xeval 0.1
        old["label"] = old["metric"].replace(RENAME)
    new = pd.read_csv(demo / "results.csv")
    key = ["detector", "explainer", "category", "label"]
    m = old.merge(new, on=key, how="left", suffixes=("_old", "_new"), indicator=True)
    assert (m["_merge"] == "both").all(), m.loc[m["_merge"] != "both", key]
    for col in ("value", "ci_low", "ci_high", "n", "threshold"):
        same = _same(m[f"{col}_old"], m[f"{col}_new"])
        assert same.all(), m.loc[~same, [*key, f"{col}_old", f"{col}_new"]].head()
    for col in ("higher_is_better",):
        assert (m[f"{col}_old"] == m[f"{col}_new"]).all()


def test_per_image_unchanged(demo):
    old = pd.read_csv(GOLDEN / "per_image.csv").rename(
        columns={**RENAME, "iou@t": "iou_per_image@t"}
    )
    new = pd.read_csv(demo / "per_image.csv")
    key = ["category", "detector", "explainer", "id"]
    m = old.merge(new, on=key, suffixes=("_old", "_new"))
    assert len(m) == len(old) == len(new)
    for col in old.columns:
        if col in key:
            continue
        a, b = m[f"{col}_old"], m[f"{col}_new"]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            same = _same(a, b)
        else:
            same = (a.fillna("").astype(str) == b.fillna("").astype(str)).to_numpy()
        assert same.all(), (col, m.loc[~same, [*key, f"{col}_old", f"{col}_new"]].head())


def test_verdicts_and_ranks_unchanged(demo):
    old = pd.read_csv(GOLDEN / "verdicts.csv").replace({"metric": {"iou@t": "iou_per_image@t"}})
    new = pd.read_csv(demo / "verdicts.csv")
    key = ["detector", "explainer", "metric", "control"]
    m = old.merge(new, on=key, suffixes=("_old", "_new"))
    assert len(m) == len(old) == len(new)
    assert (m["verdict_old"] == m["verdict_new"]).all()
    assert _same(m["mean_diff_old"], m["mean_diff_new"]).all()
    ranks_old, ranks_new = pd.read_csv(GOLDEN / "ranks.csv"), pd.read_csv(demo / "ranks.csv")
    pd.testing.assert_frame_equal(ranks_old, ranks_new[ranks_old.columns])


def test_report_files(demo):
    for name in ("index.html", "results.md", "manifest.json", "figures/gallery.png"):
        assert (demo / name).is_file(), name
