"""Evaluating gates on synthetic run folders: rows, checks, errors against the run."""

from __future__ import annotations

import json
import math
import shutil

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from _gate_runs import build_results, write_run
from hypothesis import HealthCheck, given, settings

from xeval.errors import ConfigError, InputError, XevalError
from xeval.gates.evaluate import DROP_TOLERANCE, fmt
from xeval.gates.runfolder import read_run

PA = {"name": "pa", "metric": "pixel_auroc"}


def keys(report):
    return [(c.gate.name, c.detector, c.explainer, c.category, c.status) for c in report.cases]


# ------------------------------------------------------------------------ pass / fail
def test_min_pass_fail_and_warn(make_run, evaluate):
    run = make_run()
    rep = evaluate(
        [
            PA | {"where": {"detector": "det_a", "explainer": "native"}, "min": 0.9},
            PA
            | {
                "name": "strict",
                "where": {"detector": "det_a", "explainer": "native"},
                "min": 0.95,
            },
            PA
            | {
                "name": "soft",
                "where": {"detector": "det_b", "explainer": "native"},
                "min": 0.95,
                "severity": "warn",
            },
        ],  # fmt: skip
        run,
    )
    assert keys(rep) == [
        ("pa", "det_a", "native", "mean", "pass"),
        ("strict", "det_a", "native", "mean", "fail"),
        ("soft", "det_b", "native", "mean", "warn"),
    ]
    assert rep.exit_code == 1
    fail = rep.cases[1]
    assert fail.value == 0.9 and fail.n == 40 and fail.ci_text == "no CI"
    assert fail.message == "pixel_auroc = 0.9 (no CI, n=40): 0.9 < min 0.95"
    assert rep.cases[0].checks[0].bound == "≥ 0.9"
    # a warn-only failure does not fail the exit code
    soft = PA | {"where": {"detector": "det_b", "explainer": "native"}, "min": 0.95}
    rep = evaluate([soft | {"severity": "warn"}], run)
    assert rep.exit_code == 0 and rep.count("warn") == 1


def test_max_and_lower_is_better(make_run, evaluate):
    run = make_run()
    gate = {"name": "fpr", "metric": "image_fpr@95tpr", "where": {"explainer": "native"}}
    rep = evaluate([gate | {"max": 0.11}], run)  # det_a 0.1, det_b 0.15
    assert [c.status for c in rep.cases] == ["pass", "fail"]
    assert rep.cases[1].checks[0].message == "0.15 > max 0.11"


def test_min_and_max_together(make_run, evaluate):
    rep = evaluate([PA | {"where": {"control": False}, "min": 0.8, "max": 0.88}], make_run())
    got = {(c.detector, c.explainer): c.status for c in rep.cases}
    # det_a native 0.9 (> max), det_a ig 0.8 (ok), det_b native 0.85 (ok)
    assert got == {("det_a", "native"): "fail", ("det_a", "ig"): "pass",
                   ("det_b", "native"): "pass"}  # fmt: skip
    failed = rep.cases[0]
    assert [c.passed for c in failed.checks] == [True, False]
    assert failed.message.endswith("0.9 > max 0.88; 0.9 >= min 0.8")  # failed first


def test_where_several_rows_each_must_pass(make_run, evaluate):
    rep = evaluate([PA | {"where": {"detector": "det_a"}, "min": 0.55}], make_run())
    assert [(c.explainer, c.status) for c in rep.cases] == [
        ("native", "pass"), ("ig", "pass"), ("random", "fail"), ("sobel", "pass")
    ]  # fmt: skip
    assert rep.exit_code == 1
    assert rep.cases[0].test_name == "pa [det_a / native / mean]"


def test_where_lists_and_control(make_run, evaluate):
    rep = evaluate([PA | {"where": {"explainer": ["ig", "sobel"]}, "min": 0}], make_run())
    assert {(c.detector, c.explainer) for c in rep.cases} == {
        ("det_a", "ig"), ("det_a", "sobel"), ("det_b", "sobel")
    }  # fmt: skip
    rep = evaluate([PA | {"where": {"control": True, "detector": "det_b"}, "min": 0}], make_run())
    assert [c.explainer for c in rep.cases] == ["random", "sobel"]


