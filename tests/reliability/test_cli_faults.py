"""Reliability of the ``xeval`` command against bad argument values and I/O faults.

Principles (one test function or a small group each, several inputs each):

- P5 argument values: an out-of-range or non-finite value is an argparse error
  (``xeval score: error: argument --fpr-limit: ...``, exit code 2) naming the argument and
  the value, before anything is computed; valid edge values are accepted.
- P6 config argument: a path that does not exist says "file not found: PATH"; a folder or
  an unreadable file is named as such; a bare name that is no protocol lists the known ones.
- P7 I/O faults (output is a file, a folder cannot be created, disk full, unwritable
  ``--json``): ``xeval: error: ...`` naming the path, exit code 2, no traceback; the atomic
  writers raise an ``XevalError`` naming the path and the OS reason and leave no
  temporary file; whatever was written before stays on disk.
- P8 an ``OSError`` escaping from anywhere is ``xeval: error: <path>: <reason>``, exit
  code 2; programming errors (TypeError, KeyError) stay tracebacks.

Disk-full and permission faults are injected by monkeypatching ``os`` functions (tests
may run as root, where file modes do not stop writes).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

import xeval.engine
from xeval import _io
from xeval.cli import main
from xeval.data import load_mvtec, write_tiny_mvtec
from xeval.errors import XevalError

# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def score_tree(tmp_path_factory):
    """A tiny MVTec tree with one category and a map per test image."""
    root = tmp_path_factory.mktemp("score")
    gt = write_tiny_mvtec(root / "gt", categories=("a",), n_train=1, size=(16, 16))
    rng = np.random.default_rng(0)
    for s in load_mvtec(gt, "a", require_train=False).test:
        d = root / "maps" / "a" / "test" / s.defect
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{s.image_path.stem}.npy", rng.random((8, 8)).astype(np.float32))
    return gt, root / "maps"


def _score_args(score_tree, *extra):
    gt, maps = score_tree
    return ["score", "--maps", str(maps), "--gt", str(gt), *map(str, extra)]


TINY_RUN = {
    "name": "tiny-faults",
    "seed": 0,
    "detectors": [
        {
            "recipe": "patch_features",
            "params": {
                "input_size": [16, 16],
                "scales": [1.0],
                "context": None,
                "sigma": 1.0,
                "num_threads": 1,
            },
        }
    ],
    "explainers": ["native"],
    "metrics": ["image_auroc", "pixel_auroc"],
    "evaluation": {"bootstrap": 10, "validation_fraction": 0.25},
    "report": {"figures": False, "gallery": False},
    "cache": False,
}


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    """A run configuration that finishes in well under a second."""
    root = tmp_path_factory.mktemp("run")
    gt = write_tiny_mvtec(root / "gt", categories=("a",), n_train=4, size=(16, 16))
    cfg = dict(TINY_RUN, dataset={"format": "mvtec", "path": str(gt)})
    p = root / "tiny.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _clean_failure(capsys, argv) -> str:
    """``main(argv)`` returns 2, its last line on stderr is one ``xeval: error:`` message
    and there is no traceback; returns that line."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert "Traceback" not in err, err
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith("xeval: error: "), err
    return last


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")] if folder.exists() else []


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # pragma: no cover - not Linux
        return ""


def _fail_fsync_of(monkeypatch, fragment: str, code: int = errno.ENOSPC):
    """Make ``os.fsync`` of files whose path contains ``fragment`` fail with ``code``."""
    real = os.fsync

    def fsync(fd):
        if fragment in _fd_path(fd):
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _deny_mkdir_under(monkeypatch, locked: Path):
    """``os.mkdir`` of anything under ``locked`` fails with EACCES."""
    real = os.mkdir

    def mkdir(path, *a, **k):
        if Path(path) == locked or locked in Path(path).parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)


# -- P5: argument values ---------------------------------------------------------------

