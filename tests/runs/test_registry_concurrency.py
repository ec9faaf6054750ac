"""The registry survives two processes recording at once and a process killed (SIGKILL)
in the middle of its transaction: no corruption, no half rows."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from xeval.runs import store
from xeval.runs.lookup import load_run
from xeval.runs.record import read_run_folder, record_run

# The children import only the store (stdlib sqlite3): they start in a fraction of a
# second, so that their writes overlap even on a loaded machine.
_WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from xeval.runs import store

    record, registry, ready, go, n = sys.argv[1:]
    rec = json.loads(Path(record).read_text())
    Path(ready).write_text("ready")
    while not Path(go).exists():
        time.sleep(0.002)
    for _ in range(int(n)):  # one connection per run, as each xeval command opens its own
        with store.connect(registry, write=True) as (conn, _):
            rid = store.insert_run(conn, rec["run"], rec["results"], rec["per_image"])
        print(rid, flush=True)
    """
)

_KILLED = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from xeval.runs import store

    record, registry, marker = sys.argv[1:]
    rec = json.loads(Path(record).read_text())
    with store.connect(registry, write=True) as (conn, _):
        store.insert_run(
            conn, rec["run"], rec["results"], rec["per_image"],
            _pause_s=60, _in_transaction_marker=marker,
        )
    """
)


def _dump(folder: Path, dest: Path) -> Path:
    """The record of a run folder as JSON for a child process."""
    rec = read_run_folder(folder)
    data = {
        "run": rec.run,
        "results": [list(r) for r in rec.results.itertuples(index=False, name=None)],
        "per_image": [list(r) for r in rec.per_image.itertuples(index=False, name=None)],
    }
    dest.write_text(json.dumps(data, default=lambda v: v.item()))
    return dest


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("runs", "results", "per_image")
        }
    finally:
        conn.close()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"child did not reach {path.name} in {timeout} s")
        time.sleep(0.01)


def test_two_processes_record_at_once(registry, run_pair, tmp_path):
    """Both start on a registry that does not exist yet (both create the schema)."""
    n = 20
    go = tmp_path / "go"
    procs, ready = [], []
    for k, folder in enumerate(run_pair):
        ready.append(tmp_path / f"ready{k}")
        record = _dump(folder, tmp_path / f"record{k}.json")
        argv = [sys.executable, "-c", _WRITER, str(record), str(registry), str(ready[-1])]
        procs.append(
            subprocess.Popen(
                [*argv, str(go), str(n)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for r, p in zip(ready, procs, strict=True):
        _wait_for(r, p)
    go.write_text("go")
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ids = [out.split() for out, _ in outs]
    assert [len(x) for x in ids] == [n, n]
    per_run = {k: read_run_folder(f) for k, f in enumerate(run_pair)}
    with store.connect() as (conn, _):
        assert store.integrity_check(conn) == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert store.count_runs(conn) == 2 * n
        for k, run_ids in enumerate(ids):
            for rid in run_ids:
                got = store.load_results(conn, rid)
                assert len(got) == len(per_run[k].results)
                assert len(store.load_per_image(conn, rid)) == len(per_run[k].per_image)
                assert store.get_run(conn, rid)["run_dir"] == str(run_pair[k])
    counts = _counts(registry)
    assert counts["results"] == n * sum(len(r.results) for r in per_run.values())


def test_killed_in_the_middle_leaves_no_half_rows(registry, run_pair, tmp_path):
    kept = record_run(command="run", run_dir=run_pair[0])
    before = _counts(registry)
    marker = tmp_path / "in-transaction"
    record = _dump(run_pair[1], tmp_path / "record.json")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(record), str(registry), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(marker, proc)
        half = marker.read_text()
        # the runs row is written, inside the open transaction: not visible to others
        assert _counts(registry) == before
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _counts(registry) == before
    with store.connect() as (conn, _):
        assert store.integrity_check(conn) == "ok"
        assert store.match_ids(conn, half) == []
        for table in ("results", "per_image"):
            n = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (half,))
            assert n.fetchone()[0] == 0
    assert len(load_run(kept).results) == len(read_run_folder(run_pair[0]).results)
    again = record_run(command="run", run_dir=run_pair[1])  # the registry still writes
    assert again and _counts(registry)["runs"] == before["runs"] + 1


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (read-only)")
def test_registry_on_a_read_only_file_system_warns(run_pair):
    from xeval.runs.record import RegistryWarning

    with pytest.warns(RegistryWarning, match="not recorded"):
        assert (
            record_run(command="run", run_dir=run_pair[0], registry="/proc/self/r.sqlite") is None
        )
