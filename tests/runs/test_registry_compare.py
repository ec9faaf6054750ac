"""``compare_runs``: values and differences read back exactly, direction-aware changes,
paired tests equal to scipy's Wilcoxon on the joined per-image values, Holm equal to
statsmodels, different data flagged and never paired."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from xeval.errors import InputError
from xeval.reports.writer import read_results_csv
from xeval.runs.compare import compare_runs, comparison_json
from xeval.runs.lookup import load_run
from xeval.runs.record import read_run_folder, record_run

from .conftest import CATEGORIES, PER_IMAGE_METRICS, synthetic_values, write_run


def _noisy_b(seed: int = 0):
    """A's values, with saliency shifted by +0.15 plus noise (so p-values differ)."""
    rng = np.random.default_rng(99)
    out = {}
    for k, v in synthetic_values(seed).items():
        if k[2] == "saliency":
            v = v + 0.15 + rng.normal(0, 0.2, v.size)
        out[k] = v
    return out


@pytest.fixture()
def pair(tmp_path, registry):
    a = write_run(tmp_path / "a", values=synthetic_values(0))
    b = write_run(
        tmp_path / "b",
        values=_noisy_b(),
        config_hash="cfg-b",
        set_values={("brick", "det", "saliency", "image_fpr@95tpr"): 0.05},
    )
    ids = record_run(command="run", run_dir=a), record_run(command="run", run_dir=b)
    return a, b, ids


def test_values_and_differences_are_those_of_the_files(pair):
    a, b, ids = pair
    cmp = compare_runs(load_run(ids[0]), load_run(ids[1]))
    ra, rb = read_results_csv(a / "results.csv"), read_results_csv(b / "results.csv")
    keys = ["detector", "explainer", "category", "label"]
    ref = ra.merge(rb, on=keys, suffixes=("_a", "_b"))
    got = cmp.table.merge(ref, on=keys)
    assert len(cmp.table) == len(ref) == 2 * 3 * 4  # explainers x (2 categories + mean) x metrics
    np.testing.assert_array_equal(got["value_a_x"], got["value_a_y"])
    np.testing.assert_array_equal(got["value_b_x"], got["value_b_y"])
    np.testing.assert_array_equal(got["diff"], got["value_b_y"] - got["value_a_y"])
    t = cmp.table.set_index(keys)
    assert t.loc[("det", "native", "brick", "pointing_game"), "change"] == "same"
    # lower is better: B's 0.05 against A's 0.1 is an improvement
    row = t.loc[("det", "saliency", "brick", "image_fpr@95tpr")]
    assert math.isclose(row["diff"], -0.05) and row["change"] == "better"
    assert row["verdict"] == "not tested" and row["note"] == "no per-image values"
    assert any("configs differ" in n for n in cmp.notes)
    assert not any("DIFFERENT DATA" in n for n in cmp.notes)


