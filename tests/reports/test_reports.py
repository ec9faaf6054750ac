"""Tests of the report layer: files, escaping, CSV round trip, tables, safe paths."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from xeval.errors import InputError
from xeval.reports import GalleryItem, ReportData, latex_table, markdown_tables, write_report
from xeval.reports.figures import plot_curves
from xeval.reports.tables import metric_tables
from xeval.reports.writer import read_results_csv, slug
from xeval.results import make_row, results_frame

EXPECTED = [
    "results.csv",
    "results.md",
    "manifest.json",
    "tables.tex",
    "rankings.csv",
    "figures/cd_1_pixel_auroc__script_alert_x_script.png",
    "figures/cd_2_aupro@0.3_padim.png",
    "figures/cd_3_aupro@0.3__script_alert_x_script.png",
    "figures/cd_4_image_auroc_detectors_native.png",
    "figures/roc_pixel.png",
    "figures/pro.png",
    "figures/roc_image.png",
    "figures/bars_pixel_auroc.png",
    "figures/bars_aupro@0.3.png",
    "figures/bars_image_auroc.png",
    "figures/gallery.png",
    "index.html",
]


@pytest.fixture(scope="module")
def written(report_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    out = root / "out"
    return out, write_report(report_data, out)


def test_every_file_exists_inside_out_dir(written):
    out, paths = written
    tmp_path = out.parent
    assert sorted(paths) == sorted(EXPECTED)
    for rel, p in paths.items():
        assert p == (out / rel).resolve()
        assert p.is_file() and p.stat().st_size > 0
    for png in (out / "figures").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing escaped (category "../x"), no temporary file left behind
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_html_escapes_data_strings(written):
    out, _ = written
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "<1>" not in page
    assert "figures/pro.png" in page and "figures/bars_aupro@0.3.png" in page
    assert "abc123" in page  # manifest shown
    assert "optimistic" in page


def test_csv_round_trips(written, report_data):
    out, _ = written
    back = read_results_csv(out / "results.csv")
    pd.testing.assert_frame_equal(back, report_data.results)
    assert back["higher_is_better"].dtype == bool
    assert math.isnan(back["value"].iloc[0]) == math.isnan(report_data.results["value"].iloc[0])


def test_manifest_json(written, report_data):
    out, _ = written
    assert json.loads((out / "manifest.json").read_text()) == report_data.manifest


def test_without_figures(report_data, tmp_path):
    paths = write_report(report_data, tmp_path, figures=False)
    assert sorted(paths) == [
        "index.html",
        "manifest.json",
        "rankings.csv",
        "results.csv",
        "results.md",
        "tables.tex",
    ]
    assert not (tmp_path / "figures").exists()
    assert "<img" not in (tmp_path / "index.html").read_text()


def _direction_results(higher_is_better: bool) -> pd.DataFrame:
    rows = [
        make_row(
            detector="d",
            explainer=e,
            dataset="s",
            category=c,
            metric="m",
            value=v,
            higher_is_better=higher_is_better,
        )
        for e, vals in {"a": (0.9, 0.2), "b": (0.1, 0.8), "random": (0.5, math.nan)}.items()
        for c, v in zip(("c1", "mean"), vals, strict=True)
    ]
    return results_frame(rows)


@pytest.mark.parametrize("hib", [True, False])
def test_markdown_bolds_best_respecting_direction(hib):
    md = markdown_tables(_direction_results(hib))
    lines = {ln.split("|")[2].strip(): ln for ln in md.splitlines() if ln.startswith("| d ")}
    best, worst = ("a", "b") if hib else ("b", "a")
    assert f"**{0.9 if hib else 0.1:.3f}**" in lines[best]
    assert "**" not in lines[worst].split("|")[3]
    assert "random\u2020" in lines
    assert "n/a" in lines["random\u2020"]
    assert ("\u2191" if hib else "\u2193") in md


def test_markdown_escapes_and_flags(report_data):
    md = markdown_tables(report_data.results)
    assert "<script>" not in md and r"\<script\>" in md
    assert "(optimistic)" in md
    assert "threshold t = 0.42" in md
    assert "n/a" in md


def test_controls_not_beaten_is_reported():
    rows = [
        make_row(
            detector="d",
            explainer=e,
            dataset="s",
            category="mean",
            metric="m",
            value=v,
            higher_is_better=True,
        )
        for e, v in {"good": 0.9, "bad": 0.4, "sobel": 0.6}.items()
    ]
    (t,) = metric_tables(results_frame(rows))
    assert [(f.explainer, f.control) for f in t.controls_not_beaten()] == [("bad", "sobel")]
    assert "Does not beat the best control" in markdown_tables(results_frame(rows))


def test_custom_controls():
    md = markdown_tables(_direction_results(True), controls={"b"})
    assert "b\u2020" in md and "random\u2020" not in md


def test_latex_table(report_data):
    tex = latex_table(report_data.results, "image_fpr@95tpr")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{" in tex
    assert r"$^\dagger$" in tex
    assert r"image\_fpr@95tpr" in tex and r"\textless{}script\textgreater{}" in tex
    with pytest.raises(InputError):
        latex_table(report_data.results, "nope")


def test_metric_file_names_stay_inside(report_data, tmp_path):
    out = tmp_path / "out"
    res = report_data.results.copy()
    res.loc[res["metric"] == "pixel_auroc", ["metric", "label"]] = "../../evil"
    data = ReportData(results=res, manifest={}, title="t")
    paths = write_report(data, out, bar_metrics=["../../evil", "missing"])
    assert "figures/bars_evil.png" in paths
    assert all(out.resolve() in p.parents for p in paths.values())
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert slug("../..") == "metric"


def test_dollar_names_do_not_break_figures(tmp_path):
    curves = pd.DataFrame(
        {
            "detector": "$d",
            "explainer": "a$b",
            "category": "$x^",
            "curve": "pro",
            "x": np.linspace(0, 1, 5),
            "y": np.linspace(0, 1, 5),
        }
    )
    path = plot_curves(curves, "pro", tmp_path / "p.png")
    assert path.stat().st_size > 0
    with pytest.raises(InputError):
        plot_curves(curves, "roc", tmp_path / "r.png")


def test_gallery_item_validation():
    ok = {
        "detector": "d",
        "explainer": "e",
        "category": "c",
        "sample_id": "s",
        "metric": "m",
        "value": 1.0,
        "mask": np.zeros((4, 4), bool),
        "amap": np.zeros((2, 2)),
    }
    GalleryItem(rank="best", image=np.zeros((4, 4)), **ok)  # grey image accepted
    with pytest.raises(InputError):
        GalleryItem(rank="middle", image=np.zeros((4, 4, 3)), **ok)
    with pytest.raises(InputError):
        GalleryItem(rank="best", image=np.zeros((5, 4, 3)), **ok)


def test_report_data_checks_columns():
    with pytest.raises(InputError):
        ReportData(results=pd.DataFrame({"metric": ["m"]}))


def test_html_is_balanced(written):
    from html.parser import HTMLParser

    void = {"meta", "img", "br", "hr", "link", "input"}

    class Checker(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
            self.stack.pop()

    out, _ = written
    checker = Checker()
    checker.feed((out / "index.html").read_text(encoding="utf-8"))
    assert checker.stack == []


def test_summary_headline(written):
    out, _ = written
    page = (out / "index.html").read_text(encoding="utf-8")
    summary = page[page.index("<section id='summary'>") : page.index("<section id='tables'>")]
    for m in ("pixel_auroc", "aupro@0.3", "image_auroc"):
        assert m in summary
    assert "random\u2020" in summary and "iou@t" not in summary.split("<div")[0]


def test_summary_frame_without_mean_rows_and_two_datasets():
    from xeval.reports.tables import summary_frame

    rows = [
        make_row(
            detector="d",
            explainer="e",
            dataset=ds,
            category=c,
            metric="pixel_auroc",
            family="localisation",
            headline=1,
            value=v,
            higher_is_better=True,
        )
        for ds in ("a", "b")
        for c, v in (("c1", 0.6), ("c2", 0.8))
    ]
    frame, directions = summary_frame(results_frame(rows))
    assert list(frame.columns) == ["pixel_auroc (a)", "pixel_auroc (b)"]
    assert frame.iloc[0].tolist() == pytest.approx([0.7, 0.7])
    assert all(directions.values())
