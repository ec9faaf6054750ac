"""Fixtures of the gate tests: synthetic run folders (:mod:`_gate_runs`), spec files and
an evaluate shortcut."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from _gate_runs import build_results, build_verdicts, write_run

from xeval.results import make_row, results_frame


@pytest.fixture
def make_run(tmp_path):
    """``make_run(name, overrides=None, *, verdicts=True, manifest=None, mean=True)``."""

    def make(name="run", overrides=None, *, verdicts=True, manifest=None, mean=True, overall=None):
        return write_run(
            tmp_path / name,
            build_results(overrides, mean=mean),
            verdicts=build_verdicts(overall) if verdicts else None,
            manifest=manifest,
        )

    return make


@pytest.fixture
def video_run(tmp_path):
    """A video-like run: one category "all", no mean rows, video-schema verdicts."""
    rows = []
    for expl, ctrl, v in (("native", False, 0.9), ("random", True, 0.5)):
        for label in ("frame_auroc", "frame_auroc[macro]"):
            rows.append(
                make_row(
                    detector="reasoning", explainer=expl, dataset="synthetic_video",
                    category="all", protocol="video-quick", metric="frame_auroc", label=label,
                    value=v, ci_low=v - 0.1, ci_high=v + 0.1, n=60, higher_is_better=True,
                    control=ctrl,
                )
            )  # fmt: skip
    verdicts = pd.DataFrame(
        [
            dict(detector="reasoning", explainer="native", metric=label, family="video",
                 value=0.9, best_control="random", best_control_value=0.5, min_z=4.5,
                 verdict="beats")
            for label in ("frame_auroc", "frame_auroc[macro]")
        ]
    )  # fmt: skip
    return write_run(
        tmp_path / "video",
        results_frame(rows),
        verdicts=verdicts,
        manifest={"config_hash": "vh", "dataset_fingerprint": "vf", "task": "video"},
    )


@pytest.fixture
def write_spec(tmp_path):
    """``write_spec(gates_or_text, name="spec.yaml") -> Path``: a list of gates is dumped
    as ``{"gates": [...]}``, a string is written as is."""

    def write(spec, name="spec.yaml"):
        p = tmp_path / name
        text = spec if isinstance(spec, str) else yaml.safe_dump({"gates": spec})
        p.write_text(text, encoding="utf-8")
        return p

    return write


@pytest.fixture
def evaluate():
    """``evaluate(gates, run, baseline=None) -> GateReport`` from Python objects."""
    from xeval.gates.evaluate import evaluate_spec
    from xeval.gates.runfolder import read_run
    from xeval.gates.spec import parse_spec

    def run(gates, run_dir, baseline=None):
        spec = parse_spec({"gates": gates}, source="test.yaml")
        base = None if baseline is None else read_run(baseline, option="--baseline")
        return evaluate_spec(spec, read_run(run_dir), baseline=base)

    return run