def test_categories(make_run, evaluate):
    run = make_run()
    where = {"detector": "det_a", "explainer": "native"}

    def cats(**kw):
        gate = PA | {"where": where, "min": 0} | kw
        return [c.category for c in evaluate([gate], run).cases]

    assert cats() == ["mean"]
    assert cats(category="mean") == ["mean"]
    assert cats(category="tissue") == ["tissue"]
    assert cats(category="all") == ["brick", "tissue"]
    # all: each category must pass (brick 0.92, tissue 0.88)
    rep = evaluate([PA | {"where": where, "category": "all", "min": 0.9}], run)
    assert [(c.category, c.status) for c in rep.cases] == [("brick", "pass"), ("tissue", "fail")]


def test_metric_by_registered_name_when_unambiguous(make_run, evaluate):
    rep = evaluate([{"name": "a", "metric": "aupro", "where": {"explainer": "ig"}, "min": 0}],
                   make_run())  # fmt: skip
    assert [c.label for c in rep.cases] == ["aupro@0.3"]


def test_nan_value_fails_with_reason(make_run, evaluate):
    run = make_run(overrides={("det_a", "native", "mean", "pixel_auroc"): math.nan})
    rep = evaluate([PA | {"where": {"detector": "det_a", "explainer": "native"}, "min": 0,
                          "max": 1}], run)  # fmt: skip
    (case,) = rep.cases
    assert case.status == "fail" and math.isnan(case.value)
    assert all(not c.passed for c in case.checks)
    assert "undefined (NaN: one class only); undefined is not a pass" in case.message
    assert case.checks[0].measured == "NaN"


# --------------------------------------------------------------------------- verdicts
def test_verdict_pass_and_fail_with_per_control_detail(make_run, evaluate):
    rep = evaluate(
        [{"name": "v", "metric": "relevance_mass", "where": {"detector": "det_a"},
          "verdict": "beats"}],
        make_run(),
    )  # fmt: skip
    # the controls of det_a have no verdict and are skipped
    assert [(c.explainer, c.status) for c in rep.cases] == [("native", "pass"), ("ig", "fail")]
    msg = rep.cases[1].message
    assert "verdict against all controls 'ties', required 'beats'" in msg
    assert "random: beats (mean diff 0.2, 95% CI [0.1, 0.3], n=16)" in msg
    assert "sobel: ties (mean diff 0.05, 95% CI [-0.05, 0.15], n=16)" in msg
    assert rep.cases[1].checks[0].measured == "ties"
    rep = evaluate([{"name": "v", "metric": "relevance_mass", "where": {"explainer": "ig"},
                     "verdict": "ties"}], make_run("r2"))  # fmt: skip
    assert [c.status for c in rep.cases] == ["pass"]


def test_verdict_on_video_run(video_run, evaluate):
    rep = evaluate([{"name": "v", "metric": "frame_auroc", "verdict": "beats"}], video_run)
    (case,) = rep.cases
    assert (case.explainer, case.category, case.status) == ("native", "all", "pass")
    assert "closest control random (0.5), smallest z 4.5" in case.message


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"metric": "pixel_auroc"}, ["no verdicts", "'pixel_auroc'", "['relevance_mass']"]),
        ({"metric": "relevance_mass", "where": {"control": True}},
         ["only the trivial controls", "'random'", "'sobel'"]),
    ],
)  # fmt: skip
def test_verdict_errors(make_run, evaluate, gate, expected):
    with pytest.raises(ConfigError) as info:
        evaluate([{"name": "v", "verdict": "beats"} | gate], make_run())
    for part in expected:
        assert part in str(info.value)


