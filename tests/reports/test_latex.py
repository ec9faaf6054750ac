"""latex_tables: booktabs fragment, bold best (direction-aware, controls excluded), CI as
± half-width, controls marked, LaTeX escaping; write_report writes tables.tex."""

from __future__ import annotations

import math
import re

import pytest

from xeval.errors import InputError
from xeval.reports import ReportData, latex_tables, write_report
from xeval.reports.latex import table_label
from xeval.reports.tables import tex_escape
from xeval.results import make_row, results_frame

NASTY = "a_b%c&d#e$f{g}h~i^j\\k"
NASTY_TEX = r"a\_b\%c\&d\#e\$f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"


def _results(values: dict, *, higher_is_better=True, metric="err", ci=0.02):
    """values: explainer -> value (one detector, one category + mean)."""
    rows = []
    for exp, v in values.items():
        for cat in ("c1", "mean"):
            rows.append(
                make_row(
                    detector="det",
                    explainer=exp,
                    dataset="d",
                    category=cat,
                    metric=metric,
                    value=v,
                    ci_low=v - ci if cat == "c1" else math.nan,
                    ci_high=v + 2 * ci if cat == "c1" else math.nan,
                    n=10,
                    higher_is_better=higher_is_better,
                    control=exp in {"random", "centre"},
                )
            )
    return results_frame(rows)


def _row(tex: str, explainer: str) -> list[str]:
    line = next(ln for ln in tex.splitlines() if ln.startswith(f"det & {explainer}"))
    return [c.strip() for c in line.removesuffix(r"\\").strip().split(" & ")]


def test_escape_every_special_character():
    assert tex_escape(NASTY) == NASTY_TEX
    assert tex_escape("a\n  b") == "a b"


@pytest.mark.parametrize("higher", [True, False])
def test_best_bold_direction_aware_controls_never_bold(higher):
    # the control is the best of all in both directions; it must not be bold
    vals = {"good": 0.5, "bad": 0.7, "random": 0.1 if not higher else 0.9}
    if higher:
        vals = {"good": 0.7, "bad": 0.5, "random": 0.9}
    tex = latex_tables(ReportData(results=_results(vals, higher_is_better=higher)))
    assert _row(tex, "good")[3] == r"\textbf{0.700}" if higher else r"\textbf{0.500}"
    assert "textbf" not in " ".join(_row(tex, "bad"))
    assert "textbf" not in " ".join(_row(tex, r"random$^\dagger$"))
    assert (r"$\uparrow$" if higher else r"$\downarrow$") in tex


def test_ci_written_as_half_width_or_interval():
    tex = latex_tables(ReportData(results=_results({"good": 0.7, "random": 0.2})))
    # ci_low = v - 0.02, ci_high = v + 0.04: half-width 0.03 (asymmetric CI)
    assert _row(tex, "good")[2] == r"\textbf{0.700}\,$\pm$\,0.030"
    assert _row(tex, r"random$^\dagger$")[2] == r"0.200\,$\pm$\,0.030"
    assert _row(tex, "good")[3] == r"\textbf{0.700}"  # the mean row has no CI
    assert "half the width" in tex
    tex = latex_tables(ReportData(results=_results({"good": 0.7})), ci="interval")
    assert _row(tex, "good")[2] == r"\textbf{0.700} [0.680, 0.740]"


def test_structure_controls_note_and_escaping():
    res = _results({NASTY: 0.7, "random": 0.2}, metric="m_1%")
    tex = latex_tables(ReportData(results=res))
    assert tex.startswith("% requires \\usepackage{booktabs}")
    for env in ("table", "tabular"):
        assert tex.count(rf"\begin{{{env}}}") == tex.count(rf"\end{{{env}}}") == 1
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == 1
    assert NASTY_TEX in tex and r"m\_1\%" in tex
    assert r"$^\dagger$ trivial control (random)" in tex
    assert r"\label{tab:xeval:m-1}" in tex
    # no unescaped special character outside the markup we write
    body = re.sub(r"\\[a-zA-Z]+(\{[^{}]*\})?|\$[^$]*\$|\\[_%&#${}]|\{|\}|\[|\]", "", tex)
    body = "\n".join(ln for ln in body.splitlines() if not ln.startswith("%"))
    assert not re.search(r"[_%&#$~^](?!\s)", body.replace(" & ", " "))


def test_no_control_note_without_controls_and_nan():
    res = _results({"a": 0.7, "b": math.nan})
    tex = latex_tables(ReportData(results=res))
    assert "trivial control" not in tex
    assert _row(tex, "b")[2] == "n/a"


def test_metric_selection_and_errors(report_data):
    tex = latex_tables(report_data, metrics=["iou@t", "pixel_auroc"], statistics=False)
    assert tex.index(r"\caption{iou@t") < tex.index(r"\caption{pixel\_auroc")
    assert tex.count(r"\begin{table}") == 2
    with pytest.raises(InputError, match="valid:"):
        latex_tables(report_data, metrics=["nope"])
    with pytest.raises(InputError, match="ci must be one of"):
        latex_tables(report_data, ci="sd")
    with pytest.raises(InputError, match="decimals"):
        latex_tables(report_data, decimals=-1)


def test_all_metrics_and_oracle_flagged(report_data):
    tex = latex_tables(report_data, statistics=False)
    assert tex.count(r"\begin{table}") == report_data.results["label"].nunique()
    cap = next(ln for ln in tex.splitlines() if ln.startswith(r"\caption{iou\_oracle"))
    assert "optimistic" in cap
    assert r"\textless{}script\textgreater{}" in tex and "<script>" not in tex


def test_table_label():
    assert table_label("aupro@0.3 (synth)") == "tab:xeval:aupro-0.3-synth"


def test_write_report_writes_tables_tex(report_data, tmp_path):
    paths = write_report(report_data, tmp_path, figures=False)
    assert "tables.tex" in paths
    assert (tmp_path / "tables.tex").read_text() == latex_tables(report_data)
    assert "href='tables.tex'" in (tmp_path / "index.html").read_text()
