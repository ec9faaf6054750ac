"""The ``xeval`` command: ``demo``, ``run``, ``score``, and the commands of
:data:`COMMANDS` (``report``, ``gate``, ``runs``, ``compare``), each defined in its own
module by an ``add_arguments(parser)`` and a ``main(args) -> int`` function."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from pathlib import Path

from xeval.errors import XevalError


def _demo(a) -> int:
    from xeval.engine import run
    from xeval.protocols import load_config

    if a.video:
        name = "video_quick" if a.quick else "video"
    else:
        name = "demo_quick" if a.quick else "demo"
    cfg = load_config(name)
    res = run(cfg, out_dir=a.out, resume=not a.no_resume, **_executor_options(a))
    _summary(res)
    _record(a, "demo", res.out_dir)
    return 0


def _record(a, command: str, run_dir: Path) -> None:
    """Record a finished run folder in the run registry (a failure is one warning)."""
    from xeval.runs.record import record_run

    rid = record_run(command=command, run_dir=run_dir, registry=a.registry, argv=a.argv)
    if rid:
        print(f"recorded as run {rid} (xeval runs; xeval compare {rid} OTHER)")


def _executor_options(a) -> dict:
    """``--workers`` / ``--scheduler`` / ``--threads-per-worker`` as keyword arguments."""
    return {
        "workers": a.workers,
        "scheduler": a.scheduler,
        "threads_per_worker": a.threads_per_worker,
    }


def _run(a) -> int:
    from xeval.adapters.imports import add_safe_imports
    from xeval.protocols import load_config

    add_safe_imports(*a.allow_import)  # before the config is checked
    _check_config_argument(a.config)
    cfg = load_config(a.config)
    if a.check:
        _check_summary(cfg)
        return 0
    from xeval.engine import run

    res = run(cfg, out_dir=a.out, resume=not a.no_resume, **_executor_options(a))
    _summary(res)
    _record(a, "run", res.out_dir)
    return 0


def _check_config_argument(value: str) -> None:
    """Check ``xeval run CONFIG`` before it is read: a folder, an unreadable or non-text
    file, or a path that does not exist (it has a ``/`` or ends in ``.yaml``/``.yml``)
    is a :class:`~xeval.errors.ConfigError` naming it; a bare name is left to
    :func:`~xeval.protocols.load_config`, which lists the known protocols."""
    from xeval._io import os_reason
    from xeval.errors import ConfigError

    p = Path(value)
    if value and p.is_dir():
        raise ConfigError(
            f"config {value!r} is a folder (expected a YAML file, or the name of a protocol "
            "such as 'demo' or 'full_audit')"
        )
    if p.is_file():
        try:
            p.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {value}: {os_reason(exc)}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {value} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "expected a YAML file"
            ) from exc
        return
    if value and p.exists():
        raise ConfigError(f"config {value!r} is not a regular file (expected a YAML file)")
    seps = {"/", os.sep, os.altsep} - {None}
    if any(c in value for c in seps) or p.suffix.lower() in (".yaml", ".yml"):
        hint = ""
        try:
            from xeval.assets import asset_dir

            if (asset_dir("protocols") / f"{p.stem}.yaml").is_file():
                hint = f" (to run the built-in protocol, write its name: xeval run {p.stem})"
        except XevalError:  # pragma: no cover - assets always ship with xeval
            pass
        raise ConfigError(f"config file not found: {value}{hint}")


def _check_summary(cfg) -> None:
    """What a checked configuration will run (nothing is loaded or fitted)."""
    from xeval.protocols.config import build_metrics

    print(f"{cfg.source or cfg.name}: ok (config hash {cfg.config_hash()})")
    print(f"  dataset: {cfg.dataset.name} {cfg.dataset.params or ''}".rstrip())
    for d in cfg.detectors:
        expl = ", ".join(e.name for e in cfg.explainers_for(d))
        if getattr(cfg, "task", "image") == "influence":
            base = ", ".join(str(b) for b in cfg.baselines)
            rates = ", ".join(f"{r:g}" for r in cfg.contamination.rates)
            print(f"  detector {d.name} ({d.kind}): methods [{expl}]; controls [{base}]")
            print(f"  contamination rates [{rates}]; seeds {list(cfg.seeds)}")
            continue
        labels = ", ".join(m.label for m in build_metrics(cfg.metrics_for(d)))
        print(f"  detector {d.name} ({d.kind}): explainers [{expl}]; metrics [{labels}]")
    batch = f"; batch size {cfg.batch_size}" if hasattr(cfg, "batch_size") else ""
    print(f"  output: {cfg.output}; seed {cfg.seed}{batch}")
    if getattr(cfg, "workers", None) is not None:
        print(f"  executor: Dask, {cfg.workers} local worker(s)")
    elif getattr(cfg, "scheduler", None) is not None:
        print(f"  executor: Dask scheduler {cfg.scheduler}")


def _summary(res) -> None:
    from xeval.reports.tables import headline_metrics

    df = res.results
    if res.manifest.get("task") == "video":
        table = df.pivot_table(
            index=["detector", "explainer"], columns="label", values="value", sort=False
        )
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        total = res.manifest["timings"]["total_s"]
        print(f"\nreport: {res.out_dir / 'index.html'}  (total {total:.0f} s)")
        return
    mean = df[df["category"] == "mean"]
    keep = headline_metrics(df)
    table = mean[mean["label"].isin(keep)].pivot_table(
        index=["detector", "explainer"], columns="label", values="value", sort=False
    )[keep]
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    total = res.manifest["timings"]["total_s"]
    print(f"\nreport: {res.out_dir / 'index.html'}  (total {total:.0f} s)")


def _check_output_file(path: Path, *, option: str) -> None:
    """Fail before any work when ``path`` can obviously not be written as a file (it is a
    folder, or one of its parents is a file); other faults surface when it is written."""
    from xeval.errors import OutputError

    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder (expected a file path)", path=path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"{option} {path} cannot be written: {parent} is a file, not a folder",
                    path=path,
                )
            break


def _score(a) -> int:
    import time

    from xeval.engine.executor import check_executor_options, make_executor
    from xeval.engine.score import score_folder

    t0 = time.perf_counter()
    if a.json is not None:
        _check_output_file(a.json, option="--json")
    options = _executor_options(a)
    check_executor_options(**options)
    executor = make_executor(**options)
    kwargs = {"executor": executor, "chunk_size": a.chunk_size}
    try:
        df = score_folder(
            a.maps,
            a.gt,
            categories=a.categories,
            fpr_limits=tuple(a.fpr_limit),
            mode=a.mode,
            threshold=a.threshold,
            allow_missing=a.allow_missing,
            **kwargs,
        )
    finally:
        if executor is not None:
            executor.close()
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if a.json:
        from xeval._io import atomic_write_json

        records = {
            r["category"]: {k: v for k, v in r.items() if k != "category"}
            for r in df.to_dict(orient="records")
        }
        atomic_write_json(a.json, records)
    from xeval.runs.record import record_score

    record_score(
        df,
        maps=a.maps,
        gt=a.gt,
        fpr_limits=tuple(a.fpr_limit),
        mode=a.mode,
        threshold=a.threshold,
        allow_missing=a.allow_missing,
        duration_s=time.perf_counter() - t0,
        registry=a.registry,
        argv=a.argv,
    )
    return 0


def _finite_float(text: str) -> float:
    """argparse ``type=``: a finite float (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number (expected e.g. 0.5)")
    return value


def _positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid integer value: {text!r} (expected a whole number >= 1, e.g. 2)"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (expected an integer >= 1)")
    return value