def test_verdict_missing_file_or_row(make_run, evaluate):
    with pytest.raises(InputError, match="no verdicts.csv"):
        evaluate([{"name": "v", "metric": "relevance_mass", "verdict": "beats"}],
                 make_run(verdicts=False))  # fmt: skip
    run = make_run("r2")
    v = pd.read_csv(run / "verdicts.csv")
    v[v["detector"] != "det_b"].to_csv(run / "verdicts.csv", index=False)
    with pytest.raises(ConfigError, match="no verdict for detector 'det_b'.*det_a / ig"):
        evaluate([{"name": "v", "metric": "relevance_mass", "verdict": "beats"}], run)


# --------------------------------------------------------------------------- baseline
def edited_copy(run, dest, edits):
    """A baseline: ``run`` copied and results.csv values edited."""
    shutil.copytree(run, dest)
    df = pd.read_csv(dest / "results.csv", keep_default_na=False, na_values={"value": [""]})
    for (det, expl, cat, label), value in edits.items():
        m = (df.detector == det) & (df.explainer == expl) & (df.category == cat)
        df.loc[m & (df.label == label), "value"] = value
    df.to_csv(dest / "results.csv", index=False)
    return dest


NATIVE_A = {"detector": "det_a", "explainer": "native"}


def test_regression_against_baseline(make_run, evaluate, tmp_path):
    run = make_run()
    base = edited_copy(run, tmp_path / "base", {("det_a", "native", "mean", "pixel_auroc"): 0.92})
    gate = PA | {"where": NATIVE_A, "max_drop": 0.01}
    gate.pop("min", None)
    rep = evaluate([gate], run, base)
    (case,) = rep.cases
    assert case.status == "fail"
    assert case.checks[0].message == "drop 0.02 from baseline 0.92 (no CI, n=40) > max_drop 0.01"
    assert case.checks[0].bound == "drop ≤ 0.01 vs baseline 0.92"
    assert evaluate([gate | {"max_drop": 0.02}], run, base).exit_code == 0
    # an improvement is never a drop
    better = edited_copy(run, tmp_path / "b2", {("det_a", "native", "mean", "pixel_auroc"): 0.5})
    assert evaluate([gate | {"max_drop": 0.0}], run, better).exit_code == 0
    assert rep.notes == []  # same config hash and dataset fingerprint


def test_regression_exact_decimal_boundary(make_run, evaluate, tmp_path):
    """0.91 - 0.90 is 0.010000000000000009 in floating point: still within max_drop 0.01."""
    run = make_run()
    base = edited_copy(run, tmp_path / "base", {("det_a", "native", "mean", "pixel_auroc"): 0.91})
    assert 0.91 - 0.9 > 0.01
    rep = evaluate([{"name": "r", "metric": "pixel_auroc", "where": NATIVE_A, "max_drop": 0.01}],
                   run, base)  # fmt: skip
    assert rep.exit_code == 0


def test_regression_lower_is_better_is_an_increase(make_run, evaluate, tmp_path):
    run = make_run()  # det_a native image_fpr@95tpr = 0.1
    key = ("det_a", "native", "mean", "image_fpr@95tpr")
    gate = {"name": "r", "metric": "image_fpr@95tpr", "where": NATIVE_A, "max_drop": 0.01}
    worse = evaluate([gate], run, edited_copy(run, tmp_path / "b1", {key: 0.05}))
    assert worse.cases[0].status == "fail"
    assert (
        worse.cases[0]
        .checks[0]
        .message.startswith("increase (lower is better) 0.05 from baseline 0.05")
    )
    assert "increase ≤ 0.01" in worse.cases[0].checks[0].bound
    better = evaluate([gate], run, edited_copy(run, tmp_path / "b2", {key: 0.3}))
    assert better.cases[0].status == "pass"


def test_regression_nan_baseline_fails(make_run, evaluate, tmp_path):
    run = make_run()
    base = edited_copy(run, tmp_path / "b", {("det_a", "native", "mean", "pixel_auroc"): math.nan})
    rep = evaluate([{"name": "r", "metric": "pixel_auroc", "where": NATIVE_A, "max_drop": 1}],
                   run, base)  # fmt: skip
    assert rep.cases[0].status == "fail"
    assert "the baseline value is undefined" in rep.cases[0].message


