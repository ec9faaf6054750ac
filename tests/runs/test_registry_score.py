"""Recording ``xeval score``: the real table of :func:`score_folder` (exact and binned,
with a threshold, several FPR limits, a missing category) is recorded value for value,
every column with a known direction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from xeval.data import load_mvtec, write_tiny_mvtec
from xeval.engine.score import score_folder
from xeval.runs import store
from xeval.runs.compare import compare_runs
from xeval.runs.lookup import load_run
from xeval.runs.record import record_run, record_score, score_manifest


@pytest.fixture()
def score_tree(tmp_path):
    gt = write_tiny_mvtec(
        tmp_path / "gt", categories=("a", "b", "c"), n_good=2, n_defect=2, size=(16, 16)
    )
    maps_dir = tmp_path / "maps"
    rng = np.random.default_rng(0)
    for cat in ("a", "b"):  # c has no maps
        for s in load_mvtec(gt, cat).test:
            d = maps_dir / cat / "test" / s.defect
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / f"{s.image_path.stem}.npy", rng.random((16, 16)).astype(np.float32))
    return gt, maps_dir


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_score_table_recorded_value_for_value(registry, score_tree, mode):
    gt, maps_dir = score_tree
    opts = {"fpr_limits": (0.3, 0.05), "mode": mode, "threshold": 0.5, "allow_missing": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing category c
        table = score_folder(maps_dir, gt, **opts)
    manifest = score_manifest(maps=maps_dir, gt=gt, table=table, duration_s=1.0, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recording must not warn: every column is known
        rid = record_run(command="score", run_dir=None, results=table, manifest=manifest)
    got = load_run(rid).results.set_index(["category", "label"])
    metric_cols = [
        c for c in table.columns if c not in ("category", "n_images", "note") and "/" not in c
    ]
    assert {"aupro@0.3", "aupro@0.05", "pro@t", "iou@t", "image_fpr@95tpr"} <= set(metric_cols)
    for rec in table.to_dict(orient="records"):
        for col in metric_cols:
            v = got.loc[(rec["category"], col), "value"]
            assert (np.isnan(v) and np.isnan(rec[col])) or v == rec[col]
    assert load_run(rid).run["manifest"]["config"]["maps"] == str(maps_dir)
    assert load_run(rid).run["categories"] == ["a", "b", "c"]
    # recorded again through record_score: same data and config, every change "same"
    rid2 = record_score(table, maps=maps_dir, gt=gt, duration_s=2.0, **opts)
    assert load_run(rid2).run["manifest"]["config_hash"] == manifest["config_hash"]
    cmp = compare_runs(load_run(rid), load_run(rid2))
    assert cmp.notes == []
    assert set(cmp.table["change"]) <= {"same", "undefined"}


def _wired(command: str) -> bool:
    from xeval.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    return any("--registry" in a.option_strings for a in sub.choices[command]._actions)


def test_xeval_score_records_through_the_cli(tmp_path, score_tree, capsys):
    """Active once xeval/cli.py gives ``xeval score`` the --registry option."""
    if not _wired("score"):
        pytest.skip("xeval score has no --registry option yet (cli.py wiring of issue 11)")
    from xeval.cli import main

    gt, maps_dir = score_tree
    reg = tmp_path / "cli.sqlite"
    argv = ["score", "--maps", str(maps_dir), "--gt", str(gt), "--categories", "a", "b"]
    assert main([*argv, "--registry", str(reg)]) == 0
    assert main([*argv, "--registry", "none"]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*argv, "--registry", "/proc/self/no.sqlite"]) == 0  # warns, not fails
    # one line on stderr once RegistryWarning is an xeval.errors warning, else recorded
    shown = capsys.readouterr().err + "".join(str(w.message) for w in caught)
    assert shown.count("not recorded in the run registry") == 1
    with store.connect(reg) as (conn, _):
        runs = store.list_runs(conn)
    assert len(runs) == 1 and runs[0]["command"] == "score"
    assert runs[0]["argv"] == [*argv, "--registry", str(reg)]
    assert runs[0]["duration_s"] > 0 and runs[0]["categories"] == ["a", "b"]
