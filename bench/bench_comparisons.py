"""Benchmark of the report's statistics (not a test): what the comparisons add to
``write_report`` on a finished run folder.

For the run in RUN_DIR (e.g. ``xeval demo --quick --out /tmp/demo``), times (CPU and
wall) of:

- the paired comparisons (``pairwise_comparisons``, the run's own ``n_boot``) and the
  Friedman rankings (``category_rankings``): ``with_statistics``;
- the critical-difference diagrams (``plot_cd_diagram``, one per ranking);
- ``latex_tables`` (all tables, with the statistics);
- the whole ``write_report`` (every figure), for scale;

and the numbers of comparisons and rankings. Run:
``python bench/bench_comparisons.py RUN_DIR [--out /tmp/bench-report]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path


def _timed(label: str, fn):
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    print(
        f"{label:<34} cpu {time.process_time() - cpu:6.2f} s   "
        f"wall {time.perf_counter() - wall:6.2f} s"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from xeval.reports import write_report
    from xeval.reports.cd_diagram import plot_cd_diagram
    from xeval.reports.data import statistics_options, with_statistics
    from xeval.reports.latex import latex_tables
    from xeval.reports.rebuild import load_run

    warnings.simplefilter("ignore")
    report = load_run(args.run_dir)
    print(f"run {args.run_dir}: {statistics_options(report.manifest)}")
    _timed("comparisons + rankings", lambda: with_statistics(report))
    n_ranked = sum(br.ranking is not None for br in report.rankings)
    n_cmp = 0 if report.comparisons is None else len(report.comparisons)
    print(f"  {n_cmp} paired comparisons, {n_ranked} of {len(report.rankings)} rankings")
    with tempfile.TemporaryDirectory() as tmp:
        _timed(
            "CD diagrams",
            lambda: [
                plot_cd_diagram(br, Path(tmp) / f"cd{i}.png")
                for i, br in enumerate(report.rankings)
                if br.ranking is not None
            ],
        )
    _timed("latex_tables", lambda: latex_tables(report))
    fresh = load_run(args.run_dir)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-report-"))
    _timed("write_report (all figures)", lambda: write_report(fresh, out))
    print(f"report written to {out}")


if __name__ == "__main__":
    main()