def test_regression_errors(make_run, evaluate, tmp_path):
    run = make_run()
    gate = {"name": "r", "metric": "pixel_auroc", "where": NATIVE_A, "max_drop": 0.01}
    with pytest.raises(InputError, match=r"--baseline is required: gate\(s\) \['r'\]"):
        evaluate([gate], run)
    base = tmp_path / "base"
    shutil.copytree(run, base)
    df = pd.read_csv(base / "results.csv")
    df[~((df.detector == "det_a") & (df.explainer == "native"))].to_csv(
        base / "results.csv", index=False
    )
    with pytest.raises(InputError) as info:
        evaluate([gate], run, base)
    msg = str(info.value)
    assert "--baseline" in msg and "no row for metric 'pixel_auroc', det_a / native / mean" in msg
    assert "det_a / ig / mean" in msg  # lists what the baseline has
    flipped = tmp_path / "flipped"
    shutil.copytree(run, flipped)
    df = pd.read_csv(flipped / "results.csv")
    df["higher_is_better"] = False
    df.to_csv(flipped / "results.csv", index=False)
    with pytest.raises(InputError, match="cannot be compared"):
        evaluate([gate], run, flipped)


def test_regression_notes_when_runs_differ(make_run, evaluate):
    run = make_run()
    base = make_run("base", manifest={"config_hash": "hash-2", "dataset_fingerprint": "fp-1"})
    rep = evaluate([{"name": "r", "metric": "pixel_auroc", "where": NATIVE_A, "max_drop": 0}],
                   run, base)  # fmt: skip
    assert rep.exit_code == 0
    (note,) = rep.notes
    assert "config hash hash-2, this run hash-1" in note and "configured differently" in note
    base2 = make_run("base2", manifest={})
    rep = evaluate([{"name": "r", "metric": "pixel_auroc", "where": NATIVE_A, "max_drop": 0}],
                   run, base2)  # fmt: skip
    assert len(rep.notes) == 2 and all("not recorded" in n for n in rep.notes)


# ----------------------------------------------------------- invalid against the run
LABELS = "['aupro@0.3', 'image_fpr@95tpr', 'iou@0.5', 'iou@t', 'pixel_auroc', 'relevance_mass']"


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"metric": "pixel_aurocc"}, ["gates[0] ('g').metric", "'pixel_aurocc'", LABELS]),
        ({"metric": "iou"}, ["'iou' is ambiguous", "['iou@0.5', 'iou@t']"]),
        ({"where": {"detector": "det_c"}},
         ["where.detector", "unknown detector 'det_c'", "['det_a', 'det_b']"]),
        ({"where": {"explainer": ["native", "gradcam"]}},
         ["where.explainer", "'gradcam'", "['ig', 'native', 'random', 'sobel']"]),
        ({"where": {"dataset": "mvtec"}}, ["where.dataset", "'mvtec'", "['textures']"]),
        ({"where": {"protocol": "x"}}, ["where.protocol", "['demo-quick']"]),
        ({"category": "bottle"},
         ["category", "'bottle'", "['mean', 'all', 'brick', 'tissue']"]),
        ({"where": {"detector": "det_b", "explainer": "ig"}},
         ["match no row", "det_a / ig / mean", "det_b / native / mean"]),
    ],
)  # fmt: skip
def test_unknown_names_list_the_valid_ones(make_run, evaluate, gate, expected):
    with pytest.raises(ConfigError) as info:
        evaluate([{"name": "g", "metric": "pixel_auroc", "min": 0} | gate], make_run())
    msg = str(info.value)
    assert "--run" in msg
    for part in expected:
        assert part in msg, (part, msg)


