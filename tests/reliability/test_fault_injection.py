"""Fault injection: kill a run at random points, damage a random saved unit, resume; the
final results equal those of an uninterrupted run. And a test set without anomalies
gives a report with NaN where metrics are undefined, not a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from reliability import _toy
from xeval.adapters.imports import safe_imports
from xeval.data import write_tiny_mvtec
from xeval.engine import run
from xeval.protocols.config import parse_config

TESTS = Path(__file__).resolve().parents[1]


def _xeval(cfg: Path, out: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "xeval", "run", str(cfg), "--out", str(out)]
    cmd += ["--allow-import", _toy.MODULE]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def _started(proc: subprocess.Popen) -> float:
    """Wait until the run has loaded the data and begins its first unit (imports take
    most of a tiny run's time); return that moment."""
    for line in proc.stderr:
        if line.startswith(b"[xeval]"):
            return time.perf_counter()
    raise AssertionError("the run ended before its first unit")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = write_tiny_mvtec(root / "mvtec", categories=("a", "b", "c"), n_train=4, n_good=2)
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_toy.toy_config(data)))
    proc = _xeval(cfg, root / "reference")
    t = _started(proc)
    _finish(proc)
    return cfg, root, time.perf_counter() - t


def _damage(path: Path, rng: np.random.Generator) -> None:
    data = path.read_bytes()
    how = rng.integers(3)
    if how == 0:
        path.write_bytes(data[: int(rng.integers(0, max(len(data), 1)))])
    elif how == 1:
        path.write_bytes(rng.bytes(64))
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_damage_resume_equals_uninterrupted(seed, setup):
    cfg, root, duration = setup
    rng = np.random.default_rng(seed)
    out = root / f"out{seed}"
    proc = _xeval(cfg, out)
    _started(proc)
    time.sleep(float(rng.uniform(0.0, 1.0)) * duration)  # during a unit, a save, the report
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(p for p in (out / ".partial").rglob("*") if p.suffix in (".json", ".npz"))
    if saved:
        _damage(saved[int(rng.integers(len(saved)))], rng)
    _finish(_xeval(cfg, out))
    ref = pd.read_csv(root / "reference" / "results.csv")
    got = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(ref, got)
    pd.testing.assert_frame_equal(
        pd.read_csv(root / "reference" / "per_image.csv"), pd.read_csv(out / "per_image.csv")
    )


def test_test_set_without_anomalies_gives_nan_not_a_crash(tmp_path):
    data = write_tiny_mvtec(tmp_path / "mvtec", n_train=4, n_good=3, n_defect=0)
    with safe_imports(_toy.MODULE), pytest.warns(UserWarning):
        res = run(parse_config(_toy.toy_config(data)), out_dir=tmp_path / "out")
    df = res.results
    undefined = df[df["label"].isin(["image_auroc", "pixel_auroc", "aupro@0.3"])]
    assert len(undefined) and undefined["value"].isna().all()
    assert (tmp_path / "out" / "index.html").is_file()
