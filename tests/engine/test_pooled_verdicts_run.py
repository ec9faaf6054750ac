"""A whole run writes verdicts for the pooled metrics: the stream collects each
explainer's per-image histograms into the unit, and verdicts.csv gains the rows of the
image bootstrap, equal to pooled_verdicts on the units' summaries."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability import _toy

from xeval.adapters.imports import safe_imports
from xeval.data import write_tiny_mvtec
from xeval.engine import load
from xeval.engine.run import UnitTask, compute_unit, run
from xeval.engine.verdicts import ALL, pooled_verdicts
from xeval.errors import UndefinedMetricWarning
from xeval.protocols.config import build_metrics, parse_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pooled")
    return write_tiny_mvtec(root / "mvtec", categories=("a", "b"), n_good=3, n_defect=4)


def _cfg(data: Path):
    with safe_imports(_toy.MODULE):
        return parse_config(_toy.toy_config(data, evaluation={"bootstrap": 50}))


def test_run_writes_pooled_verdicts_from_the_units_summaries(data, tmp_path):
    cfg = _cfg(data)
    with safe_imports(_toy.MODULE), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        res = run(cfg, out_dir=tmp_path / "out", resume=False)
    v = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    pooled = v[v["meaning"].str.contains("paired image bootstrap of the pooled metric")]
    assert set(pooled["metric"]) == {"pixel_auroc", "aupro@0.3"}
    assert set(pooled["explainer"]) == {"native", "occlusion"}
    assert set(pooled["control"]) == {"random", "sobel", ALL}
    assert (pooled.loc[pooled["control"] != ALL, "n"] == 14).all()  # 2 x 7 test images
    assert set(pooled["verdict"]) <= {"beats", "ties", "loses"}
    # the per-image rows are unchanged and come first
    assert not v.iloc[: len(v) - len(pooled)]["meaning"].str.contains("pooled").any()
    # the same rows from the units' summaries (as a worker returns them, through JSON)
    units = {}
    splits = load.load_dataset(cfg)
    with safe_imports(_toy.MODULE), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for cat in ("a", "b"):
            unit = compute_unit(UnitTask(cfg, "toy", splits[cat], None, (_toy.MODULE,)))
            units[(cat, "toy")] = json.loads(json.dumps(unit["pooled"]))
    again = pooled_verdicts(
        units, metrics={"toy": build_metrics(cfg.metrics_for(cfg.detectors[0]))}, n_boot=50, seed=0
    )
    got = pooled.reset_index(drop=True)
    assert list(got["verdict"]) == list(again["verdict"])
    for col in ("mean_diff", "ci_low", "ci_high"):
        np.testing.assert_array_equal(got[col].to_numpy(float), again[col].to_numpy(float))
    # mean_diff is the binned difference of the mean rows' exact values
    r = res.results[(res.results["category"] == "mean") & (res.results["label"] == "pixel_auroc")]
    val = r.set_index("explainer")["value"]
    row = got[(got["explainer"] == "native") & (got["metric"] == "pixel_auroc")]
    row = row.set_index("control")
    assert row.loc["random", "mean_diff"] == pytest.approx(val["native"] - val["random"], abs=2e-3)


def test_a_resumed_run_keeps_the_pooled_rows_or_says_why(data, tmp_path):
    """Units reused from checkpoints: the pooled rows are the fresh run's when the
    checkpoint keeps the summaries; otherwise a ResumeWarning names the detector and the
    rows are absent, never silently half there."""
    from xeval.engine import checkpoint
    from xeval.errors import ResumeWarning

    cfg = _cfg(data)
    out = tmp_path / "out"
    with safe_imports(_toy.MODULE), warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        run(cfg, out_dir=out, resume=False)
    fresh = pd.read_csv(out / "verdicts.csv")
    with safe_imports(_toy.MODULE), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run(cfg, out_dir=out)
    assert set(res.manifest["resume"].values()) == {"reused (key matched)"}
    again = pd.read_csv(out / "verdicts.csv")
    said = [w for w in caught if issubclass(w.category, ResumeWarning)]
    if "pooled" in checkpoint._TABLES:
        pd.testing.assert_frame_equal(fresh, again)
        assert not said
    else:
        assert any("detector 'toy'" in str(w.message) for w in said)
        assert not again["meaning"].str.contains("pooled metric").any()
        pd.testing.assert_frame_equal(fresh.iloc[: len(again)], again)