def test_video_run_default_category_and_mean_refused(video_run, evaluate):
    rep = evaluate([{"name": "f", "metric": "frame_auroc[macro]", "min": 0.6}], video_run)
    assert [(c.explainer, c.category, c.status) for c in rep.cases] == [
        ("native", "all", "pass"), ("random", "all", "fail")
    ]  # fmt: skip
    assert rep.cases[0].ci_text == "95% CI [0.8, 1]"
    with pytest.raises(ConfigError, match=r"valid: \['all'\]"):
        evaluate([{"name": "f", "metric": "frame_auroc", "category": "mean", "min": 0}],
                 video_run)  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: (p / "results.csv").unlink(), "no results.csv (not a finished run"),
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
        (lambda p: (p / "manifest.json").write_text("{oops"), "cannot read manifest.json"),
        (lambda p: (p / "manifest.json").write_text("[1]"), "not a JSON object"),
        (lambda p: (p / "results.csv").write_text(""), "cannot read the CSV"),
        (lambda p: (p / "results.csv").write_text("a,b\n1,2\n"), "missing column(s)"),
        (lambda p: (p / "results.csv").write_bytes(b"\xff\xfe\x00\x01,\n"), "cannot read"),
        (lambda p: (p / "results.csv").write_text((p / "results.csv").read_text().split("\n")[0]
                                                  + "\n"), "has no rows"),
    ],
)  # fmt: skip
def test_unfinished_or_damaged_run(make_run, damage, expected):
    run = make_run()
    damage(run)
    with pytest.raises(InputError) as info:
        read_run(run)
    assert expected in str(info.value) and str(run) in str(info.value)


def test_run_dir_missing_or_file(tmp_path):
    with pytest.raises(InputError, match="--baseline .* does not exist"):
        read_run(tmp_path / "nope", option="--baseline")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        read_run(tmp_path / "f")


# ------------------------------------------------------------------------- properties
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=finite)
def test_min_max_bounds_are_inclusive_and_exact(tmp_path_factory, evaluate, value):
    """min = value passes, min = the next float above fails; same for max."""
    run = write_run(
        tmp_path_factory.mktemp("run"),
        build_results({("det_a", "native", "mean", "pixel_auroc"): value}),
    )
    gate = {"name": "p", "metric": "pixel_auroc", "where": NATIVE_A}
    up, down = float(np.nextafter(value, np.inf)), float(np.nextafter(value, -np.inf))
    assert evaluate([gate | {"min": value}], run).exit_code == 0
    assert evaluate([gate | {"max": value}], run).exit_code == 0
    rep = evaluate([gate | {"min": up}], run)
    assert rep.exit_code == 1
    # the message tells the two numbers apart even when they print alike
    assert fmt(value, up) != fmt(up, value)
    assert evaluate([gate | {"max": down}], run).exit_code == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.floats(0, 1),
    base=st.floats(0, 1),
    higher=st.booleans(),
)
def test_max_drop_is_direction_aware(tmp_path_factory, evaluate, value, base, higher):
    """max_drop = the worsening passes; 1e-6 less fails; any improvement passes 0."""
    label = "pixel_auroc" if higher else "image_fpr@95tpr"
    key = ("det_a", "native", "mean", label)
    root = tmp_path_factory.mktemp("runs")
    run = write_run(root / "run", build_results({key: value}))
    bl = write_run(root / "base", build_results({key: base}))
    worse = (base - value) if higher else (value - base)
    gate = {"name": "r", "metric": label, "where": NATIVE_A}
    assert evaluate([gate | {"max_drop": max(worse, 0.0)}], run, bl).exit_code == 0
    if worse - 1e-6 >= 0:
        assert evaluate([gate | {"max_drop": worse - 1e-6}], run, bl).exit_code == 1
    if worse <= 0:
        assert evaluate([gate | {"max_drop": 0.0}], run, bl).exit_code == 0
    assert DROP_TOLERANCE < 1e-6


def test_manifest_values_are_read(make_run):
    run = make_run(manifest={"config_hash": "abc", "dataset_fingerprint": "def"})
    r = read_run(run)
    assert (r.config_hash, r.dataset_fingerprint) == ("abc", "def")
    assert json.loads((run / "manifest.json").read_text())["config_hash"] == "abc"
    assert issubclass(InputError, XevalError)
