"""Tests of the report figures of issue 8: control styles, consistent colours, the
example gallery, faithfulness curves with bands and the verdict profile."""

from __future__ import annotations

import importlib.util
import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from xeval.errors import InputError
from xeval.reports import GalleryItem, ReportData, write_report
from xeval.reports.figures import (
    CONTROL_HATCH,
    CONTROL_LINESTYLE,
    CONTROL_SUFFIX,
    VERDICT_GROUPS,
    _wrap,
    average_curve,
    bars_figure,
    curves_figure,
    example_gallery_figure,
    example_rows,
    explainer_styles,
    faithfulness_figure,
    faithfulness_kinds,
    gallery_columns,
    profile_figure,
    report_colors,
    verdict_counts,
)
from xeval.reports.html import _caption
from xeval.reports.writer import slug


def _synthetic():
    """This folder's conftest as a plain module (``import conftest`` could find another)."""
    path = Path(__file__).with_name("conftest.py")
    spec = importlib.util.spec_from_file_location("_reports_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_S = _synthetic()
DETECTORS, EVIL, LONG = _S.DETECTORS, _S.EVIL, _S.LONG
FULL_CONTROLS, FULL_EXPLAINERS = _S.FULL_CONTROLS, _S.FULL_EXPLAINERS
synthetic_examples = _S.synthetic_examples
synthetic_faithfulness_curves = _S.synthetic_faithfulness_curves

PNG = b"\x89PNG\r\n\x1a\n"
NEW_FIGURES = [
    "figures/profile.png",
    "figures/curve_deletion_auc.png",
    "figures/curve_insertion_auc.png",
    f"figures/gallery_{slug(DETECTORS[0])}.png",
    f"figures/gallery_{slug(DETECTORS[1])}.png",
]


@pytest.fixture(scope="module")
def full_written(full_report_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "out"
    return out, write_report(full_report_data, out, bar_metrics=["pixel_auroc"])


# --------------------------------------------------------------------------- report


def test_new_figures_written_and_shown_with_captions(full_written):
    out, paths = full_written
    page = (out / "index.html").read_text(encoding="utf-8")
    for rel in [*NEW_FIGURES, "figures/gallery.png", "figures/pro.png"]:
        assert rel in paths, rel
        p = paths[rel]
        assert p == (out / rel).resolve() and out.resolve() in p.parents
        assert p.read_bytes()[:8] == PNG
        key = rel[len("figures/") : -len(".png")]
        caption = escape(_caption(key))
        assert caption != key
        assert f"<img src='{rel}' alt='{caption}'" in page
        assert f"<figcaption>{caption}</figcaption>" in page
    assert "<script" not in page
    # page order: profile first, best / worst gallery last
    keys = [k for k in paths if k.startswith("figures/")]
    assert keys[0] == "figures/profile.png" and keys[-1] == "figures/gallery.png"
    assert "mean of the per-category mean curves" in _caption("curve_deletion_auc")
    assert [p.name for p in out.parent.iterdir()] == ["out"]


def test_empty_or_missing_inputs_write_no_new_figure(report_data, tmp_path):
    # the basic report: ROC / PRO curves and a best / worst gallery, no verdicts
    paths = write_report(report_data, tmp_path / "basic", bar_metrics=[])
    assert not [p for p in paths if p.startswith(("figures/curve_", "figures/gallery_"))]
    assert "figures/profile.png" not in paths
    # nothing but results: no curve, gallery or profile; empty verdicts / curves
    empty_curves = report_data.curves.iloc[:0]
    for verdicts in (None, pd.DataFrame(), pd.DataFrame(columns=["detector", "verdict"])):
        data = ReportData(
            results=report_data.results, curves=empty_curves, gallery=[], verdicts=verdicts
        )
        paths = write_report(data, tmp_path / "bare", bar_metrics=[])
        # the CD diagrams need the results only (rankings across categories)
        assert not [p for p in paths if p.startswith("figures/") and "/cd_" not in p]


def test_profile_skipped_without_overall_rows_of_real_explainers(full_report_data, tmp_path):
    v = full_report_data.verdicts
    only_pairs = v[v["control"] != "all controls"]
    only_controls = v.assign(explainer="random")
    for verdicts in (only_pairs, only_controls):
        data = ReportData(results=full_report_data.results, verdicts=verdicts)
        paths = write_report(data, tmp_path / "v", bar_metrics=[])
        assert "figures/profile.png" not in paths
        assert profile_figure(verdicts, data.results, controls=FULL_CONTROLS) is None


def test_faithfulness_curves_without_band(full_report_data, tmp_path):
    curves = synthetic_faithfulness_curves().drop(columns=["y_low", "y_high"])
    data = ReportData(results=full_report_data.results, curves=curves)
    paths = write_report(data, tmp_path / "o", bar_metrics=[])
    assert "figures/curve_deletion_auc.png" in paths
    fig = faithfulness_figure(curves, "deletion_auc", controls=FULL_CONTROLS)
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]


# --------------------------------------------------------------------------- styles


def test_control_style():
    styles = explainer_styles(["random", "a", "sobel", "b"], controls={"random", "sobel"})
    assert list(styles) == ["a", "b", "random", "sobel"]  # real first, then controls
    for name in ("random", "sobel"):
        st = styles[name]
        assert st.control and st.linestyle == CONTROL_LINESTYLE and st.hatch == CONTROL_HATCH
        assert st.label == name + CONTROL_SUFFIX and st.label.endswith("(control)")
        r, g, b = st.color[:3]
        assert r == g == b  # grey
    for name in ("a", "b"):
        st = styles[name]
        assert not st.control and st.linestyle == "-" and st.hatch == ""
        assert st.label == name and len(set(st.color[:3])) > 1
    assert styles["a"].color != styles["b"].color


def test_colours_consistent_across_figures(full_report_data):
    r = full_report_data
    colors = report_colors(r.results["explainer"], r.curves, controls=FULL_CONTROLS)
    # a figure that lacks an explainer keeps the others' colours
    roc = r.curves[(r.curves["curve"] == "roc") & (r.curves["explainer"] != "native")]
    fig = curves_figure(roc, "roc", controls=FULL_CONTROLS, colors=colors)
    faith = faithfulness_figure(r.curves, "deletion_auc", controls=FULL_CONTROLS, colors=colors)
    for f in (fig, faith):
        lines = {ln.get_label(): ln for ax in f.axes for ln in ax.get_lines()}
        assert np.allclose(lines["gradcam"].get_color()[:3], colors["gradcam"][:3])
    # partial mappings: the missing names get colours of their own
    styles = explainer_styles(["x", "y"], controls=(), colors={"x": (1.0, 0.0, 0.0)})
    assert styles["x"].color == (1.0, 0.0, 0.0) and styles["y"].color != styles["x"].color


def _control_lines(fig):
    return [
        ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label().endswith(CONTROL_SUFFIX)
    ]


def test_curves_controls_dashed(full_report_data):
    fig = curves_figure(full_report_data.curves, "pro", controls=FULL_CONTROLS)
    ctrl = _control_lines(fig)
    assert ctrl and all(ln.get_linestyle() == CONTROL_LINESTYLE for ln in ctrl)
    real = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "native"]
    assert real and all(ln.get_linestyle() == "-" for ln in real)
    # one panel per detector and category
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "random (control)" in legend and "native" in legend


