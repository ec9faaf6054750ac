"""``xeval gate``: exit codes through ``xeval.cli.main`` and a subprocess, outputs written
only where asked, and the example spec on real demo runs (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from xeval.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO_SPEC = ROOT / "reports" / "gates" / "demo.yaml"

PASS = [{"name": "ok", "metric": "pixel_auroc", "where": {"explainer": "native"}, "min": 0.8}]
FAIL = [{"name": "bad", "metric": "pixel_auroc", "where": {"explainer": "native"}, "min": 0.88}]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_exit_0_prints_the_summary_and_writes_nothing(make_run, write_spec, capsys):
    run, spec = make_run(), write_spec(PASS)
    before = files(run.parent)
    assert main(["gate", str(spec), "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## xeval gates: passed")
    assert "| ok | det_a / native / mean | 0.9 | ≥ 0.8 | no CI, n=40 | ✅ |" in out
    assert files(run.parent) == before  # nothing written without --junit / --summary


def test_exit_1_and_both_files(make_run, write_spec, tmp_path, capsys):
    run = make_run()
    junit, summary = tmp_path / "ci" / "gates.xml", tmp_path / "ci" / "gates.md"
    code = main(
        ["gate", str(write_spec(FAIL)), "--run", str(run), "--junit", str(junit),
         "--summary", str(summary)]
    )  # fmt: skip
    assert code == 1
    out = capsys.readouterr().out
    assert summary.read_text(encoding="utf-8") == out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    (failure,) = suite.iter("failure")
    assert failure.get("message") == "pixel_auroc = 0.85 (no CI, n=40): 0.85 < min 0.88"


def test_warn_only_failure_is_exit_0(make_run, write_spec, capsys):
    spec = write_spec([FAIL[0] | {"severity": "warn"}])
    assert main(["gate", str(spec), "--run", str(make_run())]) == 0
    assert "⚠️" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("gates", "extra", "expected"),
    [
        ([{"name": "g", "metric": "pixel_aurocc", "min": 0}], [],
         ["gates[0] ('g').metric", "'pixel_aurocc'", "'pixel_auroc'"]),
        ([{"name": "g", "metric": "pixel_auroc", "where": {"detector": "x"}, "min": 0}], [],
         ["where.detector", "'x'", "['det_a', 'det_b']"]),
        ([{"name": "g", "metric": "pixel_auroc", "category": "bottle", "min": 0}], [],
         ["category", "'bottle'", "['mean', 'all', 'brick', 'tissue']"]),
        ([{"name": "g", "metric": "pixel_auroc", "mni": 0}], [], ["'mni'", "'min'"]),
        ([{"name": "g", "metric": "pixel_auroc", "max_drop": 0.1}], [], ["--baseline is required"]),
        (PASS, ["--baseline", "{tmp}/nope"], ["--baseline", "does not exist"]),
    ],
)  # fmt: skip
def test_exit_2_names_the_problem(make_run, write_spec, tmp_path, capsys, gates, extra, expected):
    run = make_run()
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    junit = tmp_path / "j.xml"
    code = main(["gate", str(write_spec(gates)), "--run", str(run), "--junit", str(junit), *extra])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("xeval: error: ")
    for part in expected:
        assert part in captured.err, (part, captured.err)
    assert not junit.exists()  # an invalid spec writes nothing


def test_exit_2_for_a_malformed_file_and_an_unfinished_run(make_run, write_spec, tmp_path, capsys):
    run = make_run()
    assert main(["gate", str(write_spec("gates: [oops")), "--run", str(run)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    (run / "results.csv").unlink()
    assert main(["gate", str(write_spec(PASS, "ok.yaml")), "--run", str(run)]) == 2
    assert "no results.csv (not a finished run" in capsys.readouterr().err


def test_regression_through_the_cli(make_run, write_spec, tmp_path, capsys):
    run = make_run()
    base = tmp_path / "accepted"
    shutil.copytree(run, base)
    df = pd.read_csv(base / "results.csv")
    m = (df.detector == "det_a") & (df.explainer == "native") & (df.category == "mean")
    df.loc[m & (df.label == "pixel_auroc"), "value"] = 0.95
    df.to_csv(base / "results.csv", index=False)
    gate = {"name": "no regression", "metric": "pixel_auroc",
            "where": {"detector": "det_a", "explainer": "native"}}  # fmt: skip
    spec = write_spec([gate | {"max_drop": 0.01}])
    assert main(["gate", str(spec), "--run", str(run), "--baseline", str(base)]) == 1
    assert "drop 0.05 from baseline 0.95" in capsys.readouterr().out
    spec = write_spec([gate | {"max_drop": 0.05}], "loose.yaml")
    assert main(["gate", str(spec), "--run", str(run), "--baseline", str(base)]) == 0


def test_subprocess_exit_codes(make_run, write_spec, tmp_path):
    """``python -m xeval gate``: a failing spec (1) and an invalid one (2, no traceback)."""
    run = make_run()
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def gate(*args):
        return subprocess.run(
            [sys.executable, "-m", "xeval", "gate", *map(str, args)],
            capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path,
            timeout=120,
        )  # fmt: skip

    bad = gate(write_spec(FAIL, "fail.yaml"), "--run", run, "--junit", "j.xml")
    assert bad.returncode == 1
    assert ET.parse(tmp_path / "j.xml").getroot().find("testsuite").get("failures") == "1"
    invalid = gate(
        write_spec([{"name": "g", "metric": "nope", "min": 0}], "inv.yaml"), "--run", run
    )
    assert invalid.returncode == 2
    assert invalid.stderr.startswith("xeval: error: gates[0] ('g').metric: unknown metric 'nope'")
    assert "Traceback" not in invalid.stderr


# ------------------------------------------------------------------ real demo runs (slow)
@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate-demo") / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_example_spec_passes_on_the_quick_demo(demo_run, tmp_path, capsys):
    junit = tmp_path / "demo.xml"
    code = main(["gate", str(DEMO_SPEC), "--run", str(demo_run), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 4
    # the same run as its own baseline: no drop anywhere, and no comparability note
    spec = tmp_path / "regress.yaml"
    spec.write_text(
        "gates:\n  - {name: no regression, metric: pixel_auroc, category: all, max_drop: 0}\n"
    )
    code = main(["gate", str(spec), "--run", str(demo_run), "--baseline", str(demo_run)])
    out = capsys.readouterr().out
    assert code == 0 and "> ⚠️" not in out


@pytest.mark.slow
def test_video_run(tmp_path_factory, tmp_path, capsys):
    out = tmp_path_factory.mktemp("gate-video") / "run"
    assert main(["demo", "--video", "--quick", "--out", str(out)]) == 0
    spec = tmp_path / "video.yaml"
    spec.write_text(
        "gates:\n"
        "  - {name: localises, metric: pixel_auroc, where: {detector: reasoning,"
        " explainer: native}, min: 0.5}\n"
        "  - {name: verdict, metric: aupro@0.3, where: {detector: reasoning}, verdict: beats}\n"
        "  - {name: frames, metric: frame_auroc, where: {control: false}, min: 0, max: 1}\n"
    )
    junit = tmp_path / "v.xml"
    code = main(["gate", str(spec), "--run", str(out), "--junit", str(junit)])
    text = capsys.readouterr().out
    assert code in (0, 1), text
    cases = ET.parse(junit).getroot().find("testsuite").findall("testcase")
    assert cases[0].get("name") == "localises [reasoning / native / all]"
    assert "closest control" in cases[1].find("system-out").text
    assert len(cases) >= 4


def test_command_module_imports_light():
    """The CLI imports this module to build its parser: no pandas / yaml at import."""
    code = (
        "import sys, xeval.gates, xeval.gates.command; "
        "print(sorted(m for m in ('pandas', 'yaml', 'junit_xml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    import xeval.gates

    assert xeval.gates.evaluate_spec.__module__ == "xeval.gates.evaluate"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        xeval.gates.nope  # noqa: B018