BAD_SCORE_ARGS = [
    (["--fpr-limit", "2"], "--fpr-limit", "2"),
    (["--fpr-limit", "0"], "--fpr-limit", "0"),
    (["--fpr-limit", "-0.3"], "--fpr-limit", "-0.3"),
    (["--fpr-limit", "1.0001"], "--fpr-limit", "1.0001"),
    (["--fpr-limit", "nan"], "--fpr-limit", "nan"),
    (["--fpr-limit", "inf"], "--fpr-limit", "inf"),
    (["--fpr-limit", "0.3", "1.5"], "--fpr-limit", "1.5"),
    (["--fpr-limit", "0.3", "0.3"], "--fpr-limit", "0.3"),  # the same column twice
    (["--fpr-limit", "abc"], "--fpr-limit", "abc"),
    (["--threshold", "nan"], "--threshold", "nan"),
    (["--threshold", "inf"], "--threshold", "inf"),
    (["--threshold=-inf"], "--threshold", "-inf"),
    (["--threshold=-nan"], "--threshold", "-nan"),
    (["--threshold", "1e999"], "--threshold", "1e999"),
    (["--threshold", "x"], "--threshold", "x"),
    (["--mode", "fast"], "--mode", "fast"),
    (["--categories"], "--categories", ""),
    (["--categories", "a", "a"], "--categories", "a"),
]


@pytest.mark.parametrize("extra, name, value", BAD_SCORE_ARGS)
def test_p5_bad_score_values_are_argparse_errors(capsys, score_tree, extra, name, value):
    with pytest.raises(SystemExit) as info:
        main(_score_args(score_tree, *extra))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"xeval score: error: argument {name}" in err, err
    assert value in err.split(f"argument {name}", 1)[1], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "extra, column",
    [
        (["--fpr-limit", "1"], "aupro@1"),
        (["--fpr-limit", "0.05", "0.3"], "aupro@0.05"),
        (["--fpr-limit", "1e-3"], "aupro@0.001"),
        (["--threshold", "-2.5"], "iou@t"),
        (["--threshold", "0"], "iou@t"),
        (["--threshold", "1e6"], "iou@t"),
    ],
)
def test_p5_valid_edge_values_are_accepted(capsys, score_tree, tmp_path, extra, column):
    out = tmp_path / "s.json"
    assert main(_score_args(score_tree, *extra, "--json", out)) == 0, capsys.readouterr().err
    assert column in json.loads(out.read_text())["a"]


# -- P6: the config argument -----------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    ["nope.yaml", "sub/nope.yml", "{tmp}/nope.yaml", "./nope", "nope.YAML", "nope.Yml", "../x"],
)
def test_p6_missing_config_file_says_file_not_found(capsys, tmp_path, config):
    config = config.format(tmp=tmp_path)
    err = _clean_failure(capsys, ["run", config, "--check"])
    assert "file not found" in err and config.rstrip("/") in err, err
    assert "unknown protocol" not in err


@pytest.mark.parametrize("name", ["nope", "full-audit", "Demo", ""])
def test_p6_unknown_protocol_lists_the_known_ones(capsys, name):
    err = _clean_failure(capsys, ["run", name, "--check"])
    for known in ("demo", "full_audit", "localisation"):
        assert known in err, err


@pytest.mark.parametrize("which", ["dir", "dir/", "dot"])
def test_p6_folder_as_config_is_named(capsys, tmp_path, monkeypatch, which):
    (tmp_path / "cfgdir").mkdir()
    monkeypatch.chdir(tmp_path)
    config = {"dir": "cfgdir", "dir/": "cfgdir/", "dot": "."}[which]
    err = _clean_failure(capsys, ["run", config, "--check"])
    assert "folder" in err and "unknown protocol" not in err, err


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\x00\x01binary", b"name: x\n\x80\x81\n", bytes(range(256))]
)
def test_p6_config_that_is_not_text_is_named(capsys, tmp_path, content):
    p = tmp_path / "bad.yaml"
    p.write_bytes(content)
    err = _clean_failure(capsys, ["run", p, "--check"])
    assert str(p) in err, err


