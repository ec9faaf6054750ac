"""``xeval report RUN_DIR``: the report of a finished run rebuilt from its files, without
recomputing (xeval.reports.rebuild).

Fast tests use a synthetic run folder (the report fixtures of this folder's conftest,
hostile names included); the slow ones a real ``xeval demo --quick`` (image and video)
whose report is deleted and rebuilt while every computing step is made to fail."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _demo_runs import copy_run, demo_run
from hypothesis import given, settings
from hypothesis import strategies as st

from xeval.cli import main
from xeval.errors import InputError, MissingDataWarning
from xeval.reports import rebuild as rb
from xeval.reports import write_report
from xeval.reports.writer import results_csv

CONFIG = {"name": "synthetic", "report": {"figures": False, "gallery": True}}


def _digest(folder: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def synthetic_template(full_report_data, tmp_path_factory) -> Path:
    """A finished image run folder as the engine writes it: the report, per_image.csv
    and the rebuild inputs (curves.csv, gallery.npz)."""
    report = dataclasses.replace(full_report_data, manifest={"config": CONFIG, "seed": 0})
    run = tmp_path_factory.mktemp("synthetic") / "run"
    rb.save_report_inputs(report, run)
    write_report(report, run, figures=False)
    per_image = pd.DataFrame(
        {
            "category": ["bottle", "../x"],
            "detector": ["padim", "<b>"],
            "explainer": ["native", "random"],
            "id": ["007", "nan"],
            "label": [1, 0],
            "defect": ["crack", ""],
            "image_score": [0.1, np.nan],
            "control": [False, True],
            "subsets": ["", "faithfulness"],
            "iou_per_image@t": [0.1 + 0.2, np.nan],
        }
    )
    (run / "per_image.csv").write_text(per_image.to_csv(index=False))
    return run


@pytest.fixture
def synthetic_run(synthetic_template, tmp_path) -> Path:
    """A private copy of :func:`synthetic_template`."""
    return copy_run(synthetic_template, tmp_path / "run")


# ----------------------------------------------------------- persisted inputs, exact
def test_saved_inputs_read_back_exactly(full_report_data, synthetic_run):
    got = rb.load_run(synthetic_run)
    want = full_report_data
    assert results_csv(got.results) == (synthetic_run / "results.csv").read_text()
    cols = list(want.curves.columns)
    pd.testing.assert_frame_equal(
        got.curves[cols].reset_index(drop=True),
        want.curves[cols].reset_index(drop=True),
        check_exact=True,
        check_dtype=False,
    )
    assert len(got.gallery) == len(want.gallery) > 0
    for g, w in zip(got.gallery, want.gallery, strict=True):
        for f in ("detector", "explainer", "category", "sample_id", "rank", "metric"):
            assert getattr(g, f) == getattr(w, f)
        assert g.value == w.value or (np.isnan(g.value) and np.isnan(w.value))
        for f in ("image", "mask", "amap"):
            np.testing.assert_array_equal(getattr(g, f), getattr(w, f))
    # per-image ids stay text ("007", "nan"), empty strings stay empty strings
    assert got.per_image["id"].tolist() == ["007", "nan"]
    assert got.per_image["subsets"].tolist() == ["", "faithfulness"]
    assert got.per_image["control"].dtype == bool
    assert got.per_image["iou_per_image@t"].iloc[0] == 0.1 + 0.2  # not rounded


def test_read_table_is_exact_on_random_floats(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.random(500) * 10.0 ** rng.integers(-300, 300, 500), [np.nan, -0.0]])
    df = pd.DataFrame({"name": ["1", "x"] * 251, "x": x})
    df.to_csv(tmp_path / "t.csv", index=False)
    got = rb.read_table(tmp_path / "t.csv", strings=("name",))
    np.testing.assert_array_equal(got["x"].to_numpy(), x)  # bit for bit (NaN == NaN)
    assert got["name"].tolist() == df["name"].tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30),
    # (pandas' CSV writer leaves a field with a bare carriage return unquoted, so such a
    # name cannot be read back by any CSV reader; xeval's names never hold one)
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=8),
        min_size=1,
        max_size=30,
    ),
)
def test_read_table_round_trips_any_floats_and_strings(tmp_path_factory, xs, names):
    n = min(len(xs), len(names))
    df = pd.DataFrame({"name": names[:n], "x": np.array(xs[:n], dtype=np.float64)})
    path = tmp_path_factory.mktemp("table") / "t.csv"
    path.write_text(df.to_csv(index=False), encoding="utf-8")
    got = rb.read_table(path, strings=("name",))
    np.testing.assert_array_equal(got["x"].to_numpy(np.float64), df["x"].to_numpy())
    assert got["name"].tolist() == [str(v) for v in df["name"]]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([np.uint8, np.uint16]),
    st.integers(1, 6),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
)
def test_images_from_integer_files_stored_as_integers_exactly(dtype, h, w, seed):
    top = np.iinfo(dtype).max
    ints = np.random.default_rng(seed).integers(0, top + 1, (h, w, 3)).astype(dtype)
    image = (ints.astype(np.float32) / np.float32(top)).astype(np.float64)  # as read_image
    stored, code = rb._encode_image(image)
    assert stored.dtype == dtype and code
    np.testing.assert_array_equal(rb._decode_pixels(stored, code).astype(np.float64), image)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_other_images_stored_as_floats_exactly(xs):
    image = np.array(xs, dtype=np.float64).reshape(1, -1)
    stored, code = rb._encode_image(image)
    back = rb._decode_pixels(stored, code).astype(np.float64) if code else stored
    np.testing.assert_array_equal(back.astype(np.float64), image)


def test_gallery_stored_as_float32_only_when_lossless():
    exact = np.linspace(0, 1, 7, dtype=np.float32).astype(np.float64)
    assert rb._compact(exact).dtype == np.float32
    inexact = np.array([0.1, 0.2])
    assert rb._compact(inexact).dtype == np.float64


# ------------------------------------------------------------------ rebuilding
def test_rebuild_md_in_place_is_byte_identical(synthetic_run):
    before = _digest(synthetic_run, ["results.csv", "manifest.json", "per_image.csv"])
    md = (synthetic_run / "results.md").read_bytes()
    (synthetic_run / "results.md").unlink()
    (synthetic_run / ".xeval-rebuild-killed" / "figures").mkdir(parents=True)  # left behind
    written = rb.rebuild_report(synthetic_run, formats=("md",))
    assert list(written) == ["results.md"]
    assert (synthetic_run / "results.md").read_bytes() == md
    assert _digest(synthetic_run, before) == before
    assert not [p for p in synthetic_run.iterdir() if p.name.startswith(".xeval-rebuild")]


def test_rebuild_html_into_other_folder_copies_the_tables(synthetic_run, tmp_path):
    out = tmp_path / "rebuilt"
    written = rb.rebuild_report(synthetic_run, out_dir=out)
    assert "index.html" in written and (out / "index.html").is_file()
    for name in ("results.csv", "manifest.json", "per_image.csv", "curves.csv", "gallery.npz"):
        assert (out / name).read_bytes() == (synthetic_run / name).read_bytes()
    assert (out / "results.md").read_bytes() == (synthetic_run / "results.md").read_bytes()


def test_latex_format_writes_the_latex_tables(synthetic_run, tmp_path):
    latex = pytest.importorskip("xeval.reports.latex", reason="LaTeX writer not in this tree")
    written = rb.rebuild_report(synthetic_run, formats="latex", out_dir=tmp_path / "tex")
    assert list(written) == ["tables.tex"]
    want = latex.latex_tables(rb.load_run(synthetic_run))
    assert (tmp_path / "tex" / "tables.tex").read_text() == want


def test_old_run_without_inputs_rebuilds_with_warnings(synthetic_run):
    (synthetic_run / "curves.csv").unlink()
    (synthetic_run / "gallery.npz").unlink()
    with pytest.warns(MissingDataWarning) as rec:
        report = rb.load_run(synthetic_run)
    text = " ".join(str(w.message) for w in rec)
    assert "curves.csv" in text and "gallery.npz" in text
    assert report.curves.empty and report.gallery == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)
        assert "index.html" in rb.rebuild_report(synthetic_run)


# ------------------------------------------------------------------ bad folders
def _cli_error(capsys, *argv) -> str:
    assert main(["report", *map(str, argv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xeval: error: ")
    return err


def test_bad_folders_exit_2_naming_the_problem(capsys, tmp_path, synthetic_run):
    assert "does not exist" in _cli_error(capsys, tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in _cli_error(capsys, tmp_path / "file")
    unfinished = tmp_path / "unfinished"
    (unfinished / ".partial").mkdir(parents=True)
    err = _cli_error(capsys, unfinished)
    assert "not a finished xeval run" in err and "unfinished run" in err
    (synthetic_run / "manifest.json").write_text("[1, 2")
    assert "manifest.json: not valid JSON" in _cli_error(capsys, synthetic_run)
    (synthetic_run / "manifest.json").write_text("[1, 2]")
    assert "'config' object" in _cli_error(capsys, synthetic_run)


def test_other_kinds_of_run_are_refused(capsys, synthetic_run):
    manifest = json.loads((synthetic_run / "manifest.json").read_text())
    (synthetic_run / "manifest.json").write_text(json.dumps({**manifest, "task": "influence"}))
    err = _cli_error(capsys, synthetic_run)
    assert "task 'influence'" in err and "['image', 'video']" in err
    with pytest.raises(InputError, match="not an image run"):
        rb.load_run(synthetic_run)


def test_malformed_tables_are_refused(capsys, synthetic_run):
    (synthetic_run / "results.csv").write_text("detector,value\na,1\n")
    err = _cli_error(capsys, synthetic_run)
    assert "results.csv" in err and "lacks columns" in err


def test_curves_without_columns_are_refused(synthetic_run):
    (synthetic_run / "curves.csv").write_text("detector,x\na,1\n")
    with pytest.raises(InputError, match=r"curves\.csv: lacks columns"):
        rb.load_run(synthetic_run)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not a zip", "not a numpy .npz archive"),
        (_npz(x=np.zeros(2)), "expected .npy members including 'meta'"),
        (_npz(meta=np.array([{"a": 1}], dtype=object)), "cannot be read"),  # pickle refused
        (_npz(meta=np.array("{")), "not JSON"),
        (_npz(meta=np.array('{"format": "other", "version": 1}')), "expected an xeval"),
        (_npz(meta=np.array('{"format": "gallery", "version": 1, "items": [{}]}'),
              value=np.zeros(1)), "gallery item 0: 'detector' missing"),
        (_npz(meta=np.array('{"format": "gallery", "version": 1, "items": []}'),
              value=np.zeros(3)), "3 values for 0 gallery items"),
    ],
)  # fmt: skip
def test_malformed_gallery_is_refused(synthetic_run, payload, message):
    (synthetic_run / "gallery.npz").write_bytes(payload)
    with pytest.raises(InputError, match="gallery.npz") as exc:
        rb.load_run(synthetic_run)
    assert message in str(exc.value)


def test_gallery_with_wrong_shapes_is_refused(synthetic_run):
    with np.load(synthetic_run / "gallery.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["mask_0"] = np.zeros((3, 3), dtype=bool)
    (synthetic_run / "gallery.npz").write_bytes(_npz(**arrays))
    with pytest.raises(InputError, match=r"gallery\.npz: gallery item 0: .*mask"):
        rb.load_run(synthetic_run)


def test_oversized_files_are_not_read(synthetic_run, monkeypatch):
    monkeypatch.setitem(rb.MAX_BYTES, ".csv", 100)
    with pytest.raises(InputError, match=r"results\.csv: \d+ bytes, larger than"):
        rb.load_run(synthetic_run)
    monkeypatch.setitem(rb.MAX_BYTES, ".csv", 1 << 30)
    monkeypatch.setattr(rb, "MAX_NPZ_UNCOMPRESSED", 10)
    with pytest.raises(InputError, match=r"gallery\.npz: .* once decompressed"):
        rb.load_run(synthetic_run)


def test_symbolic_links_are_not_followed(synthetic_run, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text((synthetic_run / "per_image.csv").read_text())
    (synthetic_run / "per_image.csv").unlink()
    (synthetic_run / "per_image.csv").symlink_to(secret)
    with pytest.raises(InputError, match=r"per_image\.csv: a symbolic link"):
        rb.rebuild_report(synthetic_run, out_dir=tmp_path / "out")


def test_out_folder_not_written_by_xeval_is_refused(capsys, synthetic_run, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert "not empty and was not written by xeval" in _cli_error(
        capsys, synthetic_run, "--out", foreign
    )
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_unknown_format_and_video_latex(synthetic_run):
    with pytest.raises(InputError, match=r"formats: .*'pdf'.*expected some of"):
        rb.rebuild_report(synthetic_run, formats=("pdf",))


def test_a_run_in_progress_is_refused(synthetic_run):
    from xeval.engine.output import OutputLock

    with OutputLock(synthetic_run), pytest.raises(InputError, match="in use by another"):
        rb.rebuild_report(synthetic_run, formats="md")


# ================================================================ real demo runs
def _forbid_computing(monkeypatch) -> None:
    """Every step that fits, explains, scores or reads the dataset raises."""

    def boom(*a, **k):
        raise AssertionError("the rebuild recomputed something")

    for module, name in [
        ("xeval.engine.run", "evaluate_unit"),
        ("xeval.engine.run", "compute_unit"),
        ("xeval.engine.run", "run"),
        ("xeval.engine.fit", "fit_detector"),
        ("xeval.engine.gallery", "gallery_items"),
        ("xeval.engine.verdicts", "verdicts"),
        ("xeval.engine.video", "run_video"),
        ("xeval.engine.video", "load_video_dataset"),
        ("xeval.engine.video", "_explain"),
        ("xeval.reports.video", "video_verdicts"),  # the run's verdicts.csv is used
    ]:
        # (xeval.engine exports a function named run: import the module by name)
        monkeypatch.setattr(importlib.import_module(module), name, boom)


TABLES = {
    "image": ["results.csv", "per_image.csv", "verdicts.csv", "ranks.csv", "manifest.json",
              "curves.csv", "gallery.npz"],
    "video": ["results.csv", "per_frame.csv", "verdicts.csv", "manifest.json", "curves.csv",
              "video_report.npz"],
}  # fmt: skip


DERIVED = ["tables.tex", "comparisons.csv", "rankings.csv"]
"""Report files made from the tables by the report writer (where the run has them)."""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "video"])
def test_demo_report_rebuilt_without_recomputing(kind, tmp_path_factory, monkeypatch, capsys):
    src = demo_run(tmp_path_factory, video=kind == "video")
    run = copy_run(src, tmp_path_factory.mktemp("rebuild") / "run")
    tables = _digest(run, TABLES[kind])
    derived = _digest(run, [n for n in DERIVED if (run / n).is_file()])
    for name in derived:
        (run / name).unlink()
    md = (run / "results.md").read_bytes()
    figures = sorted(p.name for p in (run / "figures").iterdir())
    for p in (run / "figures").iterdir():
        p.unlink()
    (run / "figures").rmdir()
    (run / "index.html").unlink()
    (run / "results.md").unlink()
    _forbid_computing(monkeypatch)
    t, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingDataWarning)  # nothing may be missing
        assert main(["report", str(run)]) == 0
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert "report: " in capsys.readouterr().out
    with capsys.disabled():
        print(f"\n{kind} demo: xeval report took {took:.1f} s ({cpu:.1f} s CPU)")
    assert (run / "index.html").is_file()
    assert (run / "results.md").read_bytes() == md
    assert sorted(p.name for p in (run / "figures").iterdir()) == figures
    assert _digest(run, tables) == tables
    assert _digest(run, derived) == derived  # made again, byte for byte
    assert cpu < 30, f"rebuilding the report took {cpu:.0f} s of CPU"  # the run: minutes


@pytest.mark.slow
def test_demo_rebuilt_into_other_folder(tmp_path_factory, tmp_path):
    src = demo_run(tmp_path_factory)
    before = _digest(src, TABLES["image"])
    out = tmp_path / "copy"
    assert main(["report", str(src), "--out", str(out)]) == 0
    assert _digest(out, TABLES["image"]) == before  # copied byte for byte
    assert _digest(src, TABLES["image"]) == before  # the run is untouched
    assert (out / "results.md").read_bytes() == (src / "results.md").read_bytes()
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        p.name for p in (src / "figures").iterdir()
    )
    assert main(["report", str(src), "--format", "md", "--out", str(tmp_path / "md")]) == 0
    assert [p.name for p in (tmp_path / "md").iterdir() if not p.name.startswith(".")] == [
        "results.md"
    ]
    assert (tmp_path / "md" / "results.md").read_bytes() == (src / "results.md").read_bytes()


@pytest.mark.slow
def test_demo_loaded_report_equals_the_runs_tables(tmp_path_factory):
    src = demo_run(tmp_path_factory)
    report = rb.load_run(src)
    assert results_csv(report.results) == (src / "results.csv").read_text()
    assert report.verdicts.to_csv(index=False) == (src / "verdicts.csv").read_text()
    assert report.ranks.to_csv(index=False) == (src / "ranks.csv").read_text()
    assert report.per_image.to_csv(index=False) == (src / "per_image.csv").read_text()
    assert report.gallery and set(report.curves["curve"]) >= {"roc", "pro", "image_roc"}
    with zipfile.ZipFile(src / "gallery.npz") as z:
        assert "meta.npy" in z.namelist()
    meta = json.loads(str(np.load(src / "gallery.npz", allow_pickle=False)["meta"][()]))
    assert len(meta["items"]) == len(report.gallery)


@pytest.mark.slow
def test_video_demo_without_stored_inputs_still_rebuilds(tmp_path_factory):
    src = demo_run(tmp_path_factory, video=True)
    run = copy_run(src, tmp_path_factory.mktemp("old-video") / "run")
    (run / "curves.csv").unlink()
    (run / "video_report.npz").unlink()
    with pytest.warns(MissingDataWarning) as rec:
        written = rb.rebuild_report(run)
    text = " ".join(str(w.message) for w in rec)
    assert "video_report.npz" in text and "curves.csv" in text
    assert "index.html" in written
    figs = {p.name for p in (run / "figures").iterdir()}
    assert any(f.startswith("frame_roc_") for f in figs)
    with pytest.raises(InputError, match="video run"):
        rb.rebuild_report(run, formats="latex")


@pytest.mark.slow
def test_video_demo_with_damaged_files_is_refused(tmp_path_factory, capsys):
    src = demo_run(tmp_path_factory, video=True)
    run = copy_run(src, tmp_path_factory.mktemp("bad-video") / "run")
    with np.load(run / "video_report.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rep_0"] = arrays["rep_0"].astype(str)
    (run / "video_report.npz").write_bytes(_npz(**arrays))
    err = _cli_error(capsys, run)
    assert "video_report.npz: entry 'rep_0' has dtype" in err
    del arrays["rep_0"]
    (run / "video_report.npz").write_bytes(_npz(**arrays))
    assert "video_report.npz: entry 'rep_0' is missing" in _cli_error(capsys, run)
    (run / "video_report.npz").write_bytes((src / "video_report.npz").read_bytes())
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["conventions"]["metrics"] = {"frame_auroc": "x"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert "conventions.metrics must map" in _cli_error(capsys, run)