def test_bars_controls_hatched(full_report_data):
    fig = bars_figure(full_report_data.results, "pixel_auroc", controls=FULL_CONTROLS)
    labels = {c.get_label(): c for ax in fig.axes for c in ax.containers if hasattr(c, "patches")}
    assert set(labels) == {
        "native", "gradcam", LONG, "random (control)", "sobel (control)"
    }  # fmt: skip
    assert all(p.get_hatch() == CONTROL_HATCH for p in labels["random (control)"].patches)
    assert all(not p.get_hatch() for p in labels["native"].patches)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == len(DETECTORS)


def test_faithfulness_figure_bands_and_controls(full_report_data):
    fig = faithfulness_figure(
        full_report_data.curves, "insertion_auc", controls=FULL_CONTROLS, higher_is_better=True
    )
    assert len(fig.axes) == len(DETECTORS)
    ctrl = _control_lines(fig)
    assert {ln.get_label() for ln in ctrl} == {"random (control)", "sobel (control)"}
    assert all(ln.get_linestyle() == CONTROL_LINESTYLE for ln in ctrl)
    bands = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(DETECTORS) * len(FULL_EXPLAINERS)
    assert 0 < bands[0].get_alpha() < 1
    assert "higher" in fig._suptitle.get_text()
    with pytest.raises(InputError):
        faithfulness_figure(full_report_data.curves, "nope")


