"""``xeval runs`` (list the recorded runs) and ``xeval compare RUN_A RUN_B`` (compare two
runs metric by metric). Imports stay light: the parser is built for every command."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from xeval.runs.store import add_registry_argument

__all__ = [
    "add_compare_arguments",
    "add_registry_argument",
    "add_runs_arguments",
    "compare_main",
    "runs_main",
]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid integer value: {text!r} (expected a whole number >= 1)"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (expected an integer >= 1)")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (expected a level in (0, 1))")
    return value


# ---------------------------------------------------------------------------- runs
def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xeval runs``."""
    add_registry_argument(parser)
    parser.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="show only the N newest runs",
    )
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")


def _short_list(items, width: int = 40) -> str:
    items = [str(x) for x in items or []]
    out = ""
    for k, item in enumerate(items):
        candidate = f"{out}, {item}" if out else item
        if len(candidate) > width and out:
            return f"{out} (+{len(items) - k})"
        out = candidate
    return out


def _duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def folder_state(run: dict) -> str:
    """``ok`` (the run folder still holds its manifest), ``missing`` (deleted or moved)
    or ``-`` (no folder: ``xeval score``)."""
    where = run.get("run_dir_resolved")
    if not where:
        return "-"
    return "ok" if (Path(where) / "manifest.json").is_file() else "missing"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def runs_main(args) -> int:
    """``xeval runs``: the recorded runs, newest first."""
    from xeval.runs import store

    with store.connect(args.registry) as (conn, path):
        runs = store.list_runs(conn, limit=args.limit)
        total = store.count_runs(conn)
    for r in runs:
        r["folder_state"] = folder_state(r)
    if args.json:
        print(json.dumps({"registry": str(path), "total": total, "runs": runs}, indent=2))
        return 0
    if not runs:
        print(f"no run recorded in {path}")
        return 0
    header = ["id", "finished (UTC)", "command", "config", "data", "detectors", "explainers",
              "duration", "folder"]  # fmt: skip
    rows = []
    for r in runs:
        folder = r.get("run_dir") or "-"
        if r["folder_state"] == "missing":
            folder = f"{folder} (missing)"
        rows.append(
            [
                r["id"],
                (r.get("finished") or "-").replace("T", " ").rstrip("Z")[:16],
                r.get("command") or "-",
                r.get("config_name") or "-",
                (r.get("dataset_fingerprint") or "-")[:8],
                _short_list(r.get("detectors")),
                _short_list(r.get("explainers")),
                _duration(r.get("duration_s")),
                folder,
            ]
        )
    print(_table(header, rows))
    shown = f"{len(runs)} of {total}" if len(runs) < total else f"{total}"
    print(f"\n{shown} run(s) in {path}")
    return 0


# ---------------------------------------------------------------------------- compare
def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``xeval compare``."""
    for name in ("run_a", "run_b"):
        parser.add_argument(
            name,
            metavar=name.upper(),
            help="a run id (or a unique prefix of one, or of its random part), or a run folder",
        )
    parser.add_argument(
        "--metric",
        nargs="+",
        action="extend",
        default=None,
        metavar="LABEL",
        help="compare only these metrics (labels as in results.csv, e.g. aupro@0.3)",
    )
    parser.add_argument(
        "--category",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME",
        help="compare only these categories ('mean' for the mean over categories)",
    )
    add_registry_argument(parser)
    parser.add_argument(
        "--n-boot",
        type=_positive_int,
        default=1000,
        metavar="B",
        help="bootstrap resamples of the paired CIs (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=0.05,
        help="level of the Holm-corrected paired tests (default 0.05)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"


def _describe(label: str, rec) -> str:
    r = rec.run
    where = r.get("run_dir") or "no folder"
    return (
        f"{label}: {rec.id or '(not recorded)'}  {r.get('config_name') or '-'} "
        f"(config {r.get('config_hash') or '-'}, data {r.get('dataset_fingerprint') or '-'}, "
        f"finished {r.get('finished') or '-'})  {where}"
    )


def compare_main(args) -> int:
    """``xeval compare RUN_A RUN_B``."""
    from xeval.runs.compare import compare_runs, comparison_json
    from xeval.runs.lookup import load_run

    a = load_run(args.run_a, registry=args.registry)
    b = load_run(args.run_b, registry=args.registry)
    cmp = compare_runs(
        a,
        b,
        metrics=args.metric,
        categories=args.category,
        n_boot=args.n_boot,
        seed=args.seed,
        alpha=args.alpha,
    )
    if args.json:
        print(json.dumps(comparison_json(cmp), indent=2))
        return 0
    print(_describe("A", a))
    print(_describe("B", b))
    for note in cmp.notes:
        print(f"note: {note}")
    t = cmp.table
    if t.empty:
        print("\nno value to compare: the runs share no (detector, explainer, category, metric)")
        return 0
    header = ["metric", "detector", "explainer", "category", "A", "B", "B-A", "change",
              "n", "paired B-A [95% CI]", "p", "p (Holm)", "verdict", "note"]  # fmt: skip
    rows = []
    for r in t.to_dict(orient="records"):
        ci = "-"
        if r["n_pairs"]:
            ci = f"{_fmt(r['paired_diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        rows.append(
            [
                r["label"],
                r["detector"],
                r["explainer"],
                r["category"],
                _fmt(r["value_a"]),
                _fmt(r["value_b"]),
                _fmt(r["diff"]),
                r["change"],
                str(r["n_pairs"]) if r["n_pairs"] else "-",
                ci,
                _fmt(r["p_value"], 3),
                _fmt(r["p_holm"], 3),
                r["verdict"],
                r["note"],
            ]
        )
    print()
    print(_table(header, rows))
    sys.stdout.flush()
    return 0
