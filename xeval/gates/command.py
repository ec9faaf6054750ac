"""``xeval gate SPEC.yaml --run RUN_DIR [--baseline RUN_DIR] [--junit FILE]
[--summary FILE.md]``: check a finished run against an acceptance spec.

Exit code 0 when every gate passes (failed ``severity: warn`` gates included), 1 when a
``severity: error`` gate fails, 2 when the spec, the run or the baseline is invalid
(:class:`~xeval.errors.XevalError`, shown as ``xeval: error: ...`` by the CLI). The
Markdown summary (:mod:`xeval.gates.summary`) is always printed to stdout, so that the
CI log shows it; ``--summary`` also writes it to a file (e.g. ``$GITHUB_STEP_SUMMARY``)
and ``--junit`` writes the JUnit XML (:mod:`xeval.gates.junit`), both atomically and
only when asked. ``SPEC.yaml`` may also name a built-in spec: ``demo`` is
``reports/gates/demo.yaml``, written for the quick demo run. The spec format:
:mod:`xeval.gates.spec`; how gates are evaluated: :mod:`xeval.gates.evaluate`. Imports
are deferred: the CLI imports this module when it builds its parser.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec",
        metavar="SPEC.yaml",
        help="the gate spec (YAML file), or the name of a built-in spec (demo)",
    )
    parser.add_argument(
        "--run", required=True, metavar="RUN_DIR", help="the finished run folder to check"
    )
    parser.add_argument(
        "--baseline",
        metavar="RUN_DIR",
        help="an accepted run folder; required when a gate has max_drop",
    )
    parser.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE")
    parser.add_argument(
        "--summary",
        metavar="FILE.md",
        help="also write the Markdown summary to FILE.md (it is always printed to stdout)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``xeval gate``; returns the exit code (0 pass, 1 a gate failed)."""
    from xeval.gates.evaluate import evaluate_spec
    from xeval.gates.junit import write_junit
    from xeval.gates.runfolder import read_run
    from xeval.gates.spec import find_spec, load_spec
    from xeval.gates.summary import markdown_summary, write_summary

    spec = load_spec(find_spec(args.spec))
    run = read_run(args.run, option="--run")
    baseline = None if args.baseline is None else read_run(args.baseline, option="--baseline")
    report = evaluate_spec(spec, run, baseline=baseline)
    if args.junit:
        write_junit(report, args.junit)
    if args.summary:
        write_summary(report, args.summary)
    print(markdown_summary(report), end="")
    return report.exit_code