def test_faithfulness_kinds(full_report_data):
    c = full_report_data.curves
    extra = c.iloc[:3].assign(curve="spro/scratch")
    other = c.iloc[:3].assign(curve="iou@t")  # a localisation label
    curves = pd.concat([c, extra, other])
    kinds = faithfulness_kinds(curves, full_report_data.results)
    assert kinds == ["deletion_auc", "insertion_auc"]
    assert faithfulness_kinds(c.iloc[:0]) == [] and faithfulness_kinds(None) == []


def test_average_curve_over_categories():
    part = pd.DataFrame(
        {
            "category": ["a"] * 3 + ["b"] * 2 + ["mean"] * 2,
            "x": [0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0],
            "y": [1.0, 0.5, 0.0, 0.8, 0.2, 9.0, 9.0],
            "y_low": [0.9, 0.4, 0.0, 0.7, 0.1, 9.0, 9.0],
            "y_high": [1.0, 0.6, 0.1, 0.9, 0.3, 9.0, 9.0],
        }
    )
    m = average_curve(part)
    assert m["x"].tolist() == [0.0, 0.5, 1.0]
    assert m["y"].tolist() == pytest.approx([0.9, 0.5, 0.1])  # b interpolated at 0.5
    assert m["y_low"].tolist() == pytest.approx([0.8, 0.4, 0.05])
    assert m["y_high"].tolist() == pytest.approx([0.95, 0.6, 0.2])
    no_band = average_curve(part.drop(columns=["y_low", "y_high"]))
    assert no_band["y_low"].isna().all()


# --------------------------------------------------------------------------- gallery


def _item(det="d", exp="e", cat="c", sid="s", rank="example"):
    return GalleryItem(
        detector=det,
        explainer=exp,
        category=cat,
        sample_id=sid,
        rank=rank,
        metric="",
        value=math.nan,
        image=np.zeros((8, 8)),
        mask=np.eye(8, dtype=bool),
        amap=np.ones((4, 4)),
    )


def test_example_rows_one_per_category_first():
    items = [_item(cat=f"c{c}", sid=f"s{s}") for c in range(8) for s in range(3)]
    rows = example_rows(items)
    assert rows == [(f"c{c}", "s0") for c in range(6)]
    few = [_item(cat=f"c{c}", sid=f"s{s}") for c in range(2) for s in range(4)]
    assert example_rows(few) == [("c0", "s0"), ("c0", "s1"), ("c0", "s2"),
                                 ("c1", "s0"), ("c1", "s1"), ("c1", "s2")]  # fmt: skip
    assert len(example_rows(few, max_rows=3)) == 3


def test_gallery_columns_fixed_order():
    # items come sorted by name (as the engine writes them); the results' order wins
    items = synthetic_examples()
    cols = gallery_columns(items, controls=FULL_CONTROLS, explainers=FULL_EXPLAINERS)
    assert cols == FULL_EXPLAINERS
    cols = gallery_columns(items, controls=FULL_CONTROLS)
    assert cols[-2:] == ["random", "sobel"] and set(cols) == set(FULL_EXPLAINERS)


