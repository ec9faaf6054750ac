"""`xeval run` and `xeval demo --quick` end to end on tiny data: files, numbers, resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from xeval.cli import main
from xeval.reports import read_results_csv

TINY = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"format": "textures", "quick": True, "categories": ["brick"]},
    "detectors": [
        {
            "recipe": "conv_autoencoder",
            "params": {"epochs": 1, "num_threads": 1},
            "explainers": ["native", "saliency", "random"],
        }
    ],
    "explainers": ["native"],
    "metrics": [
        "image_auroc",
        "pixel_auroc",
        {"name": "aupro", "fpr_limit": 0.3},
        "iou_per_image",
        "relevance_mass",
        "pointing_game",
        {"name": "deletion_auc", "steps": 4, "max_images": 2},
        {"name": "insertion_auc", "steps": 4, "max_images": 2},
        {"name": "max_sensitivity", "n_samples": 2, "max_images": 2},
        {"name": "mprt_spearman", "max_images": 2},
        "gini_sparseness",
    ],
    "evaluation": {"bootstrap": 50},
    "report": {"figures": False, "gallery": False},
}


@pytest.fixture()
def tiny_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XEVAL_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def test_run_writes_results_and_resumes(tiny_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(tiny_config), "--out", str(out)]) == 0
    df = read_results_csv(out / "results.csv")
    assert set(df["explainer"]) == {"native", "saliency", "random"}
    assert {"brick", "mean"} <= set(df["category"])
    row = df[(df.explainer == "native") & (df.label == "aupro@0.3") & (df.category == "brick")]
    assert 0 <= float(row["value"].iloc[0]) <= 1
    assert json.loads(row["params"].iloc[0]) == {"fpr_limit": 0.3, "mode": "exact"}
    assert row["family"].iloc[0] == "localisation" and not row["control"].iloc[0]
    assert df.loc[df.explainer == "random", "control"].all()
    sal = df[(df.explainer == "saliency") & (df.category == "brick")].set_index("label")
    for m in (
        "relevance_mass",
        "pointing_game",
        "deletion_auc",
        "insertion_auc",
        "max_sensitivity",
        "mprt_spearman",
        "gini_sparseness",
    ):
        assert m in sal.index, m
    assert (out / "verdicts.csv").exists() and (out / "ranks.csv").exists()
    page = (out / "index.html").read_text()
    assert "Verdicts against the trivial controls" in page and "Profile" in page
    man = json.loads((out / "manifest.json").read_text())
    assert man["config_hash"] and man["dataset_fingerprint"] and man["seed"] == 0
    assert (out / "index.html").exists() and (out / "results.md").exists()
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 3 * man["dataset_categories"]["brick"]["test"]
    capsys.readouterr()
    # second run: every unit is resumed, identical numbers
    assert main(["run", str(tiny_config), "--out", str(out)]) == 0
    assert "resumed" in capsys.readouterr().err
    df2 = read_results_csv(out / "results.csv")
    pd.testing.assert_frame_equal(df, df2)


def test_same_seed_same_numbers_fresh_run(tiny_config, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(tiny_config), "--out", str(a)]) == 0
    assert main(["run", str(tiny_config), "--out", str(b), "--no-resume"]) == 0
    pd.testing.assert_frame_equal(
        read_results_csv(a / "results.csv"), read_results_csv(b / "results.csv")
    )


def test_bad_config_exit_code_and_message(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({**TINY, "metrics": [{"name": "aupro", "mode": "fast"}]}))
    assert main(["run", str(p)]) == 2
    err = capsys.readouterr().err
    assert "metrics[0] 'aupro'" in err and "option 'mode'" in err and "'fast'" in err
    p.write_text(yaml.safe_dump({**TINY, "metrics": {"mode": "fast"}}))  # the 0.1 form
    assert main(["run", str(p)]) == 2
    assert "metrics.mode must be" in capsys.readouterr().err