def _add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers N`` | ``--scheduler ADDRESS``, and ``--threads-per-worker K``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N worker processes (same results as one process)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing Dask cluster, e.g. tcp://host:8786 (workers need xeval "
        "and the data at the same paths)",
    )
    p.add_argument(
        "--threads-per-worker",
        type=_positive_int,
        default=None,
        metavar="K",
        help="torch / BLAS threads in each Dask worker (default 1; with --workers or --scheduler)",
    )


def _fpr_limit(text: str) -> float:
    """argparse ``type=``: a false positive rate limit in (0, 1]."""
    value = _finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range (expected a false positive rate in (0, 1], e.g. 0.3)"
        )
    return value


class _Distinct(argparse.Action):
    """Store a list option whose values must be distinct as they appear in the results
    (numbers formatted with ``%g``: ``--fpr-limit 0.3 0.30`` would give two ``aupro@0.3``
    columns)."""

    def __call__(self, parser, namespace, values, option_string=None):
        seen: set[str] = set()
        for v in values:
            shown = f"{v:g}" if isinstance(v, float) else str(v)
            if shown in seen:
                raise argparse.ArgumentError(
                    self, f"{shown!r} is given twice (expected distinct values)"
                )
            seen.add(shown)
        setattr(namespace, self.dest, list(values))