def test_example_gallery_figure(full_report_data):
    fig = example_gallery_figure(
        full_report_data.gallery,
        detector=EVIL,
        controls=FULL_CONTROLS,
        explainers=FULL_EXPLAINERS,
    )
    n_rows = len(example_rows([g for g in full_report_data.gallery if g.detector == EVIL
                               and g.rank == "example"]))  # fmt: skip
    grid = [ax for ax in fig.axes if ax.get_subplotspec() is not None]  # not the colorbar
    ncols = 2 + len(FULL_EXPLAINERS)
    assert len(grid) == n_rows * ncols
    titles = [ax.get_title() for ax in grid[:ncols]]
    assert titles[:2] == ["image", "ground truth"]
    for title, name in zip(titles[2:], FULL_EXPLAINERS, strict=True):
        shown = title.removesuffix("\n(control)")
        assert shown.replace("\n", "") == name.replace(" ", "")  # full name, wrapped
        assert title.endswith("(control)") == (name in FULL_CONTROLS)
    assert "\u2026" not in "".join(titles)
    # the missing gradcam image is an n/a cell, not a shifted column
    assert any(t.get_text() == "n/a" for ax in grid for t in ax.texts)
    # row labels: category and sample id
    assert grid[0].get_ylabel().startswith("bottle\n")
    with pytest.raises(InputError):
        example_gallery_figure(full_report_data.gallery)  # two detectors
    with pytest.raises(InputError):
        example_gallery_figure([_item(rank="best")])


def test_wrap_keeps_every_character():
    for text in (LONG, "bottle/test/defect_type_0/000.png", "a" * 50, "$x$ y"):
        wrapped = _wrap(text, 12)
        assert all(len(line) <= 12 + line.count("\\$") for line in wrapped.split("\n"))
        assert "".join(wrapped.replace("\\$", "$").split()) == "".join(text.split())


# --------------------------------------------------------------------------- profile


def test_verdict_counts(full_report_data):
    v = pd.DataFrame(
        {
            "detector": "d",
            "explainer": ["a", "a", "a", "a", "a", "random", "a"],
            "metric": ["pixel_auroc", "iou@t", "deletion_auc", "x", "y", "pixel_auroc", "z"],
            "control": ["all controls"] * 6 + ["sobel"],
            "verdict": ["beats", "loses", "ties", "passes", "weird", "beats", "loses"],
        }
    )
    results = full_report_data.results
    c = verdict_counts(v, results, controls={"random", "sobel"}).set_index("family")
    labels = [g[0] for g in VERDICT_GROUPS]
    assert list(c.index) == ["localisation", "faithfulness", "other"]
    assert c.loc["localisation", labels].tolist() == [1, 0, 1, 0]
    assert c.loc["faithfulness", labels].tolist() == [0, 1, 0, 0]
    assert c.loc["other", labels].tolist() == [1, 0, 0, 1]  # unknown verdict: last group
    assert set(c["explainer"]) == {"a"}
    assert verdict_counts(None, results).empty
    assert verdict_counts(v.iloc[:0], results).empty


def test_profile_figure(full_report_data):
    fig = profile_figure(full_report_data.verdicts, full_report_data.results,
                         controls=FULL_CONTROLS)  # fmt: skip
    assert fig is not None and len(fig.axes) == len(DETECTORS)
    ax = fig.axes[0]
    names = [t.get_text().replace("\n", "") for t in ax.get_yticklabels()]
    real = [e for e in FULL_EXPLAINERS if e not in FULL_CONTROLS]
    assert names == [e.replace(" ", "") for e in real]
    families = [t.get_text() for t in ax.texts if t.get_fontweight() == "bold"]
    assert families == ["localisation", "faithfulness", "robustness", "sanity"]
    colours = {tuple(np.round(p.get_facecolor()[:3], 3)) for p in ax.patches}
    assert len(colours) == 4  # every verdict group occurs in the synthetic data
