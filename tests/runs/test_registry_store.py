"""The registry database: location, schema, round trips, ids and references, and the
failure modes (read-only, corrupt, newer schema) of recording and of reading."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xeval.reports.writer import read_results_csv
from xeval.results import RESULT_COLUMNS
from xeval.runs import store
from xeval.runs.lookup import load_run
from xeval.runs.record import (
    RegistryWarning,
    read_run_folder,
    record_run,
    score_manifest,
    score_results_long,
)

from .conftest import synthetic_values, write_run


# ---------------------------------------------------------------------------- location
def test_registry_path_order(tmp_path, monkeypatch):
    monkeypatch.delenv("XEVAL_REGISTRY", raising=False)
    monkeypatch.setenv("XEVAL_CACHE", str(tmp_path / "cache"))
    assert store.registry_path() == tmp_path / "cache" / "runs.sqlite"
    monkeypatch.setenv("XEVAL_REGISTRY", str(tmp_path / "env.sqlite"))
    assert store.registry_path() == tmp_path / "env.sqlite"
    assert store.registry_path(tmp_path / "opt.sqlite") == tmp_path / "opt.sqlite"
    for off in ("none", "OFF", " None "):
        assert store.registry_path(off) is None
        monkeypatch.setenv("XEVAL_REGISTRY", off)
        assert store.registry_path() is None
        assert store.registry_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"


def test_default_path_follows_the_cache_rule_of_the_datasets(tmp_path, monkeypatch):
    from xeval.data.textures import default_cache_dir

    monkeypatch.delenv("XEVAL_REGISTRY", raising=False)
    for value in (None, str(tmp_path / "c")):
        if value is None:
            monkeypatch.delenv("XEVAL_CACHE", raising=False)
        else:
            monkeypatch.setenv("XEVAL_CACHE", value)
        assert store.default_registry_path() == default_cache_dir() / "runs.sqlite"


def test_empty_registry_option_is_an_error():
    with pytest.raises(store.InputError, match="--registry '' is empty"):
        store.registry_path("")


def test_field_lists_match_the_results_table():
    assert list(store.RESULT_FIELDS) == RESULT_COLUMNS


# ---------------------------------------------------------------------------- schema
def test_schema_pragmas_and_version(registry):
    with store.connect(write=True) as (conn, path):
        assert path == registry
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "results", "per_image", "schema_version"} <= tables
        cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        assert cols == list(store.RUN_FIELDS)


def test_foreign_keys_cascade(registry, run_pair):
    rid = record_run(command="run", run_dir=run_pair[0])
    with store.connect(write=True) as (conn, _):
        assert conn.execute("SELECT COUNT(*) FROM results WHERE run_id=?", (rid,)).fetchone()[0]
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO results (run_id) VALUES ('no-such-run')")
        conn.execute("DELETE FROM runs WHERE id=?", (rid,))
        for table in ("results", "per_image"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_newer_schema_is_refused_clearly(registry, run_pair):
    record_run(command="run", run_dir=run_pair[0])
    with sqlite3.connect(registry) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(store.RegistryError, match="schema version 99, written by a newer xeval"):
        with store.connect():
            pass
    with pytest.warns(RegistryWarning, match="schema version 99"):
        assert record_run(command="run", run_dir=run_pair[0]) is None


def test_older_schema_is_migrated_in_order(registry, run_pair, monkeypatch):
    """A registry of version 1 opened by an xeval of version 2 runs MIGRATIONS[1]."""
    record_run(command="run", run_dir=run_pair[0])
    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(store.MIGRATIONS, 1, "ALTER TABLE runs ADD COLUMN tag TEXT")
    with pytest.raises(store.RegistryError, match="older schema version 1"):
        with store.connect():
            pass
    with store.connect(write=True) as (conn, _):
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 2
        assert "tag" in [r[1] for r in conn.execute("PRAGMA table_info(runs)")]


# ---------------------------------------------------------------------------- round trip
def test_folder_round_trip(registry, run_pair):
    folder = run_pair[0]
    rid = record_run(command="run", run_dir=folder, argv=["run", "cfg.yaml"])
    got = load_run(rid)
    expected = read_results_csv(folder / "results.csv")
    pd.testing.assert_frame_equal(got.results, expected[RESULT_COLUMNS])
    wide = pd.read_csv(folder / "per_image.csv", dtype={"id": str})
    for label in ("pointing_game", "entropy_complexity"):
        sel = got.per_image[got.per_image["label"] == label]
        assert sel["id"].tolist() == wide["id"].tolist()
        np.testing.assert_array_equal(sel["value"].to_numpy(), wide[label].to_numpy())
    assert set(got.per_image["label"]) == {"pointing_game", "entropy_complexity"}
    run = got.run
    assert run["command"] == "run" and run["argv"] == ["run", "cfg.yaml"]
    assert run["config_hash"] == "cfg-a" and run["dataset_fingerprint"] == "fp-same"
    assert run["detectors"] == ["det"] and run["explainers"] == ["native", "saliency"]
    assert run["categories"] == ["brick", "tissue"]
    assert run["duration_s"] == 13.0  # total_s + report_s
    assert run["run_dir_resolved"] == str(folder.resolve())
    assert run["manifest"] == json.loads((folder / "manifest.json").read_text())


def test_nan_values_round_trip_as_nan_and_are_not_stored_per_image(registry, tmp_path):
    values = synthetic_values(1)
    values[("brick", "det", "native", "pointing_game")][[0, 3]] = np.nan
    folder = write_run(
        tmp_path / "r", values=values, set_values={("brick", "det", "native", "aupro@0.3"): None}
    )
    got = load_run(record_run(command="run", run_dir=folder))
    sel = got.results[(got.results["label"] == "aupro@0.3") & (got.results["category"] == "brick")]
    assert np.isnan(sel[sel["explainer"] == "native"]["value"].iloc[0])
    pi = got.per_image
    n = pi[(pi["category"] == "brick") & (pi["explainer"] == "native")]
    assert len(n[n["label"] == "pointing_game"]) == 10  # 12 images, 2 NaN not stored


def test_results_given_directly_without_a_folder(registry, run_pair):
    folder = run_pair[0]
    results = read_results_csv(folder / "results.csv")
    manifest = json.loads((folder / "manifest.json").read_text())
    rid = record_run(command="run", run_dir=None, manifest=manifest, results=results)
    got = load_run(rid)
    assert got.run["run_dir"] is None and got.per_image.empty
    assert len(got.results) == len(results)


def test_score_table_is_recorded_as_a_long_table(registry, tmp_path):
    table = pd.DataFrame(
        {
            "category": ["bottle", "mean"],
            "n_images": [10, 10],
            "image_auroc": [0.9, 0.9],
            "image_fpr@95tpr": [0.2, 0.2],
            "pixel_auroc": [0.8, 0.8],
            "aupro@0.3": [0.7, 0.7],
            "error_bound/aupro@0.3": [1e-5, np.nan],
            "note": ["", ""],
        }
    )
    gt = tmp_path / "gt"
    (gt / "bottle" / "test" / "good").mkdir(parents=True)
    (gt / "bottle" / "test" / "good" / "000.png").write_bytes(b"x" * 10)
    man = score_manifest(maps=tmp_path / "maps", gt=gt, table=table, duration_s=2.5)
    rid = record_run(command="score", run_dir=None, results=table, manifest=man)
    got = load_run(rid)
    r = got.results.set_index(["category", "label"])
    assert got.results["higher_is_better"].dtype == bool
    assert not r.loc[("bottle", "image_fpr@95tpr"), "higher_is_better"]
    assert r.loc[("bottle", "aupro@0.3"), "higher_is_better"]
    assert json.loads(r.loc[("bottle", "aupro@0.3"), "params"]) == {"fpr_limit": 0.3}
    assert "error <= 1e-05" in r.loc[("bottle", "aupro@0.3"), "note"]
    assert r.loc[("bottle", "pixel_auroc"), "value"] == 0.8
    assert r.loc[("bottle", "pixel_auroc"), "n"] == 10
    assert set(got.results["detector"]) == {"maps"}
    assert got.run["task"] == "score" and got.run["duration_s"] == 2.5
    assert got.run["config_name"] == "score" and got.run["dataset_name"] == "gt"
    assert re.fullmatch(r"[0-9a-f]{16}", got.run["dataset_fingerprint"])
    # the fingerprint follows the files: one more byte, another fingerprint
    (gt / "bottle" / "test" / "good" / "000.png").write_bytes(b"x" * 11)
    again = score_manifest(maps=tmp_path / "maps", gt=gt, table=table)
    assert again["dataset_fingerprint"] != man["dataset_fingerprint"]
    assert again["config_hash"] == man["config_hash"]


def test_unknown_score_column_is_refused_not_guessed():
    table = pd.DataFrame({"category": ["a"], "mystery": [1.0]})
    with pytest.raises(store.InputError, match=r"unknown metric column\(s\) \['mystery'\]"):
        score_results_long(table)


# ---------------------------------------------------------------------------- ids
def test_run_ids_sort_by_time_and_differ():
    from datetime import datetime, timezone

    t1 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    t2 = datetime(2026, 1, 2, 3, 4, 6, tzinfo=timezone.utc)
    a, b = store.new_run_id(t1), store.new_run_id(t2)
    assert re.fullmatch(r"20260102-030405-[0-9a-f]{6}", a)
    assert a < b
    ids = {store.new_run_id(t1) for _ in range(200)}
    assert len(ids) > 190  # 24 random bits


def test_references_exact_prefix_random_part_ambiguous_unknown(registry, run_pair):
    ids = [record_run(command="run", run_dir=f) for f in run_pair]
    with store.connect() as (conn, _):
        for rid in ids:
            assert store.match_ids(conn, rid) == [rid]
            assert store.match_ids(conn, rid[:-1]) == [rid]
            assert store.match_ids(conn, rid[16:]) == [rid]  # the random part
        assert sorted(store.match_ids(conn, ids[0][:8])) == sorted(ids)  # same day
        assert store.match_ids(conn, "%") == []  # LIKE wildcards are literal
        assert store.match_ids(conn, "_") == []
    assert load_run(ids[1][16:]).id == ids[1]
    with pytest.raises(store.RegistryError, match="is ambiguous.*give more characters"):
        load_run(ids[0][:8])
    typo = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    with pytest.raises(store.RegistryError, match=f"close matches: .*{ids[0]}"):
        load_run(typo)


def test_reference_to_a_folder(registry, run_pair, tmp_path, monkeypatch):
    a, b = run_pair
    first = record_run(command="run", run_dir=a)
    second = record_run(command="run", run_dir=a)  # the same folder run again
    assert load_run(str(a)).id == second != first
    monkeypatch.chdir(a.parent)
    assert load_run("run_a").id == second  # relative, resolved
    direct = load_run(str(b))  # not recorded: read from the folder itself
    assert direct.id is None and direct.run["config_hash"] == "cfg-b"
    (tmp_path / "empty").mkdir()
    with pytest.raises(store.RegistryError, match="not a finished xeval run folder"):
        load_run(str(tmp_path / "empty"))
    with pytest.raises(store.RegistryError, match="no such folder"):
        load_run(str(tmp_path / "gone"))


def test_moved_folder_still_loads_from_the_registry(registry, run_pair, tmp_path):
    import shutil

    a = run_pair[0]
    rid = record_run(command="run", run_dir=a)
    before = load_run(rid)
    shutil.rmtree(a)
    after = load_run(rid)
    pd.testing.assert_frame_equal(before.results, after.results)
    pd.testing.assert_frame_equal(before.per_image, after.per_image)


# ---------------------------------------------------------------------------- failures
def test_disabled_registry_records_nothing(tmp_path, run_pair, monkeypatch):
    monkeypatch.setenv("XEVAL_REGISTRY", "off")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert record_run(command="run", run_dir=run_pair[0]) is None
    target = tmp_path / "explicit.sqlite"
    assert record_run(command="run", run_dir=run_pair[0], registry=target)
    assert record_run(command="run", run_dir=run_pair[0], registry="none") is None
    with pytest.raises(store.RegistryError, match="disabled .*XEVAL_REGISTRY=off"):
        load_run("2026")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_warns_and_does_not_fail(tmp_path, run_pair):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.warns(RegistryWarning, match="not recorded in the run registry") as w:
            assert record_run(command="run", run_dir=run_pair[0], registry=ro / "r.sqlite") is None
        assert len(w) == 1
    finally:
        ro.chmod(0o755)


def test_unwritable_registry_path_warns_once(tmp_path, run_pair):
    """A registry whose folder is a file (cannot be created: works as root too)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(RegistryWarning, match=f"{blocker}") as w:
        assert record_run(command="run", run_dir=run_pair[0], registry=blocker / "r.sqlite") is None
    assert len([x for x in w if issubclass(x.category, RegistryWarning)]) == 1


