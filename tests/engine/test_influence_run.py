"""The contaminated-training runner: `xeval run contamination_quick` end to end through
the CLI, the files it writes, and the same numbers for the same seeds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from xeval.influence.evaluation import detection_metrics
from xeval.protocols import load_config
from xeval.results import RESULT_COLUMNS


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    from xeval.cli import main

    out = tmp_path_factory.mktemp("influence") / "run"
    with pytest.MonkeyPatch.context() as mp:
        import sys
        from io import StringIO

        err = StringIO()
        mp.setattr(sys, "stderr", err)
        assert main(["run", "contamination_quick", "--out", str(out)]) == 0
    # the CLI prints warnings its own way: once per method, with the reason
    assert err.getvalue().count("'grad_cos': no self-influence ranking") == 1
    return out


def test_run_writes_the_report(quick_run):
    for name in (
        "results.csv",
        "per_seed.csv",
        "curves.csv",
        "results.md",
        "index.html",
        "manifest.json",
    ):
        assert (quick_run / name).is_file(), name
    assert list((quick_run / "figures").glob("cdc_*.png"))
    assert list((quick_run / "figures").glob("gallery_*.png"))
    html = (quick_run / "index.html").read_text()
    assert "Content-Security-Policy" in html and "<script" not in html
    m = json.loads((quick_run / "manifest.json").read_text())
    assert m["task"] == "influence" and m["seeds"] == [0, 1] and m["config_hash"]
    assert m["dataset_fingerprint"] and m["versions"]["torch"] and m["timings"]["total_s"] > 0
    assert m["contamination"]["brick/seed0/rate0.2"] == {"k": 3, "n_train": 15}


def test_results_table_is_the_long_format_with_controls(quick_run):
    res = pd.read_csv(quick_run / "results.csv")
    assert list(res.columns) == RESULT_COLUMNS
    ctrl = dict(zip(res["explainer"], res["control"], strict=False))
    assert ctrl == {
        "grad_dot": False,
        "grad_cos": False,
        "random": True,
        "detector_score": True,
        "knn_distance": True,
    }
    assert set(res["category"]) == {"brick", "mean"}
    assert not res.duplicated(["explainer", "category", "label"]).any()
    cost = res[res["family"] == "cost"]
    assert (~cost["higher_is_better"].astype(bool)).all()
    # grad_cos has no self-influence: its ranking metrics are NaN with the reason
    gc = res[(res["explainer"] == "grad_cos") & res["metric"].str.startswith("planted_")]
    assert gc["value"].isna().all() and gc["note"].str.contains("no self-influence").all()
    assert res.loc[res["explainer"] == "grad_cos", "label"].eq("attribution_auprc@0.2").any()


def test_aggregates_are_the_mean_and_t_interval_of_the_seeds(quick_run):
    from scipy import stats

    res = pd.read_csv(quick_run / "results.csv")
    ps = pd.read_csv(quick_run / "per_seed.csv")
    v = ps[(ps["method"] == "random") & (ps["metric"] == "planted_auroc")]["value"].to_numpy()
    row = res[
        (res["explainer"] == "random")
        & (res["label"] == "planted_auroc@0.2")
        & (res["category"] == "brick")
    ].iloc[0]
    assert row["value"] == pytest.approx(v.mean()) and row["n"] == len(v) == 2
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    # intersected with the AUROC's range [0, 1]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((max(lo, 0.0), min(hi, 1.0)))


def test_seed_interval_is_intersected_with_the_metric_range():
    from scipy import stats

    from xeval.engine.influence import seed_summary

    v = np.array([0.2, 0.9, 1.0])  # a wide t-interval: it leaves [0, 1] on both sides
    lo, hi = stats.t.interval(0.95, 2, loc=v.mean(), scale=stats.sem(v))
    assert lo < 0 and hi > 1
    s = seed_summary(v, bounds=(0.0, 1.0))
    assert (s["ci_low"], s["ci_high"]) == (0.0, 1.0) and s["mean"] == pytest.approx(0.7)
    s = seed_summary(v)  # no bounds: the t-interval itself
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((lo, hi))


def test_per_seed_ranking_metrics_recompute_from_scratch(tmp_path):
    """One repetition redone by hand: contaminate, train, score, rank."""
    from xeval.engine.influence import _build_detector, _Images, _repetition
    from xeval.engine.load import load_dataset
    from xeval.influence.contamination import contaminate
    from xeval.rng import derived_seed

    cfg = load_config("contamination_quick")
    cfg = dataclasses.replace(
        cfg, seeds=(0,), report=dataclasses.replace(cfg.report, gallery=False)
    )
    split = load_dataset(cfg)["brick"]
    det = _build_detector(cfg, 0)
    images = _Images(det.input_size, 16, "brick")
    rep = _repetition(cfg, split, images, seed=0, rate=0.2, gallery=False)
    got = {r["metric"]: r["value"] for r in rep["rows"] if r["method"] == "detector_score"}
    cs = contaminate(
        split.train, split.test, rate=0.2, seed=derived_seed(0, "brick", "contaminate")
    )
    det = _build_detector(cfg, 0)
    train = images(list(cs.train))
    det.fit([train])
    want = detection_metrics(det.score(train), cs.planted)
    for k, v in want.items():
        assert got[f"planted_{k}"] == pytest.approx(v)


def _small(cfg):
    return dataclasses.replace(
        cfg,
        methods=cfg.methods[:1],
        report=dataclasses.replace(cfg.report, figures=False, gallery=False),
    )


def test_same_seeds_same_numbers_other_seeds_other_numbers(tmp_path):
    from xeval.engine import run

    cfg = dataclasses.replace(_small(load_config("contamination_quick")), seeds=(1,))
    a = run(cfg, out_dir=tmp_path / "a").results
    b = run(cfg, out_dir=tmp_path / "b").results
    c = run(dataclasses.replace(cfg, seeds=(7,)), out_dir=tmp_path / "c").results
    keep = a["family"] != "cost"  # wall time and memory are measurements, not results
    pd.testing.assert_frame_equal(a[keep].reset_index(drop=True), b[keep].reset_index(drop=True))
    va = a[keep & (a["label"] == "planted_auroc@0.2")]["value"].to_numpy()
    vc = c[(c["family"] != "cost") & (c["label"] == "planted_auroc@0.2")]["value"].to_numpy()
    assert not np.allclose(va, vc)


def test_resume_must_be_a_bool_and_output_rules_hold(tmp_path):
    from xeval.engine import run
    from xeval.errors import InputError

    cfg = _small(load_config("contamination_quick"))
    with pytest.raises(InputError, match="resume must be True or False"):
        run(cfg, out_dir=tmp_path / "x", resume="yes")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="was not written by xeval"):
        run(cfg, out_dir=foreign)


def test_ground_truth_rows_on_the_tiny_model(quick_run):
    res = pd.read_csv(quick_run / "results.csv")
    gt = res[(res["family"] == "ground_truth") & (res["category"] == "brick")]
    assert set(gt["label"]) == {"loo_spearman", "lds", "self_loo_spearman"}
    for name in ("grad_dot", "random", "detector_score", "knn_distance"):
        assert {"loo_spearman", "lds"} <= set(gt[gt["explainer"] == name]["label"])
    # grad_cos has no self-influence: no self_loo_spearman row for it
    assert "self_loo_spearman" not in set(gt[gt["explainer"] == "grad_cos"]["label"])
    vals = gt["value"].dropna()
    assert ((vals >= -1) & (vals <= 1)).all()
    m = json.loads((quick_run / "manifest.json").read_text())
    assert m["ground_truth"]["retrainings"].startswith("9 (leave-one-out) + 4 (subsets of 4)")


def test_pick_tests_takes_planted_types_only_and_never_a_planted_image():
    from dataclasses import dataclass as dc

    from xeval.engine.influence import _pick_tests
    from xeval.influence.contamination import contaminate

    @dc(frozen=True)
    class It:
        id: str
        defect: str

    normal = [It(f"n{i}", "good") for i in range(30)]
    pool = [It(f"{t}{i}", t) for t in ("hole", "stain", "cut") for i in range(5)]
    pool += [It(f"g{i}", "good") for i in range(4)]
    cs = contaminate(normal, pool, rate=0.1, seed=0, defects=["hole", "stain"])
    picked = _pick_tests(cs, max_anomalies=6, n_normal=2, seed=1)
    planted = {it.id for it in cs.train if it.defect != "good"}
    assert not planted & {p.id for p in picked}
    kinds = [p.defect for p in picked]
    assert kinds[-2:] == ["good", "good"] and set(kinds[:-2]) == {"hole", "stain"}
    assert abs(kinds.count("hole") - kinds.count("stain")) <= 1
    assert picked == _pick_tests(cs, max_anomalies=6, n_normal=2, seed=1)


def test_peak_memory_sees_a_large_allocation():
    from xeval.engine.influence import _PeakMemory, _rss_bytes

    if _rss_bytes() is None:
        pytest.skip("no /proc/self/statm on this platform")
    with _PeakMemory() as pm:
        a = np.ones(80 * 2**20 // 8)  # 80 MiB, touched
        a.sum()
        import time

        time.sleep(0.02)
        del a
    assert 60 <= pm.mib <= 400


def _row(explainer, value, lo, hi, control, category="mean", label="planted_auroc@0.1"):
    return {
        "explainer": explainer,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "control": control,
        "category": category,
        "label": label,
    }


def test_conclusion_says_beats_loses_or_not_separable():
    from xeval.reports.influence import conclusion

    res = pd.DataFrame(
        [
            _row("a", 0.95, 0.9, 1.0, False),
            _row("b", 0.50, 0.4, 0.6, False),
            _row("c", 0.80, 0.6, 0.95, False),
            _row("random", 0.5, 0.45, 0.55, True),
            _row("knn_distance", 0.7, 0.65, 0.75, True),
        ]
    )
    text = " ".join(conclusion(res, [0.1]))
    assert "**a** (planted AUROC 0.950) beats the best control **knn_distance**" in text
    assert "**b** (planted AUROC 0.500) loses to" in text
    assert "**c** (planted AUROC 0.800) is not separable from" in text


def test_mean_rows_over_categories_drop_the_interval():
    from xeval.engine.influence import _mean_rows

    rows = [
        {**_row("a", 0.6, 0.5, 0.7, False, category="brick"), "n": 3, "note": ""},
        {**_row("a", 0.8, 0.7, 0.9, False, category="grass"), "n": 3, "note": ""},
    ]
    (m,) = _mean_rows(rows)
    assert m["category"] == "mean" and m["value"] == pytest.approx(0.7)
    assert np.isnan(m["ci_low"]) and "mean over categories" in m["note"]
    (one,) = _mean_rows(rows[:1])
    assert (one["value"], one["ci_low"], one["ci_high"]) == (0.6, 0.5, 0.7)


def test_influence_runs_refuse_dask_options():
    """Influence runs execute in one process: Dask options are an error, not ignored."""
    from xeval.engine import run
    from xeval.errors import InputError
    from xeval.protocols import load_config

    cfg = load_config("contamination_quick")
    for kw in ({"workers": 2}, {"scheduler": "tcp://127.0.0.1:8786"}, {"threads_per_worker": 1}):
        with pytest.raises(InputError, match="influence runs execute in one process"):
            run(cfg, out_dir="/nonexistent/never-written", **kw)
