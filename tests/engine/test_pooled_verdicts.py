"""Verdicts of pooled metrics (pixel AUROC, AUPR, AUPRO) against the controls: the
paired, stratified image bootstrap of xeval.engine.verdicts.pooled_verdicts, checked
against an explicit loop over resamples that recomputes the exact metrics of
xeval.metrics.pixel on the repeated images."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from tests.metrics._toy_record import toy
from xeval.engine.collect import pooled_summaries
from xeval.engine.evaluate import MetricStates
from xeval.engine.verdicts import (
    ALL,
    VERDICT_COLUMNS,
    _category_rng,
    pooled_verdicts,
)
from xeval.errors import InputError, ResumeWarning, UndefinedMetricWarning
from xeval.metrics import aupro, pixel_auroc
from xeval.metrics.pixel import AUPRO, IoUOracle, PixelAUPR, PixelAUROC
from xeval.metrics.pooled import PixelHistogramCollector, stratified_weights

SIZE = 12


def _images(seed: int, n: int, levels: int | None = 6):
    """``n`` images, 2 of 3 with a defect; integer-valued noise maps (few values: the
    grid is exact) or continuous ones."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        if i % 3:
            y, x = rng.integers(0, SIZE - 4, 2)
            masks[i, y : y + 3, x : x + 4] = True
    if levels is None:
        noise = rng.random((n, SIZE, SIZE))
    else:
        noise = rng.integers(0, levels, (n, SIZE, SIZE)).astype(float)
    return masks, noise


def _payload(masks, maps, *, bins=512):
    ids = [f"im{k}" for k in range(len(masks))]
    return PixelHistogramCollector(bins=bins).update(masks, maps, ids=ids).finish().to_payload()


def _unit(masks, maps: dict[str, np.ndarray], controls=("random", "centre"), dependent=("random",)):
    return {
        "detector": "det",
        "explainers": {
            e: {
                "control": e in controls,
                "input_dependent": e in dependent,
                "summaries": {PixelAUROC().summary_key(): _payload(masks, a)},
            }
            for e, a in maps.items()
        },
    }


def _units(n: int = 9, cats=("a", "b"), levels: int | None = 6, good_gain: float = 4.0):
    out, data = {}, {}
    for k, cat in enumerate(cats):
        masks, noise = _images(10 + k, n, levels)
        rng = np.random.default_rng(20 + k)
        maps = {
            "good": noise + good_gain * masks,  # localises the defects
            "same": noise.copy(),  # the random control's map itself
            "random": noise,
            "centre": np.broadcast_to(
                (np.hypot(*np.mgrid[:SIZE, :SIZE] - SIZE / 2) < 3).astype(float), noise.shape
            ).copy(),
            "weak": noise + (rng.random(noise.shape) < 0.3) * masks,
        }
        out[(cat, "det")] = _unit(masks, maps)
        data[cat] = (masks, maps)
    return out, data


def _rows(df, explainer, metric):
    return df[(df["explainer"] == explainer) & (df["metric"] == metric)].set_index("control")


METRICS = {"det": [PixelAUROC(), PixelAUPR(), AUPRO(fpr_limit=0.3), IoUOracle()]}


