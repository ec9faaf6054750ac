"""`xeval demo --video --quick` and `xeval run` with video protocols, end to end on the
built-in synthetic video benchmark (quick build)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xeval.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("video") / "out"
    assert main(["demo", "--video", "--quick", "--out", str(out)]) == 0
    return out


def test_demo_video_quick_writes_the_whole_report(quick_run):
    for f in ("results.csv", "per_frame.csv", "verdicts.csv", "manifest.json", "results.md"):
        assert (quick_run / f).is_file(), f
    page = (quick_run / "index.html").read_text()
    for fig in (
        "frame_roc_reasoning",
        "rbdc_reasoning",
        "reason_ap_fine_reasoning",
        "reason_ap_coarse_reasoning",
        "confusion_reasoning",
        "filmstrip_reasoning",
    ):
        assert (quick_run / "figures" / f"{fig}.png").is_file(), fig
        assert f"figures/{fig}.png" in page
    res = pd.read_csv(quick_run / "results.csv")
    labels = set(res["label"])
    assert {"frame_auroc", "frame_auroc[macro]", "rbdc", "tbdc", "reason_map"} <= labels
    assert set(res["detector"]) == {"reasoning", "frame_difference", "clip_autoencoder"}
    # captum saliency explained the clip model frame by frame, scored like any map
    sal = res[(res["detector"] == "clip_autoencoder") & (res["explainer"] == "saliency")]
    assert {"pixel_auroc", "rbdc", "frame_auroc"} <= set(sal["label"])
    assert sal["value"].notna().all()
    # micro and macro side by side in the summary table
    md = (quick_run / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| detector"))
    assert "frame_auroc ↑" in header and "frame_auroc[macro] ↑" in header


def test_manifest_records_every_convention(quick_run):
    man = json.loads((quick_run / "manifest.json").read_text())
    conv = man["conventions"]
    assert {"frames", "thresholds", "confidence intervals", "verdicts"} <= set(conv)
    assert "reason_labels" in conv["dataset"] and "regions" in conv["dataset"]
    assert "micro" in conv["metrics"]["frame_auroc"]["note"]
    assert "macro" in conv["metrics"]["frame_auroc[macro]"]["note"]
    assert man["dataset"]["reasons"] and man["task"] == "video"


def test_run_check_accepts_the_video_protocol(capsys):
    assert main(["run", "video", "--check"]) == 0
    out = capsys.readouterr().out
    assert "detector reasoning" in out and "rbdc" in out


def test_run_check_names_a_bad_video_key(tmp_path, capsys):
    cfg = tmp_path / "v.yaml"
    cfg.write_text(
        "dataset: {format: synthetic_video, quick: true}\n"
        "detectors: [{kind: reasoning}]\n"
        "metrics: [{name: rbdc, beta: 2.0}]\n"
    )
    assert main(["run", str(cfg), "--check"]) == 2
    assert "beta" in capsys.readouterr().err
