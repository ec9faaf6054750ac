"""``xeval runs`` and ``xeval compare`` through the command line, on synthetic run folders
and (slow) on real ``xeval demo --quick`` image and video folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from xeval.cli import main
from xeval.runs.lookup import load_run
from xeval.runs.record import record_run

from .conftest import synthetic_values, write_run


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_lists_newest_first_and_marks_missing_folders(registry, run_pair, capsys):
    first = record_run(command="run", run_dir=run_pair[0])
    second = record_run(command="demo", run_dir=run_pair[1])
    code, out, _ = _run(capsys, "runs")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["id", "finished", "(UTC)"]
    assert lines[1].startswith(second) and lines[2].startswith(first)
    assert "synthetic" in lines[1] and "fp-same"[:8] in lines[1]
    assert "native, saliency" in lines[1] and "13 s" in lines[1]
    assert f"2 run(s) in {registry}" in out
    shutil.rmtree(run_pair[0])
    code, out, _ = _run(capsys, "runs")
    assert f"{run_pair[0]} (missing)" in out and f"{run_pair[1]} (missing)" not in out
    code, out, _ = _run(capsys, "runs", "--limit", "1")
    assert second in out and first not in out and "1 of 2 run(s)" in out
    code, out, _ = _run(capsys, "runs", "--json")
    data = json.loads(out)
    assert [r["id"] for r in data["runs"]] == [second, first]
    assert [r["folder_state"] for r in data["runs"]] == ["ok", "missing"]
    assert data["total"] == 2 and "manifest" not in data["runs"][0]


def test_runs_empty_missing_corrupt(registry, tmp_path, capsys):
    code, _, err = _run(capsys, "runs")
    assert code == 2 and "does not exist" in err and str(registry) in err
    code, _, err = _run(capsys, "runs", "--registry", "none")
    assert code == 2 and "run registry is disabled (--registry none)" in err
    record_run(command="run", run_dir=write_run(tmp_path / "r", values=synthetic_values(0)))
    with __import__("sqlite3").connect(registry) as conn:
        conn.execute("DELETE FROM runs")
    conn.close()
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and out.startswith("no run recorded in")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\0garbage" * 500)
    code, _, err = _run(capsys, "runs", "--registry", str(bad))
    assert code == 2 and err.startswith("xeval: error: run registry") and "not a readable" in err


def test_compare_by_id_prefix_and_folder(registry, run_pair, capsys):
    ida = record_run(command="run", run_dir=run_pair[0])
    idb = record_run(command="run", run_dir=run_pair[1])
    code, by_id, err = _run(capsys, "compare", ida, idb[16:], "--n-boot", "100")
    assert code == 0, err
    assert by_id.splitlines()[0].startswith(f"A: {ida}")
    assert "note: configs differ" in by_id
    code, by_folder, _ = _run(
        capsys, "compare", str(run_pair[0]), str(run_pair[1]), "--n-boot", "100"
    )
    assert by_folder == by_id
    shutil.rmtree(run_pair[1])  # deleted: still compared from the registry
    code, after, _ = _run(capsys, "compare", ida, idb, "--n-boot", "100")
    assert code == 0 and after == by_id
    code, out, _ = _run(capsys, "compare", ida, idb, "--metric", "pointing_game", "--json")
    rows = json.loads(out)["rows"]
    assert {r["label"] for r in rows} == {"pointing_game"}
    sal = [r for r in rows if r["explainer"] == "saliency" and r["category"] == "mean"][0]
    assert sal["verdict"] == "B better" and sal["n_pairs"] == 24
    a, b = load_run(ida).per_image, load_run(idb).per_image  # B's folder is deleted
    sel = (a["explainer"] == "saliency") & (a["label"] == "pointing_game")
    j = a[sel].merge(b, on=["category", "detector", "explainer", "id", "label"])
    assert sal["paired_diff"] == pytest.approx((j["value_y"] - j["value_x"]).mean(), rel=1e-12)
    assert 0.25 < sal["paired_diff"] < 0.35


def test_compare_errors_exit_2(registry, run_pair, capsys):
    ida = record_run(command="run", run_dir=run_pair[0])
    code, _, err = _run(capsys, "compare", ida, "nosuchrun")
    assert code == 2 and "run 'nosuchrun': no run id" in err and ida in err
    code, _, err = _run(capsys, "compare", ida, ida, "--metric", "aupro@0.5")
    assert code == 2 and "--metric aupro@0.5: not in both runs" in err and "aupro@0.3" in err
    code, _, err = _run(capsys, "compare", ida, ida, "--registry", "none")
    assert code == 2 and "disabled" in err and "name a run folder instead" in err
    # folders work without any registry
    code, out, err = _run(
        capsys, "compare", str(run_pair[0]), str(run_pair[1]), "--registry", "none"
    )
    assert code == 0, err
    assert out.splitlines()[0].startswith("A: (not recorded)")


def test_compare_different_data_is_flagged(registry, tmp_path, capsys):
    a = write_run(tmp_path / "a", values=synthetic_values(0))
    b = write_run(tmp_path / "b", values=synthetic_values(1), fingerprint="other-data")
    code, out, _ = _run(capsys, "compare", str(a), str(b))
    assert code == 0 and "note: DIFFERENT DATA: dataset fingerprints differ" in out
    assert "different data: no paired test" in out


# ---------------------------------------------------------------------------- real runs
def _per_image_values(folder, results) -> int:
    """Non-NaN per-image metric values of per_image.csv, counted with pandas."""
    wide = pd.read_csv(folder / "per_image.csv")
    cols = [c for c in wide.columns if c in set(results["label"])]
    return int(wide[cols].notna().to_numpy().sum())


@pytest.mark.slow
def test_demo_folder_recorded_listed_and_compared_after_moving(registry, demo_copy, capsys):
    from xeval.reports.writer import read_results_csv

    rid = record_run(command="demo", run_dir=demo_copy)
    got = load_run(rid)
    results = read_results_csv(demo_copy / "results.csv")
    assert len(got.results) == len(results)
    assert len(got.per_image) == _per_image_values(demo_copy, results) > 0
    again = record_run(command="demo", run_dir=demo_copy)
    moved = demo_copy.with_name("moved")
    demo_copy.rename(moved)
    code, out, _ = _run(capsys, "runs")
    assert code == 0 and f"{demo_copy} (missing)" in out and "demo-quick" in out
    code, out, err = _run(capsys, "compare", rid, again, "--json", "--n-boot", "50")
    assert code == 0, err
    data = json.loads(out)
    assert data["notes"] == []  # same config, same data, same version
    assert all(r["change"] in ("same", "undefined") for r in data["rows"])
    assert {r["verdict"] for r in data["rows"]} <= {"identical", "not tested"}
    assert any(r["verdict"] == "identical" for r in data["rows"])
    vals = np.array([r["diff"] for r in data["rows"] if r["diff"] is not None])
    assert vals.size and np.all(vals == 0)
    # the moved folder holds a finished run: it is compared directly
    code, out, err = _run(capsys, "compare", rid, str(moved), "--metric", "pointing_game")
    assert code == 0, err
    assert out.splitlines()[1].startswith("B: (not recorded)  demo-quick")
    assert str(moved) in out.splitlines()[1] and " worse " not in out and " better " not in out


@pytest.mark.slow
def test_video_demo_is_recorded(registry, tmp_path, capsys):
    out_dir = tmp_path / "video"
    assert main(["demo", "--video", "--quick", "--out", str(out_dir)]) == 0
    capsys.readouterr()
    rid = record_run(command="demo", run_dir=out_dir)
    got = load_run(rid)
    assert got.run["task"] == "video" and got.per_image.empty
    assert len(got.results) == len(pd.read_csv(out_dir / "results.csv"))
    code, out, _ = _run(capsys, "runs")
    assert "video-quick" in out
    code, out, _ = _run(capsys, "compare", rid, rid)
    assert code == 0 and "no per-image values" in out
