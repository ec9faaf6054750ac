"""`xeval run` / `xeval demo` units on Dask: the same numbers as one process, failures
(a unit that raises, a worker that dies), the options in configs and on the command line,
and the executor in the manifest."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from reliability import _toy

from xeval.adapters.imports import safe_imports
from xeval.cli import main
from xeval.data import write_tiny_mvtec
from xeval.engine.executor import UnitsFailedError
from xeval.engine.run import compute_unit, run
from xeval.errors import ConfigError, InputError
from xeval.protocols import load_config
from xeval.protocols.config import parse_config

run_module = importlib.import_module("xeval.engine.run")  # the module, not the function


def assert_same_table(a: Path, b: Path) -> None:
    """Exactly the same CSV: same columns and rows, values equal with ``==`` (NaN == NaN)."""
    x, y = pd.read_csv(a), pd.read_csv(b)
    assert list(x.columns) == list(y.columns) and len(x) == len(y)
    for c in x.columns:
        same = (x[c] == y[c]) | (x[c].isna() & y[c].isna())
        assert same.all(), f"{a.name}: column {c!r} differs in rows {list(x.index[~same])}"


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    return write_tiny_mvtec(root / "mvtec", categories=("a", "b"), n_train=4, n_good=2)


def _toy_cfg(data: Path, **overrides):
    with safe_imports(_toy.MODULE):
        return parse_config(_toy.toy_config(data, **overrides))


# ------------------------------------------------------------------- fake unit fns
def raise_for_a(task):
    """Fails the units of category ``a``, the first ones (a top-level function: workers
    import it); the units after it must still be computed and saved."""
    if task.split.category == "a":
        raise RuntimeError("simulated failure in category a")
    return compute_unit(task)


def kill_worker_once(task):
    """Kills its worker process the first time a unit of category ``a`` runs."""
    marker = Path(os.environ["XEVAL_TEST_MARKER"])
    if task.split.category == "a" and not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return compute_unit(task)


# --------------------------------------------------------------------- the same numbers
def test_toy_run_in_process_equals_two_workers(toy_data, tmp_path):
    with safe_imports(_toy.MODULE):
        one = run(_toy_cfg(toy_data), out_dir=tmp_path / "one")
        two = run(_toy_cfg(toy_data), out_dir=tmp_path / "two", workers=2)
    for name in ("results.csv", "per_image.csv"):
        assert_same_table(tmp_path / "one" / name, tmp_path / "two" / name)
    assert len(one.results) > 20
    ex = json.loads((tmp_path / "two" / "manifest.json").read_text())["executor"]
    assert ex["kind"] == "dask" and ex["workers"] == 2 and ex["threads_per_worker"] == 1
    assert set(ex["overhead"]["units"]) == {"a/toy", "b/toy"}
    local = json.loads((tmp_path / "one" / "manifest.json").read_text())["executor"]
    assert (local["kind"], local["workers"], local["scheduler"]) == ("in-process", 1, None)
    assert two.manifest["resume"] == {"a/toy": "computed", "b/toy": "computed"}


@pytest.mark.slow
def test_demo_quick_same_numbers_on_1_and_2_workers_and_in_process(tmp_path, monkeypatch):
    """The issue's must-show: identical results.csv and per_image.csv (values ==).
    In-process torch uses one thread like each worker (the gradient explainers run with
    torch's global thread count, see the README)."""
    import torch

    monkeypatch.setenv("XEVAL_CACHE", str(tmp_path / "cache"))
    cfg = load_config("demo_quick")
    run(cfg, out_dir=tmp_path / "w1", workers=1)
    run(cfg, out_dir=tmp_path / "w2", workers=2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(cfg, out_dir=tmp_path / "local")
    finally:
        torch.set_num_threads(before)
    for name in ("results.csv", "per_image.csv"):
        assert_same_table(tmp_path / "w1" / name, tmp_path / "w2" / name)
        assert_same_table(tmp_path / "w1" / name, tmp_path / "local" / name)


# --------------------------------------------------------------------------- failures
def test_failed_unit_is_named_and_the_others_saved_then_resumed(toy_data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(run_module, "compute_unit", raise_for_a)
    with safe_imports(_toy.MODULE), pytest.raises(UnitsFailedError) as info:
        run(_toy_cfg(toy_data), out_dir=out, workers=1)
    msg = str(info.value)
    assert "1 unit(s) failed" in msg and "the 1 finished unit(s) were saved" in msg
    assert "a/toy: RuntimeError: simulated failure in category a" in msg
    assert "raise_for_a" in msg  # the worker's traceback
    assert [f.key for f in info.value.failures] == ["a/toy"]
    assert not (out / "results.csv").exists()
    monkeypatch.undo()
    with safe_imports(_toy.MODULE):
        res = run(_toy_cfg(toy_data), out_dir=out)
    assert res.manifest["resume"] == {"a/toy": "computed", "b/toy": "reused (key matched)"}
    assert list(res.manifest["resume"]) == ["a/toy", "b/toy"]  # the run's order
    with safe_imports(_toy.MODULE):
        run(_toy_cfg(toy_data), out_dir=tmp_path / "ref")
    for name in ("results.csv", "per_image.csv"):
        assert_same_table(out / name, tmp_path / "ref" / name)


@pytest.mark.slow
def test_run_survives_a_killed_worker(toy_data, tmp_path, monkeypatch):
    marker = tmp_path / "died"
    monkeypatch.setenv("XEVAL_TEST_MARKER", str(marker))  # workers inherit it
    monkeypatch.setattr(run_module, "compute_unit", kill_worker_once)
    with safe_imports(_toy.MODULE):
        res = run(_toy_cfg(toy_data), out_dir=tmp_path / "out", workers=2)
    assert marker.exists()
    assert res.manifest["resume"] == {"a/toy": "computed", "b/toy": "computed"}
    monkeypatch.undo()
    with safe_imports(_toy.MODULE):
        run(_toy_cfg(toy_data), out_dir=tmp_path / "ref", resume=False)
    assert_same_table(tmp_path / "out" / "results.csv", tmp_path / "ref" / "results.csv")


# ------------------------------------------------------------------------ the options
@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"workers": 0}, r"workers must be an integer >= 1, got 0"),
        ({"workers": "2"}, r"workers must be an integer >= 1, got '2'"),
        ({"workers": True}, r"workers must be an integer >= 1, got True"),
        ({"scheduler": 8786}, r"scheduler must be the address .*got 8786"),
        ({"scheduler": ""}, r"scheduler must be the address .*got ''"),
        ({"workers": 2, "scheduler": "tcp://h:8786"}, r"workers .* or scheduler .*not both"),
        ({"threads_per_worker": 0}, r"threads_per_worker must be an integer >= 1, got 0"),
        ({"threads_per_worker": 1.5}, r"threads_per_worker must be an integer >= 1, got 1\.5"),
    ],
)
def test_config_execution_keys_are_checked(toy_data, extra, match):
    with pytest.raises(ConfigError, match=match):
        _toy_cfg(toy_data, **extra)