def test_p6_unreadable_config_is_named(capsys, tmp_path, monkeypatch):
    p = tmp_path / "locked.yaml"
    p.write_text("name: x\n")
    real_open = open

    def fake_open(file, *a, **k):
        if Path(file) == p:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr("io.open", fake_open)
    err = _clean_failure(capsys, ["run", p, "--check"])
    assert str(p) in err and "Permission denied" in err, err


# -- P7: I/O faults: the atomic writers ------------------------------------------------


def _fault_fsync(monkeypatch, target):
    monkeypatch.setattr(os, "fsync", _raiser(errno.ENOSPC))


def _fault_write(monkeypatch, target):
    monkeypatch.setattr(os, "write", _raiser(errno.ENOSPC))


def _fault_replace(monkeypatch, target):
    monkeypatch.setattr(os, "replace", _raiser(errno.EXDEV))


def _fault_mkstemp(monkeypatch, target):
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp", _raiser(errno.EACCES, str(target.parent)))


def _fault_fchmod(monkeypatch, target):
    monkeypatch.setattr(os, "fchmod", _raiser(errno.EPERM))


def _fault_mkdir(monkeypatch, target):
    _deny_mkdir_under(monkeypatch, target.parent)


def _raiser(code, filename=None):
    def f(*a, **k):
        if filename is None:
            raise OSError(code, os.strerror(code))
        raise OSError(code, os.strerror(code), filename)

    return f


WRITER_FAULTS = {
    "disk_full_at_fsync": (_fault_fsync, "No space left on device"),
    "disk_full_at_write": (_fault_write, "No space left on device"),
    "rename_fails": (_fault_replace, "cross-device"),
    "temp_file_denied": (_fault_mkstemp, "Permission denied"),
    "chmod_denied": (_fault_fchmod, "not permitted"),
    "folder_denied": (_fault_mkdir, "Permission denied"),
}


@pytest.mark.parametrize("fault", list(WRITER_FAULTS))
@pytest.mark.parametrize("writer", ["bytes", "text", "json"])
def test_p7_atomic_writer_faults_are_xeval_errors(tmp_path, monkeypatch, fault, writer):
    target = tmp_path / "sub" / "out.json"
    if fault != "folder_denied":
        target.parent.mkdir()
        target.write_text("old")
    n_fds = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None
    inject, reason = WRITER_FAULTS[fault]
    inject(monkeypatch, target)
    write = {
        "bytes": lambda: _io.atomic_write_bytes(target, b"{}"),
        "text": lambda: _io.atomic_write_text(target, "{}"),
        "json": lambda: _io.atomic_write_json(target, {}),
    }[writer]
    with pytest.raises(XevalError) as info:
        write()
    monkeypatch.undo()
    msg = str(info.value)
    assert str(target) in msg and reason.lower() in msg.lower(), msg
    assert isinstance(info.value, OSError)  # callers that catch OSError still do
    assert _temporaries(tmp_path) == []
    if fault != "folder_denied":
        assert target.read_text() == "old"  # what was there stays
    if n_fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= n_fds  # no descriptor leaked


@pytest.mark.parametrize("kind", ["directory", "parent_is_file"])
def test_p7_atomic_writer_refuses_impossible_targets(tmp_path, kind):
    if kind == "directory":
        target = tmp_path / "out.json"
        target.mkdir()
    else:
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out.json"
    with pytest.raises(XevalError) as info:
        _io.atomic_write_text(target, "{}")
    assert str(target) in str(info.value)
    assert _temporaries(tmp_path) == []


# -- P7: I/O faults through the command ------------------------------------------------


