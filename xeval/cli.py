"""The ``xeval`` command: ``demo``, ``run``, ``score``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xeval.errors import XevalError


def _demo(a) -> int:
    from xeval.engine import run
    from xeval.protocols import load_config

    cfg = load_config("demo_quick" if a.quick else "demo")
    res = run(cfg, out_dir=a.out or cfg.output, resume=not a.no_resume)
    _summary(res)
    return 0


def _run(a) -> int:
    from xeval.protocols import load_config

    cfg = load_config(a.config)
    if a.check:
        _check_summary(cfg)
        return 0
    from xeval.engine import run

    res = run(cfg, out_dir=a.out or cfg.output, resume=not a.no_resume)
    _summary(res)
    return 0


def _check_summary(cfg) -> None:
    """What a checked configuration will run (nothing is loaded or fitted)."""
    from xeval.protocols.config import build_metrics

    print(f"{cfg.source or cfg.name}: ok (config hash {cfg.config_hash()})")
    print(f"  dataset: {cfg.dataset.name} {cfg.dataset.params or ''}".rstrip())
    for d in cfg.detectors:
        expl = ", ".join(e.name for e in cfg.explainers_for(d))
        labels = ", ".join(m.label for m in build_metrics(cfg.metrics_for(d)))
        print(f"  detector {d.name} ({d.kind}): explainers [{expl}]; metrics [{labels}]")
    print(f"  output: {cfg.output}; seed {cfg.seed}; batch size {cfg.batch_size}")


def _summary(res) -> None:
    from xeval.reports.tables import headline_metrics

    df = res.results
    mean = df[df["category"] == "mean"]
    keep = headline_metrics(df)
    table = mean[mean["label"].isin(keep)].pivot_table(
        index=["detector", "explainer"], columns="label", values="value", sort=False
    )[keep]
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    total = res.manifest["timings"]["total_s"]
    print(f"\nreport: {res.out_dir / 'index.html'}  (total {total:.0f} s)")


def _score(a) -> int:
    from xeval.engine.score import score_folder

    df = score_folder(
        a.maps,
        a.gt,
        categories=a.categories,
        fpr_limits=tuple(a.fpr_limit),
        mode=a.mode,
        threshold=a.threshold,
    )
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if a.json:
        from xeval._io import atomic_write_json

        records = {
            r["category"]: {k: v for k, v in r.items() if k != "category"}
            for r in df.to_dict(orient="records")
        }
        atomic_write_json(a.json, records)
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    d.set_defaults(fn=_demo)
    r = sub.add_parser("run", help="run a configuration (YAML) or a protocol name")
    r.add_argument("config", help="path to a YAML config, or a name in protocols/")
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--no-resume", action="store_true")
    r.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration against the registries and exit (loads no data)",
    )
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
    s.add_argument("--categories", nargs="*", default=None)
    s.add_argument("--fpr-limit", type=float, nargs="+", default=[0.3])
    s.add_argument("--mode", choices=("exact", "binned"), default="exact")
    s.add_argument(
        "--threshold", type=float, default=None, help="also compute PRO/IoU/Dice at this threshold"
    )
    s.set_defaults(fn=_score)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"xeval: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    from xeval.errors import XevalDeprecationWarning

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", XevalDeprecationWarning)
        shown = warnings.showwarning
        warnings.showwarning = lambda m, c, *a, **k: (
            _show_warning(m, c, *a, **k) if issubclass(c, XevalDeprecationWarning)
            else shown(m, c, *a, **k)
        )  # fmt: skip
        try:
            return args.fn(args)
        except XevalError as e:
            print(f"xeval: error: {e}", file=sys.stderr)
            return 2
        finally:
            warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