def test_rows_follow_the_verdict_table_and_rules():
    units, _ = _units()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = pooled_verdicts(units, metrics=METRICS, n_boot=300, seed=0)
    assert list(df.columns) == VERDICT_COLUMNS
    assert set(df["metric"]) == {"pixel_auroc", "pixel_aupr", "aupro@0.3"}  # no iou_oracle
    assert set(df["explainer"]) == {"good", "same", "weak"}  # controls are not judged
    assert set(df["control"]) == {"random", "centre", ALL}
    assert df["meaning"].str.contains("paired image bootstrap of the pooled metric").all()
    good = _rows(df, "good", "aupro@0.3")
    assert (good["verdict"] == "beats").all()
    assert (good.loc[["random", "centre"], "n"] == 18).all()  # images, both categories
    same = _rows(df, "same", "pixel_auroc")
    assert same.loc["random", "verdict"] == "ties"
    assert same.loc["random", ["mean_diff", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    centre = same.loc["centre", "verdict"]
    assert same.loc[ALL, "verdict"] == ("loses" if centre == "loses" else "ties")


def test_ci_is_the_percentile_interval_of_an_explicit_resampling_loop():
    """Same weights (the category streams), replicates recomputed exactly on the images
    repeated as drawn, averaged over categories: equal to the vectorised bootstrap."""
    n_boot = 40
    units, data = _units(levels=5)
    df = pooled_verdicts(
        units, metrics={"det": [PixelAUROC(), AUPRO(fpr_limit=0.3)]}, n_boot=n_boot, seed=3
    )
    for label, fn in (("pixel_auroc", pixel_auroc), ("aupro@0.3", aupro)):
        reps = np.zeros(n_boot)
        full = 0.0
        for cat, (masks, maps) in data.items():
            strata = masks.reshape(len(masks), -1).any(axis=1).astype(int)
            w = stratified_weights(strata, n_boot=n_boot, rng=_category_rng(3, cat))
            full += (fn(masks, maps["weak"]) - fn(masks, maps["random"])) / len(data)
            for b in range(n_boot):
                idx = np.repeat(np.arange(len(masks)), w[b].astype(int))
                d = fn(masks[idx], maps["weak"][idx]) - fn(masks[idx], maps["random"][idx])
                reps[b] += d / len(data)
        row = _rows(df, "weak", label).loc["random"]
        assert row["mean_diff"] == pytest.approx(full, abs=1e-12)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        assert row["ci_low"] == pytest.approx(lo, abs=1e-12)
        assert row["ci_high"] == pytest.approx(hi, abs=1e-12)
        want = "beats" if lo > 0 else "loses" if hi < 0 else "ties"
        assert row["verdict"] == want


def test_binned_mean_diff_is_close_to_the_exact_difference():
    units, data = _units(levels=None)
    df = pooled_verdicts(units, metrics={"det": [PixelAUROC()]}, n_boot=50, seed=0)
    exact = np.mean(
        [pixel_auroc(m, maps["good"]) - pixel_auroc(m, maps["centre"]) for m, maps in data.values()]
    )
    assert _rows(df, "good", "pixel_auroc").loc["centre", "mean_diff"] == pytest.approx(
        exact, abs=1e-3
    )


def test_seeded_and_independent_of_the_order_of_the_units():
    units, _ = _units()
    a = pooled_verdicts(units, metrics=METRICS, n_boot=100, seed=1)
    b = pooled_verdicts(dict(reversed(list(units.items()))), metrics=METRICS, n_boot=100, seed=1)
    key = ["explainer", "metric", "control"]
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    )
    c = pooled_verdicts(units, metrics=METRICS, n_boot=100, seed=2)
    assert not np.allclose(a["ci_low"].dropna(), c["ci_low"].dropna())


def test_too_few_images_is_insufficient_evidence():
    units, _ = _units(n=4)  # 8 images < min_n = 10
    df = pooled_verdicts(units, metrics=METRICS, n_boot=50, seed=0)
    good = _rows(df, "good", "pixel_auroc")
    assert (good["verdict"] == "insufficient evidence").all()
    assert good.loc["random", "n"] == 8 and np.isnan(good.loc["random", "ci_low"])


class _LowerAUROC(PixelAUROC):
    """Test double: the same value read as lower-is-better."""

    name = "lower_auroc"
    higher_is_better = False


class _StableAUROC(PixelAUROC):
    name = "stable_auroc"
    verdict_comparators = "input-dependent controls"


class _ThresholdAUROC(PixelAUROC):
    name = "threshold_auroc"
    verdict_comparators = "threshold"
    verdict_threshold = 0.6


def test_direction_comparators_and_threshold_rules():
    units, _ = _units()
    metrics = {"det": [PixelAUROC(), _LowerAUROC(), _StableAUROC(), _ThresholdAUROC()]}
    df = pooled_verdicts(units, metrics=metrics, n_boot=200, seed=0)
    up, down = _rows(df, "good", "pixel_auroc"), _rows(df, "good", "lower_auroc")
    assert (up["verdict"] == "beats").all() and (down["verdict"] == "loses").all()
    assert down.loc["random", "mean_diff"] == pytest.approx(-up.loc["random", "mean_diff"])
    assert set(_rows(df, "good", "stable_auroc").index) == {"random", ALL}
    thr = _rows(df, "good", "threshold_auroc")
    assert list(thr.index) == [ALL] and thr.loc[ALL, "verdict"] == "passes"
    assert "threshold 0.6" in thr.loc[ALL, "meaning"]
    assert _rows(df, "same", "threshold_auroc").loc[ALL, "verdict"] == "fails"  # ~0.5


def test_undefined_category_is_left_out_of_the_mean():
    units, data = _units()
    masks, maps = data["b"]
    empty = np.zeros_like(masks)  # category b: no defect at all
    units[("b", "det")] = _unit(empty, maps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        df = pooled_verdicts(units, metrics={"det": [PixelAUROC()]}, n_boot=50, seed=0)
    row = _rows(df, "good", "pixel_auroc").loc["random"]
    assert row["n"] == 9  # category a only
    only_a = pooled_verdicts(
        {("a", "det"): units[("a", "det")]}, metrics={"det": [PixelAUROC()]}, n_boot=50, seed=0
    )
    assert row["mean_diff"] == _rows(only_a, "good", "pixel_auroc").loc["random", "mean_diff"]


def test_units_without_summaries_give_no_pooled_verdict_and_say_so():
    for nothing in (None, {}):
        units, _ = _units()
        units[("b", "det")] = nothing
        with pytest.warns(ResumeWarning, match=r"detector 'det'.*\['b'\]"):
            df = pooled_verdicts(units, metrics=METRICS, n_boot=20, seed=0)
        assert df.empty and list(df.columns) == VERDICT_COLUMNS


def test_bad_input_is_refused():
    units, data = _units()
    with pytest.raises(InputError, match="n_boot"):
        pooled_verdicts(units, metrics=METRICS, n_boot=0)
    with pytest.raises(InputError, match="level"):
        pooled_verdicts(units, metrics=METRICS, level=1.5)
    with pytest.raises(InputError, match="malformed"):
        pooled_verdicts({("a", "det"): {"detector": "det"}}, metrics=METRICS)
    masks, maps = data["a"]
    bad = _unit(masks, maps)
    bad["explainers"]["random"]["summaries"] = {
        PixelAUROC().summary_key(): _payload(masks[:-1], maps["random"][:-1])
    }
    with pytest.raises(InputError, match="different images"):
        pooled_verdicts({("a", "det"): bad}, metrics=METRICS, n_boot=10)


# ----------------------------------------------------------------- engine side
def test_metric_states_collect_summaries_and_the_unit_payload_is_json():
    record, expl = toy(8)
    metrics = [PixelAUROC(), AUPRO(fpr_limit=0.3), IoUOracle()]

    class E:
        def __init__(self, name, control):
            self.name, self.control, self.input_dependent = name, control, True

    states = {}
    for name in ("toy", "random"):
        a = MetricStates(metrics, summaries=True)
        b = MetricStates(metrics, summaries=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            a.update(record.subset(range(5)), expl.subset(range(5)), stage="stream", subsets={})
            b.update(record.subset(range(5, 8)), expl.subset(range(5, 8)), stage="stream",
                     subsets={})  # fmt: skip
        states[name] = a.merge(b)
    assert list(states["toy"].summaries) == [PixelAUROC().summary_key()]  # one shared
    assert MetricStates(metrics).summaries == {}  # opt-in (video runs do not collect)
    unit = pooled_summaries(
        detector="det", category="toy", explainers=[E("toy", False), E("random", True)],
        states=states,
    )  # fmt: skip
    back = json.loads(json.dumps(unit))
    s = states["toy"].finished_summaries()[PixelAUROC().summary_key()]
    assert s.ids == list(record.ids)
    df = pooled_verdicts({("toy", "det"): back}, metrics={"det": metrics}, n_boot=20, seed=0)
    assert set(df["control"]) == {"random", ALL} and set(df["explainer"]) == {"toy"}
    assert (df["verdict"] == "insufficient evidence").all()  # 8 images < 10
