"""``xeval report RUN_DIR [--format html|md|latex] [--out DIR]``: rebuild the report of
a finished run from its files, without recomputing (see :mod:`xeval.reports.rebuild`).

Exit code 0 when the report was written; an invalid folder or file is an
:class:`~xeval.errors.InputError` (``xeval: error: ...``, exit code 2)."""

from __future__ import annotations

import sys
from pathlib import Path

FORMATS = ("html", "md", "latex")
"""The choices of ``--format`` (kept equal to :data:`xeval.reports.rebuild.FORMATS`,
which is not imported here to keep the command line fast to start)."""


def add_arguments(parser) -> None:
    """The arguments of ``xeval report``."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished run's folder")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="html",
        help="html: the full report (index.html, figures, results.md, ...); md: results.md "
        "alone; latex: tables.tex (image runs). Default html",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write here instead of RUN_DIR (a new or empty folder, or one written by "
        "xeval); the run's tables are copied next to an HTML report. Default: RUN_DIR, "
        "where only report files are replaced",
    )


def main(args) -> int:
    """Rebuild the report; print what was written."""
    import time

    from xeval.reports.rebuild import rebuild_report

    t = time.perf_counter()
    written = rebuild_report(args.run_dir, formats=(args.format,), out_dir=args.out)
    where = args.run_dir if args.out is None else args.out
    shown = "index.html" if "index.html" in written else next(iter(written), None)
    print(
        f"[xeval] rebuilt {len(written)} report files in {where} "
        f"({time.perf_counter() - t:.1f} s, nothing recomputed)",
        file=sys.stderr,
    )
    if shown is not None:
        print(f"report: {written[shown]}")
    return 0