def test_config_execution_keys_do_not_change_the_config_hash(toy_data):
    base = _toy_cfg(toy_data)
    cfg = _toy_cfg(toy_data, workers=3, threads_per_worker=2)
    assert (cfg.workers, cfg.scheduler, cfg.threads_per_worker) == (3, None, 2)
    assert cfg.config_hash() == base.config_hash()
    assert _toy_cfg(toy_data, scheduler="tcp://h:8786").scheduler == "tcp://h:8786"


def test_command_line_wins_over_the_config(toy_data):
    cfg = _toy_cfg(toy_data, workers=3, threads_per_worker=2)
    opts = run_module._execution_options
    assert opts(cfg, workers=None, scheduler=None, threads_per_worker=None) == {
        "workers": 3,
        "scheduler": None,
        "threads_per_worker": 2,
    }
    assert opts(cfg, workers=None, scheduler="tcp://h:1", threads_per_worker=None) == {
        "workers": None,
        "scheduler": "tcp://h:1",
        "threads_per_worker": 2,
    }
    assert opts(cfg, workers=1, scheduler=None, threads_per_worker=4)["threads_per_worker"] == 4
    # the config's threads apply only on Dask; the caller's need Dask
    plain = _toy_cfg(toy_data, threads_per_worker=2)
    assert opts(plain, workers=None, scheduler=None, threads_per_worker=None) == {
        "workers": None,
        "scheduler": None,
        "threads_per_worker": None,
    }
    with pytest.raises(InputError, match="threads_per_worker=2 applies to Dask workers"):
        opts(plain, workers=None, scheduler=None, threads_per_worker=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": 0}, "workers must be an integer >= 1, got 0"),
        ({"workers": 2, "scheduler": "tcp://h:1"}, "not both"),
        ({"threads_per_worker": 3}, "threads_per_worker=3 applies to Dask workers"),
        ({"scheduler": ""}, "scheduler must be the address"),
    ],
)
def test_run_checks_options_before_writing(toy_data, tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        run(_toy_cfg(toy_data), out_dir=tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("cmd", ["run", "demo", "score"])
@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--workers", "0"], "--workers: '0' is out of range (expected an integer >= 1)"),
        (["--workers", "two"], "--workers: invalid integer value: 'two'"),
        (["--threads-per-worker", "0"], "--threads-per-worker: '0' is out of range"),
        (["--workers", "2", "--scheduler", "tcp://h:1"], "not allowed with argument --workers"),
    ],
)
def test_cli_flags_are_checked(cmd, flags, match, capsys):
    args = {"run": ["run", "demo_quick"], "demo": ["demo", "--quick"]}.get(
        cmd, ["score", "--maps", "m", "--gt", "g"]
    )
    with pytest.raises(SystemExit) as info:
        main([*args, *flags])
    assert info.value.code == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["run", "demo_quick"], ["demo", "--quick"]])
