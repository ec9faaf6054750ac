"""JUnit XML (parsed back with xml.etree) and the Markdown summary of a gate report."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from xeval.gates.junit import SUITE_NAME, WARN_PREFIX, junit_xml_text, write_junit
from xeval.gates.summary import markdown_summary, write_summary

NATIVE_A = {"detector": "det_a", "explainer": "native"}
GATES = [
    {"name": "localises", "metric": "pixel_auroc", "where": {"detector": "det_a"}, "min": 0.55},
    {"name": "fpr | low", "metric": "image_fpr@95tpr", "where": {"explainer": "native"},
     "category": "all", "max": 0.2, "severity": "warn"},
    {"name": "beats", "metric": "relevance_mass", "where": NATIVE_A, "verdict": "beats"},
    {"name": "no regression", "metric": "aupro@0.3", "where": NATIVE_A, "category": "brick",
     "max_drop": 0.01},
]  # fmt: skip


@pytest.fixture
def report(make_run, evaluate, tmp_path):
    run = make_run(manifest={"config_hash": "h-run", "dataset_fingerprint": "fp-run"})
    base = tmp_path / "base"
    shutil.copytree(run, base)
    df = pd.read_csv(base / "results.csv")
    m = (df.detector == "det_a") & (df.explainer == "native") & (df.category == "brick")
    df.loc[m & (df.label == "aupro@0.3"), "value"] = 0.95  # run: 0.92 -> drop 0.03
    df.to_csv(base / "results.csv", index=False)
    (base / "manifest.json").write_text(
        '{"config_hash": "h-base", "dataset_fingerprint": "fp-run"}'
    )
    # fpr: det_a native brick 0.08, tissue 0.12, det_b native brick 0.13, tissue 0.17: all <= 0.2
    # make one warn: det_b native tissue 0.25
    df = pd.read_csv(run / "results.csv")
    m = (df.detector == "det_b") & (df.explainer == "native") & (df.category == "tissue")
    df.loc[m & (df.label == "image_fpr@95tpr"), "value"] = 0.25
    df.to_csv(run / "results.csv", index=False)
    return evaluate(GATES, run, base)


def test_report_outcome(report):
    assert [(c.gate.name, c.status) for c in report.cases] == [
        ("localises", "pass"),  # native 0.9
        ("localises", "pass"),  # ig 0.8
        ("localises", "fail"),  # random 0.5
        ("localises", "pass"),  # sobel 0.6
        ("fpr | low", "pass"),
        ("fpr | low", "pass"),
        ("fpr | low", "pass"),
        ("fpr | low", "warn"),
        ("beats", "pass"),
        ("no regression", "fail"),
    ]
    assert report.exit_code == 1


def test_junit_parsed_back(report, tmp_path):
    path = write_junit(report, tmp_path / "out" / "junit.xml")
    root = ET.parse(path).getroot()
    (suite,) = root.iter("testsuite")
    assert suite.get("name") == SUITE_NAME == "xeval gates"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("10", "2", "1")
    assert suite.get("errors") == "0"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run_dir"] == str(report.run.path)
    assert props["config_hash"] == "h-run" and props["dataset_fingerprint"] == "fp-run"
    assert props["baseline_dir"] == str(report.baseline.path)
    assert props["baseline_config_hash"] == "h-base"
    assert "configured differently" in suite.find("system-out").text
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c.test_name for c in report.cases]
    assert cases[0].get("name") == "localises [det_a / native / mean]"
    assert cases[0].get("classname") == "localises"
    failures = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failures) == {"localises [det_a / random / mean]",
                             "no regression [det_a / native / brick]"}  # fmt: skip
    f = failures["localises [det_a / random / mean]"]
    assert f.get("message") == "pixel_auroc = 0.5 (no CI, n=40): 0.5 < min 0.55"
    assert f.get("type") == "gate failed"
    msg = failures["no regression [det_a / native / brick]"].get("message")
    assert msg == (
        "aupro@0.3 = 0.92 (95% CI [0.87, 0.97], n=20): drop 0.03 from baseline 0.95 "
        "(95% CI [0.87, 0.97], n=20) > max_drop 0.01"
    )
    (warned,) = [c for c in cases if c.find("skipped") is not None]
    assert warned.get("name") == "fpr | low [det_b / native / tissue]"
    assert warned.find("skipped").get("message") == (
        WARN_PREFIX + "image_fpr@95tpr = 0.25 (95% CI [0.12, 0.22], n=20): 0.25 > max 0.2"
    )
    assert warned.find("failure") is None
    # every case carries its full message
    assert all(c.find("system-out").text for c in cases)
    verdict_out = cases[8].find("system-out").text
    assert "verdict against all controls 'beats'" in verdict_out and "random: beats" in verdict_out


def test_junit_without_baseline_has_no_baseline_properties(make_run, evaluate):
    rep = evaluate([GATES[0]], make_run())
    suite = ET.fromstring(junit_xml_text(rep)).find("testsuite")
    names = [p.get("name") for p in suite.iter("property")]
    assert names == ["run_dir", "config_hash", "dataset_fingerprint", "spec"]
    assert suite.find("system-out") is None


def test_markdown_summary(report, tmp_path):
    text = markdown_summary(report)
    lines = text.splitlines()
    assert lines[0] == "## xeval gates: FAILED"
    header = lines.index("| gate | row | measured | bound | CI | result |")
    rows = lines[header + 2 : header + 2 + len(report.cases)]
    assert rows[0] == "| localises | det_a / native / mean | 0.9 | ≥ 0.55 | no CI, n=40 | ✅ |"
    assert rows[2].endswith("| ❌ |")
    assert rows[7] == (
        "| fpr \\| low | det_b / native / tissue | 0.25 | ≤ 0.2 | 95% CI [0.12, 0.22], n=20 | ⚠️ |"
    )
    assert rows[8] == (
        "| beats | det_a / native / mean | 0.9 · beats | verdict beats | no CI, n=40 | ✅ |"
    )
    assert rows[9] == (
        "| no regression | det_a / native / brick | 0.92 | drop ≤ 0.01 vs baseline 0.95 | "
        "95% CI [0.87, 0.97], n=20 | ❌ |"
    )
    assert any(line.startswith("> ⚠️ the baseline") for line in lines[:header])
    assert "- ❌ **localises** [det_a / random / mean]: pixel_auroc = 0.5" in text
    assert lines[-1] == (
        "**Total: 10 checks from 4 gates: 7 passed, 2 failed, 1 warning → exit code 1**"
    )
    # every table row has the six columns (the escaped | does not split a cell)
    assert all(len(r.replace("\\|", "").split("|")) == 8 for r in rows)
    path = write_summary(report, tmp_path / "summary.md")
    assert path.read_text(encoding="utf-8") == text


def test_summary_all_pass(make_run, evaluate):
    rep = evaluate([GATES[2]], make_run())
    text = markdown_summary(rep)
    assert text.startswith("## xeval gates: passed\n")
    assert "Failures and warnings" not in text
    assert text.rstrip().endswith(
        "1 check from 1 gate: 1 passed, 0 failed, 0 warnings → exit code 0**"
    )


def test_names_are_escaped(make_run, evaluate):
    evil = "<script>alert('x')</script> | & more"
    rep = evaluate([GATES[2] | {"name": evil}], make_run())
    text = markdown_summary(rep)
    assert "<script>" not in text
    assert "&lt;script>alert('x')&lt;/script> \\| & more" in text
    assert "0.5 < min 0.55" in markdown_summary(evaluate([GATES[0]], make_run("r2")))
    case = ET.fromstring(junit_xml_text(rep)).find("testsuite").find("testcase")
    assert case.get("name") == f"{evil} [det_a / native / mean]"  # XML-escaped, read back
