"""Fixtures of the run registry tests: synthetic finished run folders written in the
exact format of ``xeval run`` (results.csv through the report writer, per_image.csv,
manifest.json), a fresh registry file, and one real ``xeval demo --quick`` folder."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xeval.reports.writer import results_csv
from xeval.results import make_row, results_frame

#: Per-image metrics of the synthetic runs: label -> higher is better.
PER_IMAGE_METRICS = {"pointing_game": True, "entropy_complexity": False}
#: Set-level metrics (no per-image values): label -> higher is better.
SET_METRICS = {"aupro@0.3": True, "image_fpr@95tpr": False}
CATEGORIES = ("brick", "tissue")
N_IMAGES = 12


def synthetic_values(seed: int, shift: float = 0.0) -> dict:
    """Per-image values ``{(category, detector, explainer, label): array}``; with
    ``shift``, every value of explainer ``saliency`` moves by ``shift`` plus a little
    noise (so that B can beat A, with distinct paired differences)."""
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 1000)
    out = {}
    for cat in CATEGORIES:
        for det in ("det",):
            for exp in ("native", "saliency"):
                for label in PER_IMAGE_METRICS:
                    v = rng.uniform(0, 1, N_IMAGES)
                    if shift and exp == "saliency":
                        v = v + shift + noise.normal(0, 0.05, N_IMAGES)
                    out[(cat, det, exp, label)] = v
    return out


def write_run(
    folder: Path,
    *,
    values: dict,
    set_values: dict | None = None,
    fingerprint: str = "fp-same",
    config_hash: str = "cfg-a",
    config_name: str = "synthetic",
    total_s: float = 12.0,
) -> Path:
    """A finished run folder: results.csv (per-image metrics: value = mean over images;
    set metrics from ``set_values`` ``{(cat, det, exp, label): value}``, default 0.5
    and 0.1; plus ``mean`` rows), per_image.csv (wide, as the engine writes it) and
    manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, per_image = [], {}
    keys = sorted({k[:3] for k in values})
    for cat, det, exp in keys:
        for label, hib in PER_IMAGE_METRICS.items():
            v = values[(cat, det, exp, label)]
            rows.append(_row(cat, det, exp, label, float(np.nanmean(v)), hib, len(v)))
            for i, x in enumerate(v):
                rec = per_image.setdefault(
                    (cat, det, exp, i),
                    {
                        "category": cat,
                        "detector": det,
                        "explainer": exp,
                        "id": f"{cat}/test/defect/{i:03d}",
                        "label": 1,
                        "defect": "defect",
                        "image_score": 0.5,
                        "control": False,
                        "input_dependent": True,
                        "subsets": "",
                    },
                )
                rec[label] = x
        for label, hib in SET_METRICS.items():
            default = 0.5 if hib else 0.1
            v = (set_values or {}).get((cat, det, exp, label), default)
            rows.append(_row(cat, det, exp, label, v, hib, N_IMAGES))
    means = {}
    for r in rows:
        means.setdefault((r["detector"], r["explainer"], r["label"]), []).append(r)
    for group in means.values():
        r0 = group[0]
        mean = float(np.mean([g["value"] for g in group]))
        rows.append({**r0, "category": "mean", "value": mean, "n": sum(g["n"] for g in group)})
    results = results_frame(rows)
    (folder / "results.csv").write_text(results_csv(results))
    pd.DataFrame(list(per_image.values())).to_csv(folder / "per_image.csv", index=False)
    manifest = {
        "xeval_version": "0.1.0",
        "config": {"name": config_name, "dataset": {"name": "textures"}},
        "config_hash": config_hash,
        "config_source": None,
        "seed": 0,
        "dataset_fingerprint": fingerprint,
        "dataset_fingerprint_kind": "content (sha256 of every file)",
        "timings": {"total_s": total_s, "report_s": 1.0},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _row(cat, det, exp, label, value, hib, n):
    metric = label.split("@")[0]
    return make_row(
        detector=det,
        explainer=exp,
        dataset="textures",
        category=cat,
        protocol="synthetic",
        metric=metric,
        label=label,
        family="localisation",
        value=value if value is not None else math.nan,
        n=n,
        higher_is_better=hib,
        headline=1,
    )


@pytest.fixture()
def registry(tmp_path, monkeypatch) -> Path:
    """A fresh registry file path, also set as ``$XEVAL_REGISTRY``."""
    path = tmp_path / "reg" / "runs.sqlite"
    monkeypatch.setenv("XEVAL_REGISTRY", str(path))
    return path


@pytest.fixture()
def run_pair(tmp_path) -> tuple[Path, Path]:
    """Two synthetic runs of the same data: B's saliency is better by 0.3 per image."""
    a = write_run(tmp_path / "run_a", values=synthetic_values(0))
    vb = synthetic_values(0, shift=0.3)
    b = write_run(tmp_path / "run_b", values=vb, config_hash="cfg-b")
    return a, b


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """A finished ``xeval demo --quick`` run folder (made once per session; ~30-80 s)."""
    from xeval.cli import main

    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def demo_copy(demo_folder, tmp_path) -> Path:
    """A copy of the demo folder that a test may move or delete."""
    dst = tmp_path / "demo"
    shutil.copytree(demo_folder, dst)
    return dst