def test_cli_threads_without_dask_is_an_error(cmd, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*cmd, "--out", str(out), "--threads-per-worker", "2"]) == 2
    err = capsys.readouterr().err
    assert "xeval: error: threads_per_worker=2 applies to Dask workers" in err
    assert not out.exists()


def test_cli_passes_the_flags_to_run(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cfg, **kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    import xeval.engine

    monkeypatch.setattr(xeval.engine, "run", fake_run)  # what the command imports
    argv = ["demo", "--quick", "--workers", "3", "--threads-per-worker", "2"]
    assert main(argv) == 2
    assert (seen["workers"], seen["scheduler"], seen["threads_per_worker"]) == (3, None, 2)
    assert main(["run", "demo_quick", "--scheduler", "tcp://h:8786"]) == 2
    assert (seen["workers"], seen["scheduler"], seen["threads_per_worker"]) == (
        None,
        "tcp://h:8786",
        None,
    )


def test_cli_score_gets_the_executor(monkeypatch, tmp_path, capsys):
    """``xeval score --workers N`` hands score_folder a Dask executor, closed after."""
    import xeval.engine.score

    seen = {}

    def fake_score_folder(maps, gt, *, executor=None, **kwargs):
        seen["executor"] = executor
        seen["info"] = executor.describe()
        return pd.DataFrame([{"category": "mean", "aupro@0.3": 0.5}])

    monkeypatch.setattr(xeval.engine.score, "score_folder", fake_score_folder)
    argv = ["score", "--maps", str(tmp_path), "--gt", str(tmp_path)]
    assert main([*argv, "--workers", "1", "--threads-per-worker", "2"]) == 0
    assert seen["info"]["kind"] == "dask"
    assert (seen["info"]["workers"], seen["info"]["threads_per_worker"]) == (1, 2)
    assert seen["executor"].client.status == "closed"
    assert main(argv) == 0
    assert seen["info"]["kind"] == "in-process"
    assert main([*argv, "--threads-per-worker", "2"]) == 2
    assert "threads_per_worker=2 applies to Dask workers" in capsys.readouterr().err
