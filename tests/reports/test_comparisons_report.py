"""The comparisons in a written report: comparisons.csv, rankings.csv, the CD diagrams,
the HTML / Markdown sections (escaped) and tables.tex compiled by pdflatex."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xeval.comparisons import category_rankings, pairwise_comparisons, rankings_frame
from xeval.reports import ReportData, write_report
from xeval.reports.data import statistics_options, with_statistics


def _synthetic():
    """This folder's conftest as a plain module (``import conftest`` could find another)."""
    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("_reports_synthetic_cmp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_S = _synthetic()
CATEGORIES, DETECTORS, EVIL, EXPLAINERS = _S.CATEGORIES, _S.DETECTORS, _S.EVIL, _S.EXPLAINERS
synthetic_results = _S.synthetic_results

MANIFEST = {"seed": 7, "config": {"evaluation": {"bootstrap": 150}}}


def _per_image(n=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for det in DETECTORS:
        for k, exp in enumerate(EXPLAINERS):
            for cat in CATEGORIES:
                for i in range(n):
                    rows.append(
                        {
                            "category": cat,
                            "detector": det,
                            "explainer": exp,
                            "id": f"{cat}/{i}",
                            "label": 1,
                            "defect": "d",
                            "image_score": 0.0,
                            "control": exp == "random",
                            "input_dependent": True,
                            "subsets": "",
                            "iou@t": rng.normal(0.3 + 0.2 * (k == 0), 0.1),
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    data = ReportData(
        results=synthetic_results(), per_image=_per_image(), manifest=MANIFEST, title="t"
    )
    return out, data, write_report(data, out)


def test_statistics_options_from_the_manifest():
    assert statistics_options(MANIFEST) == {"n_boot": 150, "seed": 7}
    assert statistics_options({}) == {"n_boot": 1000, "seed": 0}
    assert statistics_options({"config": {"evaluation": {"bootstrap": "x"}}})["n_boot"] == 1000


def test_csv_files_equal_the_library(written):
    out, data, paths = written
    ref = pairwise_comparisons(_per_image(), synthetic_results(), n_boot=150, seed=7)
    got = pd.read_csv(out / "comparisons.csv", keep_default_na=False, na_values=[""])
    assert len(got) == len(ref) > 0
    np.testing.assert_allclose(got["p_holm"], ref["p_holm"], rtol=1e-9)
    np.testing.assert_allclose(got["ci_low"], ref["ci_low"], rtol=1e-9)
    assert got["a"].astype(str).tolist() == ref["a"].tolist()
    rankings = pd.read_csv(out / "rankings.csv", keep_default_na=False, na_values=[""])
    want = rankings_frame(category_rankings(synthetic_results()))
    assert rankings["method"].astype(str).tolist() == want["method"].astype(str).tolist()
    np.testing.assert_allclose(rankings["mean_rank"], want["mean_rank"])


def test_html_section_escaped_with_cd_figures(written):
    out, data, paths = written
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<section id='comparisons'>" in page and "href='#comparisons'" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    cd = [p for p in paths if p.startswith("figures/cd_")]
    assert cd and all(f"<img src='{p}'" in page for p in cd)
    # CD diagrams are shown with their ranking, not again in the figures section
    figures = page[page.index("<section id='figures'>") :]
    assert "figures/cd_" not in figures
    assert "Holm p" in page and "Critical-difference diagram" in page
    assert "comparisons.csv" in page and "rankings.csv" in page


def test_markdown_sections(written):
    out, data, _ = written
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "# Rankings across categories" in md and "# Paired comparisons" in md
    assert "## explainers of padim" in md and "\\<script\\>" in md and "<script>" not in md


def test_with_statistics_keeps_given_tables():
    given = pd.DataFrame(columns=["kind"])
    data = ReportData(results=synthetic_results(), per_image=_per_image(), comparisons=given)
    assert with_statistics(data).comparisons is given
    assert data.rankings is not None
    bare = with_statistics(ReportData(results=synthetic_results()))
    assert bare.comparisons is None and bare.rankings


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_tables_tex_compiles(written, tmp_path):
    out, _, _ = written
    shutil.copy(out / "tables.tex", tmp_path / "tables.tex")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        "\\input{tables.tex}\n\\end{document}\n"
    )
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    assert EVIL not in (out / "tables.tex").read_text()


# --------------------------------------------------------------------------- caveats


def test_verdict_caveats_say_where_verdicts_mislead(tmp_path):
    from xeval.reports.conclusion import CAVEATS, OPTIMISTIC, TIES, verdict_caveats

    full = _S.full_report()
    v = full.verdicts.copy()
    v.loc[v["metric"] == "iou_oracle", "verdict"] = "beats"
    found = verdict_caveats(v, full.results)
    assert CAVEATS["robustness"] in found["max_sensitivity"]
    assert "input-independent" in CAVEATS["robustness"]
    assert CAVEATS["sanity"] in found["cascading_randomisation"]
    assert OPTIMISTIC in found["iou_oracle"]
    assert TIES in found[v.loc[v["verdict"] == "ties", "metric"].iloc[0]]
    assert any("few paired images (n = 20)" in c for c in found["pixel_auroc"])
    v.loc[:, "n"] = 100
    assert not any(
        "few paired" in c for cs in verdict_caveats(v, full.results).values() for c in cs
    )
    paths = write_report(full, tmp_path, figures=False)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "Where these verdicts can mislead" in page and "Caveat:" in page
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "## Where the verdicts can mislead" in md and "input\\-independent" not in md
    assert "input-independent map" in md and "results.md" in paths
