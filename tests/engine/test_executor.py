"""The executor interface (xeval.engine.executor): option checks, the in-process executor,
and a Dask LocalCluster of worker processes (order, failures, a killed worker, threads)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from xeval.engine.executor import (
    DaskExecutor,
    InProcessExecutor,
    UnitFailure,
    make_executor,
)
from xeval.errors import InputError


# ------------------------------------------------------------- task functions (top level:
# the workers import this module by name, as pytest put tests/engine on sys.path)
def square_late_first(task: tuple[int, int]) -> int:
    """``x * x``; the first tasks sleep longest, so they finish last."""
    x, n = task
    time.sleep(0.05 * (n - x))
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad input {x}")
    return x + 100


def die_once(task: tuple[str, int]) -> dict:
    """Kill this worker process the first time it runs (the marker file says so)."""
    marker, x = task
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return {"x": x, "pid": os.getpid()}


def warn_and_return(x: int) -> int:
    import warnings

    from xeval.errors import UndefinedMetricWarning

    warnings.warn(f"metric undefined for {x}", UndefinedMetricWarning, stacklevel=1)
    return x


def always_die(_task) -> None:
    os._exit(1)


def threads_seen(_task) -> dict:
    import torch

    return {
        "torch": torch.get_num_threads(),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
    }


# -------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workers": 0}, r"workers must be an integer >= 1, got 0"),
        ({"workers": -2}, r"workers must be an integer >= 1, got -2"),
        ({"workers": 1.5}, r"workers must be an integer >= 1, got 1\.5"),
        ({"workers": "2"}, r"workers must be an integer >= 1, got '2'"),
        ({"workers": True}, r"workers must be an integer >= 1, got True"),
        ({"scheduler": ""}, r"scheduler must be the address .*tcp://host:8786.*got ''"),
        ({"scheduler": 8786}, r"scheduler must be the address .*got 8786"),
        ({"scheduler": " tcp://h:1"}, r"scheduler must be .*got ' tcp://h:1'"),
        ({"workers": 2, "scheduler": "tcp://h:1"}, r"workers .*got 2.* or scheduler .*not both"),
        ({"workers": 2, "threads_per_worker": 0}, r"threads_per_worker must be .*>= 1, got 0"),
        ({"workers": 2, "threads_per_worker": 2.0}, r"threads_per_worker must be .*got 2\.0"),
        ({"threads_per_worker": 2}, r"threads_per_worker=2 applies to Dask workers"),
    ],
)
def test_bad_options_name_the_option(kwargs, match):
    with pytest.raises(InputError, match=match):
        make_executor(**kwargs)


def test_dask_executor_needs_workers_or_scheduler():
    with pytest.raises(InputError, match="workers .* or scheduler .* got neither"):
        DaskExecutor()
    with pytest.raises(InputError, match="retries must be an integer >= 0, got -1"):
        DaskExecutor(workers=1, retries=-1)


def test_unreachable_scheduler_is_an_input_error():
    with pytest.raises(InputError, match=r"scheduler 'tcp://127\.0\.0\.1:1' cannot be reached"):
        DaskExecutor(scheduler="tcp://127.0.0.1:1", connect_timeout=1)


@pytest.mark.parametrize("address", ["nonsense", "http://host:8786", "tcp://host"])
def test_malformed_scheduler_address_is_an_input_error(address):
    with pytest.raises(InputError, match=f"scheduler '{address}' is not a Dask scheduler address"):
        DaskExecutor(scheduler=address, connect_timeout=1)


# ----------------------------------------------------------------------- in-process
def test_in_process_runs_in_order_and_raises_at_once():
    ex = make_executor()
    assert isinstance(ex, InProcessExecutor)
    with ex:
        got = list(ex.map_units(fail_on_three, [1, 2], keys=["a", "b"]))
        assert got == [("a", 101), ("b", 102)]
        calls = []
        it = ex.map_units(lambda x: calls.append(x) or fail_on_three(x), [3, 4], keys=["c", "d"])
        with pytest.raises(ValueError, match="bad input 3"):
            list(it)
        assert calls == [3]  # stopped at the failure (today's behaviour)
    assert ex.describe()["kind"] == "in-process"
    assert set(ex.overhead()["units"]) == {"a", "b"}


@pytest.mark.parametrize(
    ("keys", "match"),
    [(["a"], "1 keys for 2 tasks"), (["a", "a"], "keys must be distinct")],
)
def test_keys_are_checked(keys, match):
    with pytest.raises(InputError, match=match):
        list(InProcessExecutor().map_units(fail_on_three, [1, 2], keys=keys))


# ----------------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask2():
    with DaskExecutor(workers=2, threads_per_worker=2) as ex:
        yield ex


def test_dask_results_in_task_order_and_failure_named(dask2):
    n = 6
    got = list(dask2.map_units(square_late_first, [(x, n) for x in range(n)], keys=list("abcdef")))
    assert got == [(k, x * x) for k, x in zip("abcdef", range(n), strict=True)]

    got = dict(dask2.map_units(fail_on_three, [1, 3, 5], keys=["c/d1", "c/d3", "c/d5"]))
    assert got["c/d1"] == 101 and got["c/d5"] == 105  # the others are kept
    bad = got["c/d3"]
    assert isinstance(bad, UnitFailure)
    assert bad.key == "c/d3" and bad.error_type == "ValueError"
    assert "unit c/d3 failed: ValueError: bad input 3" in str(bad)
    assert "fail_on_three" in bad.worker_traceback
    assert isinstance(bad.error, ValueError)

    info = dask2.describe()
    assert info["kind"] == "dask" and info["workers"] == 2
    assert info["threads_per_worker"] == 2 and info["scheduler"].startswith("tcp://")
    assert info["versions"]["distributed"]
    over = dask2.overhead()
    assert set(over["units"]) >= {"c/d1", "c/d3", "c/d5"}
    assert all(u["overhead_s"] >= 0 and u["worker_s"] >= 0 for u in over["units"].values())


def test_dask_worker_warnings_are_shown_on_the_client(dask2):
    from xeval.errors import UndefinedMetricWarning

    with pytest.warns(UndefinedMetricWarning, match="metric undefined for 7"):
        assert list(dask2.map_units(warn_and_return, [7], keys=["k"])) == [("k", 7)]


def test_dask_workers_use_threads_per_worker(dask2):
    seen = [r for _, r in dask2.map_units(threads_seen, range(4), keys=list("wxyz"))]
    assert {s["torch"] for s in seen} == {2}
    assert {s["omp"] for s in seen} == {"2"}
    assert os.getpid() not in {s["pid"] for s in seen}  # worker processes, not threads


def test_existing_cluster_through_scheduler_address():
    """--scheduler: a cluster started elsewhere (here without any thread setting) gets
    the thread limit from the executor (worker plugin and per task)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        with DaskExecutor(scheduler=cluster.scheduler_address, threads_per_worker=3) as ex:
            ((key, seen),) = list(ex.map_units(threads_seen, [0], keys=["only"]))
            info = ex.describe()
        assert cluster.scheduler_address  # still up: the executor does not close it
    assert key == "only" and seen["torch"] == 3 and seen["omp"] == "3"
    assert info["cluster"] == "external" and info["workers"] == 1
    assert info["scheduler"] == cluster.scheduler_address


def test_killed_worker_is_retried(dask2, tmp_path):
    marker = tmp_path / "died"
    tasks = [(str(marker), 1), (str(marker), 2)]
    got = list(dask2.map_units(die_once, tasks, keys=["u1", "u2"]))
    assert marker.exists()  # a worker did die
    assert [k for k, _ in got] == ["u1", "u2"]
    assert [r["x"] for _, r in got] == [1, 2]
    assert int(marker.read_text()) not in {r["pid"] for _, r in got}


@pytest.mark.slow
def test_worker_dying_every_time_is_a_failure_naming_the_unit():
    with DaskExecutor(workers=1, retries=0) as ex:
        ((key, res),) = list(ex.map_units(always_die, [0], keys=["cat/det"]))
    assert key == "cat/det" and isinstance(res, UnitFailure)
    assert res.error_type == "KilledWorker" and "cat/det" in str(res)