def build_parser() -> argparse.ArgumentParser:
    from xeval.runs.store import add_registry_argument

    p = argparse.ArgumentParser(
        prog="xeval", description="Evaluate the explanations of visual anomaly detectors."
    )
    from xeval import __version__

    p.add_argument("--version", action="version", version=f"xeval {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run the built-in textures benchmark end to end")
    d.add_argument("--out", type=Path, default=None, help="output folder (default xeval-out/demo)")
    d.add_argument("--quick", action="store_true", help="tiny version (seconds; for tests)")
    d.add_argument("--no-resume", action="store_true", help="recompute finished units")
    d.add_argument(
        "--video",
        action="store_true",
        help="the video audit on the built-in synthetic video benchmark (xeval-out/video)",
    )
    _add_executor_arguments(d)
    add_registry_argument(d)
    d.set_defaults(fn=_demo)
    r = sub.add_parser("run", help="run a configuration (YAML) or a protocol name")
    r.add_argument("config", help="path to a YAML config, or a name in protocols/")
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--no-resume", action="store_true")
    r.add_argument(
        "--allow-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="let the config's detector recipes name objects of MODULE (your own code; "
        "repeatable). A config alone can only name classes of scikit-learn, PyOD and anomalib",
    )
    r.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration against the registries and exit (loads no data)",
    )
    _add_executor_arguments(r)
    add_registry_argument(r)
    r.set_defaults(fn=_run)
    s = sub.add_parser("score", help="score precomputed maps against MVTec-layout ground truth")
    s.add_argument(
        "--maps",
        type=Path,
        required=True,
        help="maps laid out as <maps>/<category>/test/<defect>/<id>.{tiff,npy,png}",
    )
    s.add_argument("--gt", type=Path, required=True, help="dataset root in MVTec AD layout")
    s.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    s.add_argument(
        "--categories",
        nargs="+",
        action=_Distinct,
        default=None,
        help="score only these categories (default: every category of --gt)",
    )
    s.add_argument(
        "--allow-missing",
        action="store_true",
        help="show a category without maps as missing (NaN, with a warning) instead of failing",
    )
    s.add_argument(
        "--fpr-limit",
        type=_fpr_limit,
        nargs="+",
        action=_Distinct,
        default=[0.3],
        help="AUPRO false positive rate limits, each in (0, 1] (default 0.3)",
    )
    s.add_argument("--mode", choices=("exact", "binned"), default="exact")
    s.add_argument(
        "--threshold",
        type=_finite_float,
        default=None,
        help="also compute PRO/IoU/Dice at this threshold (any finite number)",
    )
    s.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=64,
        metavar="C",
        help="test images decoded and scored per task (memory per worker ~ C maps; the "
        "numbers do not depend on it; default 64)",
    )
    _add_executor_arguments(s)
    add_registry_argument(s)
    s.set_defaults(fn=_score)
    for name, (module, add, fn, text) in COMMANDS.items():
        mod = importlib.import_module(module)
        c = sub.add_parser(name, help=text, description=text)
        getattr(mod, add)(c)
        c.set_defaults(fn=getattr(mod, fn))
    return p


COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "report": (
        "xeval.reports.command",
        "add_arguments",
        "main",
        "rebuild the report of a finished run (HTML, Markdown or LaTeX) without recomputing",
    ),
    "gate": (
        "xeval.gates.command",
        "add_arguments",
        "main",
        "check a finished run against an acceptance spec (exit 0 pass, 1 fail, 2 invalid)",
    ),
    "runs": (
        "xeval.runs.command",
        "add_runs_arguments",
        "runs_main",
        "list the runs recorded in the run registry",
    ),
    "compare": (
        "xeval.runs.command",
        "add_compare_arguments",
        "compare_main",
        "compare two recorded runs metric by metric (by id or folder)",
    ),
}
"""Subcommands defined in their own modules: name -> (module, function adding the
arguments to the subparser, function running it and returning the exit code, help).
The modules are imported when the parser is built, so they import little at top level."""


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"xeval: warning: {message}", file=sys.stderr)


def _is_xeval_warning(category) -> bool:
    """Warnings of xeval (declared in :mod:`xeval.errors`) are shown as one clean line."""
    return category.__module__ == "xeval.errors"


def main(argv: list[str] | None = None) -> int:
    """Run the ``xeval`` command. Errors of the input (``XevalError``) and of the operating
    system (``OSError``: a path that cannot be read or written, a full disk) are one line
    ``xeval: error: ...`` on stderr and exit code 2; anything else is a bug and keeps its
    traceback."""
    import warnings

    from xeval._io import describe_os_error
    from xeval.errors import XevalDeprecationWarning

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the run registry
    with warnings.catch_warnings():
        warnings.simplefilter("always", XevalDeprecationWarning)
        shown = warnings.showwarning
        warnings.showwarning = lambda m, c, *a, **k: (
            _show_warning(m, c, *a, **k) if _is_xeval_warning(c)
            else shown(m, c, *a, **k)
        )  # fmt: skip
        try:
            return args.fn(args)
        except XevalError as e:
            print(f"xeval: error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"xeval: error: {describe_os_error(e)}", file=sys.stderr)
            return 2
        finally:
            warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