def _json_target(tmp_path, kind, monkeypatch):
    if kind == "is_a_directory":
        (tmp_path / "out.json").mkdir()
        return tmp_path / "out.json"
    if kind == "parent_is_a_file":
        (tmp_path / "file").write_text("keep me")
        return tmp_path / "file" / "out.json"
    if kind == "folder_denied":
        _deny_mkdir_under(monkeypatch, tmp_path / "locked")
        return tmp_path / "locked" / "sub" / "out.json"
    if kind == "disk_full":
        _fail_fsync_of(monkeypatch, "out.json")
        return tmp_path / "out.json"
    if kind == "disk_full_over_old_file":
        (tmp_path / "out.json").write_text("old")
        _fail_fsync_of(monkeypatch, "out.json")
        return tmp_path / "out.json"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["is_a_directory", "parent_is_a_file", "folder_denied", "disk_full", "disk_full_over_old_file"],
)
def test_p7_unwritable_json_is_a_clean_error(capsys, score_tree, tmp_path, monkeypatch, kind):
    target = _json_target(tmp_path, kind, monkeypatch)
    err = _clean_failure(capsys, _score_args(score_tree, "--json", target))
    assert str(target) in err, err
    assert _temporaries(tmp_path) == []
    if kind == "disk_full_over_old_file":
        assert target.read_text() == "old"
    if kind == "parent_is_a_file":
        assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.parametrize("kind", ["is_a_file", "below_a_file", "folder_denied"])
@pytest.mark.parametrize("cmd", ["run", "demo"])
def test_p7_unusable_output_folder_is_a_clean_error(
    capsys, run_config, tmp_path, monkeypatch, kind, cmd
):
    if kind == "is_a_file":
        out = tmp_path / "out"
        out.write_text("precious")
    elif kind == "below_a_file":
        (tmp_path / "file").write_text("precious")
        out = tmp_path / "file" / "out"
    else:
        _deny_mkdir_under(monkeypatch, tmp_path / "locked")
        out = tmp_path / "locked" / "out"
    argv = ["run", run_config] if cmd == "run" else ["demo", "--quick"]
    err = _clean_failure(capsys, [*argv, "--out", out])
    assert str(out) in err or str(out.parent) in err, err
    for f in tmp_path.iterdir():
        if f.is_file():
            assert f.read_text() == "precious"


@pytest.mark.parametrize("victim", ["index.html", "results.csv", ".partial"])
def test_p7_disk_full_during_a_run_keeps_what_was_written(
    capsys, run_config, tmp_path, monkeypatch, victim
):
    out = tmp_path / "out"
    _fail_fsync_of(monkeypatch, f"{out}/{victim}" if victim == ".partial" else victim)
    err = _clean_failure(capsys, ["run", run_config, "--out", out])
    assert str(out) in err and "No space left on device" in err, err
    assert _temporaries(out) == []
    units = list((out / ".partial").rglob("*.npz"))
    if victim != ".partial":
        assert units, "finished units must stay on disk"
    if victim == "index.html":
        assert (out / "results.csv").is_file()
    monkeypatch.undo()
    assert main(["run", str(run_config), "--out", str(out)]) == 0  # resumes
    assert (out / "index.html").is_file()


# -- P8: any OSError is a clean message; programming errors are not swallowed ----------

OS_ERRORS = [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.png"), "/data/x.png"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone"), "/gone"),
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a/b", None, "/c/d"), "/c/d"),
    (OSError("something odd happened"), "something odd happened"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/x/out.json"), "/x/out.json"),
]


@pytest.mark.parametrize("exc, shown", OS_ERRORS, ids=lambda x: type(x).__name__)
def test_p8_oserror_from_anywhere_is_a_clean_message(
    capsys, run_config, monkeypatch, tmp_path, exc, shown
):
    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(xeval.engine, "run", boom)
    err = _clean_failure(capsys, ["run", run_config, "--out", tmp_path / "o"])
    assert shown in err, err
    if exc.filename and exc.filename2:
        assert exc.filename in err and exc.filename2 in err and exc.strerror in err, err
    elif exc.filename:
        assert f"{exc.filename}: {exc.strerror}" in err, err


@pytest.mark.parametrize("exc", [TypeError("bug"), KeyError("bug"), AttributeError("bug")])
def test_p8_programming_errors_stay_tracebacks(run_config, monkeypatch, tmp_path, exc):
    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(xeval.engine, "run", boom)
    with pytest.raises(type(exc)):
        main(["run", str(run_config), "--out", str(tmp_path / "o")])