def test_corrupt_registry_error_for_reading_warning_for_recording(registry, run_pair):
    registry.parent.mkdir(parents=True)
    registry.write_bytes(b"this is not a database " * 100)
    with pytest.raises(store.RegistryError, match="not a readable SQLite database"):
        with store.connect():
            pass
    with pytest.warns(RegistryWarning, match="not a readable SQLite database"):
        assert record_run(command="run", run_dir=run_pair[0]) is None
    assert registry.read_bytes().startswith(b"this is not a database")  # left alone


def test_foreign_sqlite_file_is_not_taken_over(registry, run_pair):
    registry.parent.mkdir(parents=True)
    with sqlite3.connect(registry) as conn:
        conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.warns(RegistryWarning, match="not a run registry"):
        assert record_run(command="run", run_dir=run_pair[0]) is None


def test_missing_registry_is_a_clear_error(registry):
    with pytest.raises(store.RegistryError, match="does not exist.*no run has been recorded"):
        with store.connect():
            pass
    assert not registry.exists()  # reading never creates it


def test_locked_registry_warns_after_the_busy_timeout(registry, run_pair, monkeypatch):
    record_run(command="run", run_dir=run_pair[0])
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(registry, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.warns(RegistryWarning, match="locked"):
            assert record_run(command="run", run_dir=run_pair[0]) is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert record_run(command="run", run_dir=run_pair[0])


def test_unfinished_folder_warns(registry, tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.warns(RegistryWarning, match="manifest.json and results.csv missing"):
        assert record_run(command="run", run_dir=tmp_path / "half") is None


def test_read_run_folder_names_bad_manifest(tmp_path, run_pair):
    (run_pair[0] / "manifest.json").write_text("{not json")
    with pytest.raises(store.InputError, match="manifest.json is not valid JSON"):
        read_run_folder(run_pair[0])


# ---------------------------------------------------------------------------- property
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=8)
_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(_text, _text, _float, _float, st.booleans(), st.integers(0, 10**6)),
        min_size=1,
        max_size=6,
    )
)
def test_any_results_table_round_trips_exactly(tmp_path, rows):
    """Whatever the text (quotes, unicode, 'nan', '') and the floats (NaN, +-inf, -0.0),
    the results read back equal the results recorded, row order kept."""
    from xeval.results import make_row, results_frame
    from xeval.runs.record import build_record, save_record

    df = results_frame(
        [
            make_row(
                detector=d,
                explainer="e",
                dataset="x",
                category=c,
                metric="m",
                label=f"m{k}",
                value=v,
                ci_low=lo,
                higher_is_better=h,
                n=n,
            )  # fmt: skip
            for k, (d, c, v, lo, h, n) in enumerate(rows)
        ]
    )
    reg = tmp_path / f"{uuid.uuid4().hex}.sqlite"
    rid = save_record(
        build_record(command="run", run_dir=None, manifest={}, results=df), registry=reg
    )
    got = load_run(rid, registry=reg).results
    pd.testing.assert_frame_equal(got[RESULT_COLUMNS], df.astype(got.dtypes.to_dict()))
    for col in ("value", "ci_low"):
        x, y = got[col].to_numpy(float), df[col].to_numpy(float)
        ok = ~np.isnan(y)
        np.testing.assert_array_equal(np.signbit(x[ok]), np.signbit(y[ok]))  # -0.0 kept


def test_negative_zero_and_whole_floats_keep_their_type_and_sign(tmp_path):
    """SQLite stores whole-number floats of a REAL column as integers (losing -0.0):
    the value columns have no declared type, so they come back as recorded."""
    from xeval.results import make_row, results_frame
    from xeval.runs.record import build_record, save_record

    vals = [-0.0, 0.0, 2.0, float("inf"), float("-inf")]
    df = results_frame(
        [make_row(detector="d", explainer="e", dataset="x", category="c", metric="m",
                  label=f"m{k}", value=v, ci_low=v, n=1, higher_is_better=True)
         for k, v in enumerate(vals)]
    )  # fmt: skip
    reg = tmp_path / "r.sqlite"
    rid = save_record(
        build_record(command="run", run_dir=None, manifest={}, results=df), registry=reg
    )
    got = load_run(rid, registry=reg).results
    for col in ("value", "ci_low"):
        x = got[col].to_numpy(float)
        assert x.tolist() == vals and np.signbit(x).tolist() == np.signbit(vals).tolist()