def test_paired_tests_equal_scipy_and_holm_equals_statsmodels(pair):
    from statsmodels.stats.multitest import multipletests

    a, b, ids = pair
    cmp = compare_runs(load_run(ids[0]), load_run(ids[1]), n_boot=200, seed=3)
    wa = pd.read_csv(a / "per_image.csv", dtype={"id": str})
    wb = pd.read_csv(b / "per_image.csv", dtype={"id": str})
    t = cmp.table
    tested = t[t["p_value"].notna()]
    # native: every paired difference is zero (same values): no test; saliency: tested
    assert set(tested["explainer"]) == {"saliency"}
    same = t[(t["explainer"] == "native") & t["label"].isin(PER_IMAGE_METRICS)]
    assert len(same) == 6 and same["verdict"].eq("identical").all()
    assert same["n_pairs"].gt(0).all() and same["paired_diff"].eq(0).all()
    assert len(tested) == len(PER_IMAGE_METRICS) * (len(CATEGORIES) + 1)
    for r in tested.to_dict(orient="records"):
        sa = wa[wa["explainer"] == r["explainer"]]
        sb = wb[wb["explainer"] == r["explainer"]]
        if r["category"] != "mean":
            sa, sb = sa[sa["category"] == r["category"]], sb[sb["category"] == r["category"]]
        j = sa.merge(sb, on=["category", "id"], suffixes=("_a", "_b"))
        d = (j[f"{r['label']}_b"] - j[f"{r['label']}_a"]).to_numpy()
        assert r["n_pairs"] == d.size
        assert r["p_value"] == pytest.approx(wilcoxon(d).pvalue, rel=1e-12)
        assert r["paired_diff"] == pytest.approx(d.mean(), rel=1e-12)
        assert r["ci_low"] <= r["paired_diff"] <= r["ci_high"]
        hib = PER_IMAGE_METRICS[r["label"]]
        if r["p_holm"] < 0.05:
            better = (d.mean() > 0) == hib
            assert r["verdict"] == ("B better" if better else "B worse")
        else:
            assert r["verdict"] == "no significant difference"
    expected = multipletests(tested["p_value"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(tested["p_holm"].to_numpy(), expected, rtol=1e-12)
    verdicts = set(tested["verdict"])
    assert "B better" in verdicts and "B worse" in verdicts  # pointing up, entropy up
    assert any("Holm-corrected as one family" in n for n in cmp.notes)


def test_different_data_is_flagged_and_not_paired(tmp_path, registry):
    a = write_run(tmp_path / "a", values=synthetic_values(0))
    b = write_run(tmp_path / "b", values=_noisy_b(), fingerprint="fp-other")
    cmp = compare_runs(read_run_folder(a), read_run_folder(b))
    assert any(n.startswith("DIFFERENT DATA") and "fp-other" in n for n in cmp.notes)
    assert cmp.table["n_pairs"].eq(0).all() and cmp.table["p_value"].isna().all()
    per_image_rows = cmp.table["label"].isin(PER_IMAGE_METRICS)
    assert cmp.table.loc[per_image_rows, "note"].eq("different data: no paired test").all()
    assert cmp.table["diff"].notna().all()  # the values are still compared


def test_images_in_one_run_only_are_left_out_and_said(tmp_path):
    va = synthetic_values(0)
    vb = _noisy_b()
    a = write_run(tmp_path / "a", values=va)
    b = write_run(tmp_path / "b", values=vb)
    wb = pd.read_csv(b / "per_image.csv", dtype={"id": str})
    drop = wb["id"].isin(["brick/test/defect/000", "brick/test/defect/001"])
    wb[~drop].to_csv(b / "per_image.csv", index=False)
    cmp = compare_runs(read_run_folder(a), read_run_folder(b))
    t = cmp.table.set_index(["detector", "explainer", "category", "label"])
    row = t.loc[("det", "saliency", "brick", "pointing_game")]
    assert row["n_pairs"] == 10
    assert "2 image value(s) not in both runs left out" in row["note"]
    assert t.loc[("det", "saliency", "mean", "pointing_game"), "n_pairs"] == 22


def test_filters_and_their_errors(pair):
    _, _, ids = pair
    a, b = load_run(ids[0]), load_run(ids[1])
    cmp = compare_runs(a, b, metrics=["aupro@0.3"], categories=["mean"])
    assert set(cmp.table["label"]) == {"aupro@0.3"} and set(cmp.table["category"]) == {"mean"}
    with pytest.raises(InputError, match=r"--metric nope: not in both runs .*pointing_game"):
        compare_runs(a, b, metrics=["nope"])
    with pytest.raises(InputError, match=r"--category wood: not in both runs .*brick"):
        compare_runs(a, b, categories=["wood"])


def test_rows_only_in_one_run_are_counted(tmp_path):
    va = synthetic_values(0)
    vb = {k: v for k, v in va.items() if k[2] == "native"}
    cmp = compare_runs(
        read_run_folder(write_run(tmp_path / "a", values=va)),
        read_run_folder(write_run(tmp_path / "b", values=vb)),
    )
    assert set(cmp.table["explainer"]) == {"native"}
    assert any("12 value(s) only in A and 0 only in B" in n for n in cmp.notes)


def test_json_has_no_nan(pair):
    _, _, ids = pair
    cmp = compare_runs(load_run(ids[0]), load_run(ids[1]), n_boot=50)
    data = json.loads(json.dumps(comparison_json(cmp), allow_nan=False))
    assert data["a"]["id"] == ids[0] and len(data["rows"]) == len(cmp.table)
    assert data["rows"][0]["p_value"] is None or isinstance(data["rows"][0]["p_value"], float)
