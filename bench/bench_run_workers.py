"""Benchmark of ``xeval run`` on Dask workers (not a test).

Runs one protocol (default ``demo_quick``: 2 categories x 2 detectors = 4 units; the full
``demo`` takes minutes per run on 2 cores) with:

- in-process (the default executor; torch limited to 1 thread like each worker; BLAS
  keeps the threads it started with, so its numbers equal the workers' only when this
  script runs under ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1``:
  the full ``demo`` differs in the last bits otherwise -- see the README);
- ``--workers 1`` and ``--workers 2`` (a ``LocalCluster`` of worker processes);
- a simulated larger cluster: ``--workers 4`` (on a 2-core machine: 4 processes share
  2 cores), reporting the per-unit scheduler overhead.

For each: wall time of ``run()`` (cluster start and report included), the executor's
start-up time, the warm-up (importing xeval and torch on every worker), peak resident
memory per worker process (``VmHWM`` read on the worker after each unit; for the
in-process run, the whole process), the mean time a unit spent on its worker, the
mean per-unit overhead (waiting to start once a worker was free + bringing the result back, see
:meth:`xeval.engine.executor.DaskExecutor.overhead`), and whether ``results.csv`` and
``per_image.csv`` are identical (values ``==``, NaN == NaN) to the ``--workers 1`` run.

Run: ``python bench/bench_run_workers.py [--config demo_quick] [--simulate 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def same_table(a: Path, b: Path) -> bool:
    x, y = pd.read_csv(a), pd.read_csv(b)
    if list(x.columns) != list(y.columns) or len(x) != len(y):
        return False
    return all(((x[c] == y[c]) | (x[c].isna() & y[c].isna())).all() for c in x.columns)


def one_run(cfg, out: Path, **options) -> dict:
    import torch

    from xeval.engine import run
    from xeval.engine.executor import _peak_rss_mb

    before = torch.get_num_threads()
    if not options:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        res = run(cfg, out_dir=out, resume=False, **options)
    finally:
        torch.set_num_threads(before)
    wall = time.perf_counter() - t0
    ex = res.manifest["executor"]
    over = ex.get("overhead", {})
    peaks = over.get("peak_rss_mb_per_worker") or {"client": _peak_rss_mb()}
    units = over.get("units", {})
    return {
        "executor": ex["kind"],
        "workers": ex.get("workers"),
        "wall_s": round(wall, 2),
        "startup_s": round(over.get("startup_s", 0.0), 2),
        "warmup_s": round(over.get("warmup_s") or 0.0, 2),
        "units": len(units),
        "mean_unit_worker_s": round(over.get("mean_worker_s") or 0.0, 2)
        if "mean_worker_s" in over
        else round(sum(u["worker_s"] for u in units.values()) / max(1, len(units)), 2),
        "mean_unit_overhead_s": None
        if over.get("mean_overhead_s") is None
        else round(over["mean_overhead_s"], 3),
        "unit_overhead_s": {k: round(u.get("overhead_s", 0.0), 3) for k, u in units.items()},
        "peak_rss_mb_per_worker": sorted(round(v) for v in peaks.values()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="demo_quick", help="protocol name or YAML file")
    ap.add_argument("--simulate", type=int, default=4, help="workers of the simulated run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()

    from xeval.protocols import load_config

    cfg = load_config(a.config)
    print(f"config {a.config}; {os.cpu_count()} CPU cores", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("XEVAL_CACHE", str(root / "cache"))
        runs = {
            "in-process": one_run(cfg, root / "local"),
            "workers=1": one_run(cfg, root / "w1", workers=1),
            "workers=2": one_run(cfg, root / "w2", workers=2),
            f"workers={a.simulate}": one_run(cfg, root / "wn", workers=a.simulate),
        }
        folders = {"in-process": "local", "workers=1": "w1", "workers=2": "w2"}
        folders[f"workers={a.simulate}"] = "wn"
        for name, r in runs.items():
            r["identical_to_workers=1"] = all(
                same_table(root / "w1" / f, root / folders[name] / f)
                for f in ("results.csv", "per_image.csv")
            )
    ratio = runs["workers=1"]["wall_s"] / runs["workers=2"]["wall_s"]
    summary = {
        "config": a.config,
        "cpu_cores": os.cpu_count(),
        "runs": runs,
        "wall_ratio_w1_over_w2": round(ratio, 2),
    }
    print(json.dumps(summary, indent=2))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=2))
    return 0 if all(r["identical_to_workers=1"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
