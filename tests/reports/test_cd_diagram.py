"""The critical-difference diagram: Demšar's (2006) worked example drawn with the
published groups; controls styled; sizes; errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from xeval.comparisons.ranking import BlockRanking, friedman_ranking
from xeval.errors import InputError
from xeval.reports.cd_diagram import (
    cd_caption,
    cd_diagram_figure,
    plot_cd_diagram,
    ranking_figure,
)

THICK = 2.6


def _demsar_table() -> pd.DataFrame:
    """Demšar's Table 6, as tests/comparisons/test_ranking.py holds it."""
    path = Path(__file__).parents[1] / "comparisons" / "test_ranking.py"
    spec = importlib.util.spec_from_file_location("_demsar_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DEMSAR_AUC


DEMSAR_AUC = _demsar_table()


def _bars(fig) -> list[tuple[float, float]]:
    """x extents of the thick clique bars drawn (without their padding)."""
    ax = fig.axes[0]
    out = []
    for line in ax.get_lines():
        if line.get_linewidth() == THICK:
            x = line.get_xdata()
            out.append((float(min(x)), float(max(x))))
    return out


def _demsar(alpha):
    r = friedman_ranking(DEMSAR_AUC, alpha=alpha, tie_correction=False)
    return BlockRanking("explainers", "", "", "AUC", frozenset(), r)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def _covers(bar, lo, hi, pad=0.2):
    return bar[0] < lo < bar[0] + pad and bar[1] - pad < hi < bar[1]


def test_demsar_fig1_groups_at_010():
    fig = ranking_figure(_demsar(0.10))
    bars = sorted(_bars(fig))
    # C4.5+m+cf (1.964) .. C4.5+cf (2.893) and C4.5+cf (2.893) .. C4.5 (3.143)
    assert len(bars) == 2
    assert _covers(bars[0], 27.5 / 14, 40.5 / 14) and _covers(bars[1], 40.5 / 14, 44 / 14)
    texts = _texts(fig)
    assert "CD = 1.12" in texts
    assert {"C4.5+m+cf (1.96)", "C4.5+m (2.00)", "(2.89) C4.5+cf", "(3.14) C4.5"} <= set(texts)


def test_demsar_one_group_at_005():
    fig = ranking_figure(_demsar(0.05))
    bars = _bars(fig)
    assert len(bars) == 1 and _covers(bars[0], 27.5 / 14, 44 / 14)
    assert "CD = 1.25" in _texts(fig)


def test_controls_grey_dashed_and_no_bar_when_all_separated():
    ranks = pd.Series({"ig": 1.0, "native": 2.0, "random": 3.0})
    fig = cd_diagram_figure(ranks, cd=0.5, controls={"random"})
    assert _bars(fig) == []
    styles = {
        line.get_linestyle()
        for line in fig.axes[0].get_lines()
        if len(line.get_xdata()) == 3 and line.get_xdata()[0] == 3.0
    }
    assert styles == {"--"}
    label = next(t for t in fig.axes[0].texts if "random" in t.get_text())
    assert label.get_style() == "italic"


def test_single_column_png(tmp_path):
    path = plot_cd_diagram(_demsar(0.10), tmp_path / "cd.png")
    img = imread(path)
    assert img.shape[1] == 700  # 3.5 in at 200 dpi
    assert 150 < img.shape[0] < 700


def test_caption_states_convention_and_evidence():
    cap = cd_caption(_demsar(0.05))
    assert "Nemenyi" in cap and "CD = 1.25" in cap and "1 = best" in cap
    few = friedman_ranking(DEMSAR_AUC.iloc[:3])
    br = BlockRanking("explainers", "d", "", "AUC", frozenset(), few)
    assert "Insufficient evidence" in cd_caption(br)
    assert any("insufficient evidence" in t.replace("\n", " ") for t in _texts(ranking_figure(br)))


def test_names_with_dollar_signs_are_not_mathtext():
    ranks = pd.Series({"$a$": 1.0, "b_c": 2.5, "$$": 2.0})
    fig = cd_diagram_figure(ranks, cd=1.0)
    assert any(r"\$a\$" in t for t in _texts(fig))


@pytest.mark.parametrize(
    ("ranks", "kwargs", "match"),
    [
        ({"a": 1.0}, {"cd": 1.0}, ">= 2 methods"),
        ({"a": 1.0, "b": np.nan}, {"cd": 1.0}, ">= 2 methods"),
        ({"a": 1.0, "b": 2.0}, {"cd": 0.0}, "cd"),
        ({"a": 1.0, "b": 2.0}, {"cd": float("inf")}, "cd"),
        ({"a": 1.0, "b": 2.0}, {"cd": 1.0, "cliques": [("a", "z")]}, "without a rank"),
    ],
)
def test_bad_input(ranks, kwargs, match):
    with pytest.raises(InputError, match=match):
        cd_diagram_figure(ranks, **kwargs)
    with pytest.raises(InputError, match="no ranking"):
        ranking_figure(BlockRanking("explainers", "d", "", "m", frozenset(), None, "why"))
