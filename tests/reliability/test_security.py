"""Security: a run configuration, a recipe, a checkpoint are untrusted input.

Principles (several inputs each, including ones the issue did not list):

- S1 every boolean option accepts only real booleans (a string ``"false"`` is truthy in
  Python and would switch ``trust_checkpoint`` on);
- S2 a configuration cannot make xeval import or call code: import paths outside the
  built-in class allow-list and the modules the user allows are refused when the
  configuration is checked, before anything is imported; YAML tags never run;
- S3 a configuration cannot write outside the current folder (``output``, ``cache``);
  the caller's ``--out`` is used as given; existing non-xeval folders are never written;
- S4 a corrupt checkpoint is called corrupt (no advice to trust it); a pickled object is
  refused without ``trust_checkpoint: true`` and never executed;
- S5 one run at a time per output folder (an OS file lock, released when a process dies).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reliability import _toy
from xeval.adapters.imports import check_import_path, import_allowed, safe_imports
from xeval.adapters.wrap import build_from_recipe, load_checkpoint
from xeval.cli import main
from xeval.data import write_tiny_mvtec
from xeval.engine import run
from xeval.engine.output import MARKER, OutputLock
from xeval.errors import ConfigError, InputError, XevalError
from xeval.protocols.config import load_config, parse_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_mvtec(tmp_path_factory.mktemp("data") / "mvtec", n_train=4, n_good=2)


@pytest.fixture()
def evil(tmp_path, monkeypatch) -> Path:
    """A module whose import writes a marker file: importing it is running code."""
    marker = tmp_path / "IMPORTED"
    pkg = tmp_path / "evilpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "def run(images):\n    return images.mean(axis=(1, 2, 3))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("evilpkg", None)
    yield marker
    sys.modules.pop("evilpkg", None)


class Boom:
    """Unpickling this object would create ``path`` (it must never happen)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _recipe(kind: str, **params) -> dict:
    return {"kind": kind, "name": "d", "params": params}


def _config(data: Path, detector: dict, **top) -> dict:
    cfg = _toy.toy_config(data, **top)
    cfg["detectors"] = [detector]
    return cfg


def _toy_run_config(data: Path, **top):
    """The toy configuration, checked with the toy module allowed (as --allow-import)."""
    with safe_imports(_toy.MODULE):
        return parse_config(_toy.toy_config(data, **top))


# -- S1 booleans ------------------------------------------------------------------------
BAD_BOOLS = ["false", "False", "no", "0", "", 0, 1, None, [False], 0.0]


@pytest.mark.parametrize("value", BAD_BOOLS)
def test_trust_checkpoint_must_be_a_real_boolean(value, data, tmp_path):
    ckpt = tmp_path / "boom.pt"
    torch.save({"x": Boom(str(tmp_path / "PWNED"))}, ckpt)
    det = _recipe(
        "torch_module", model="torch.nn:Identity", checkpoint=str(ckpt), trust_checkpoint=value
    )
    with safe_imports("torch.nn"):
        with pytest.raises(ConfigError, match="trust_checkpoint"):
            parse_config(_config(data, det))
        with pytest.raises(XevalError, match="trust_checkpoint"):
            build_from_recipe(det)
    with pytest.raises(InputError, match="trust_checkpoint must be True or False"):
        load_checkpoint(torch.nn.Identity(), ckpt, trust=value)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("torch_module", {"model": "torch.nn:Identity", "strict": "false"}),
        ("blackbox", {"function": "x.y:f", "higher_is_anomalous": "false"}),
        ("blackbox", {"function": "x.y:f", "has_map": "yes"}),
        ("patch_features", {"invariant": "false"}),
        ("conv_autoencoder", {"augment": 1}),
    ],
)
def test_boolean_options_in_configs(kind, params, data):
    with safe_imports("torch.nn", "x.y"), pytest.raises(ConfigError, match="true or false"):
        parse_config(_config(data, _recipe(kind, **params)))


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("report", {"figures": "false"}),
        ("report", {"gallery": "no"}),
        ("cache", "false"),
        ("cache", "True"),
        ("cache", 1),
    ],
)
def test_boolean_settings_in_configs(section, value, data):
    with pytest.raises(ConfigError):
        parse_config(_config(data, _recipe("conv_autoencoder"), **{section: value}))


@pytest.mark.parametrize(
    "build",
    [
        lambda: __import__("xeval").adapters.ConvAutoencoder(augment="false"),
        lambda: __import__("xeval").adapters.PatchFeatures(invariant="no"),
        lambda: __import__("xeval").wrap(_toy.score_images, higher_is_anomalous="false"),
        lambda: __import__("xeval").wrap(torch.nn.Identity(), differentiable="true"),
    ],
)
def test_boolean_options_in_python(build):
    with pytest.raises(InputError, match="true or false"):
        build()


# -- S2 imports ---------------------------------------------------------------------------
DANGEROUS = [
    "subprocess:getoutput",
    "os:system",
    "os.system",
    "builtins:eval",
    "builtins.exec",
    "importlib:import_module",
    "shutil:rmtree",
    "pickle:loads",
    "sklearn.datasets:fetch_openml",  # downloads from the internet
    "sklearn.ensemble:_forest",  # private
    "sklearn.ensemble:IsolationForest.__init__",  # not a class attribute path
    "pyod.models.iforest:np.save",  # module attribute of an allowed module
    "anomalib.models:__builtins__",
    "xeval._io:atomic_write_text",
    "torch:save",
    "numpy:save",
    "evilpkg:run",
    "",
    "nocolon",
    "a b:c",
    "os:system; rm -rf /",
]


@pytest.mark.parametrize("path", DANGEROUS)
@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("blackbox", "function"),
        ("torch_module", "model"),
        ("torch_module", "score_fn"),
        ("sklearn_features", "estimator"),
        ("sklearn_features", "features"),
        ("ood_classifier", "model"),
    ],
)
def test_config_cannot_name_arbitrary_code(path, kind, key, data, evil):
    params = {key: path}
    if kind == "ood_classifier":
        params["method"] = "msp"
    if key == "features":
        params["estimator"] = "sklearn.ensemble:IsolationForest"
    if key == "score_fn":
        params["model"] = "sklearn.ensemble:IsolationForest"
    with pytest.raises(ConfigError, match=key):
        parse_config(_config(data, _recipe(kind, **params)))
    assert not evil.exists()  # refused before any import


@pytest.mark.parametrize("path", DANGEROUS)
def test_python_recipe_builder_enforces_the_policy(path, evil):
    with pytest.raises(XevalError):
        build_from_recipe(_recipe("blackbox", function=path))
    assert not evil.exists()


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.ensemble:IsolationForest",
        "sklearn.ensemble.IsolationForest",
        "sklearn.neighbors:LocalOutlierFactor",
        "sklearn.svm:OneClassSVM",
        "sklearn.covariance:EllipticEnvelope",
        "sklearn.mixture:GaussianMixture",
    ],
)
def test_allow_listed_classes(path, data):
    parse_config(_config(data, _recipe("sklearn_features", estimator=path)))
    assert isinstance(import_allowed(path), type)


def test_allow_listed_module_function_is_refused():
    """The built-in allow-list names classes only: a function of an allowed module is
    refused after import and before any call."""
    with pytest.raises(ConfigError, match="not a class"):
        import_allowed("sklearn.neighbors:kneighbors_graph")  # a function
    with pytest.raises(ConfigError):
        check_import_path("sklearn.ensemble._iforest:IsolationForest.fit")


def test_user_allowed_module_is_imported_only_when_built(data, evil, tmp_path):
    det = _recipe("blackbox", function="evilpkg:run", input_size=[32, 32])
    with safe_imports("evilpkg"):
        parse_config(_config(data, det))  # the check imports nothing
        assert not evil.exists()
        build_from_recipe(det)
    assert evil.exists()  # the user allowed it: it ran when built


def test_safe_imports_is_scoped():
    with safe_imports("mypkg"):
        check_import_path("mypkg.sub:f")
    with pytest.raises(ConfigError):
        check_import_path("mypkg.sub:f")
    with pytest.raises(ConfigError, match="module name"):
        with safe_imports("not a module"):
            pass


@pytest.mark.parametrize(
    "doc",
    [
        "!!python/object/apply:os.system ['touch {m}']",
        "name: !!python/object/apply:os.system ['touch {m}']",
        "dataset: !!python/name:os.system\n",
        "detectors: [!!python/object/new:subprocess.Popen [['touch', '{m}']]]",
    ],
)
def test_yaml_tags_never_run(doc, tmp_path):
    marker = tmp_path / "PWNED"
    p = tmp_path / "cfg.yaml"
    p.write_text(doc.format(m=marker))
    with pytest.raises(ConfigError):
        load_config(p)
    assert not marker.exists()


def test_cli_check_refuses_and_allow_import_permits(data, tmp_path, evil, capsys):
    det = _recipe("blackbox", function="evilpkg:run", input_size=[32, 32])
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(_config(data, det)))
    assert main(["run", str(p), "--check"]) == 2
    err = capsys.readouterr().err
    assert "--allow-import evilpkg" in err and "Traceback" not in err
    from xeval.adapters.imports import clear_safe_imports

    try:
        assert main(["run", str(p), "--check", "--allow-import", "evilpkg"]) == 0
    finally:
        clear_safe_imports()
    assert not evil.exists()  # --check imports nothing


# -- S3 output confinement --------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("output", "../escape"),
        ("output", "a/../../b"),
        ("output", "{tmp}/abs-out"),
        ("output", "~/xeval-out"),
        ("output", ".."),
        ("cache", "../cache"),
        ("cache", "{tmp}/abs-cache"),
    ],
)
def test_config_cannot_write_outside_the_current_folder(key, value, data, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = _toy_run_config(data, **{key: value.format(tmp=tmp_path)})
    with safe_imports(_toy.MODULE), pytest.raises(ConfigError, match=f"{key}.*--out"):
        run(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert not any(work.iterdir())


def test_relative_output_and_explicit_out(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _toy_run_config(data, output="runs/a")
    with safe_imports(_toy.MODULE):
        res = run(cfg)
        assert res.out_dir.resolve() == (tmp_path / "runs" / "a").resolve()
        assert (tmp_path / "runs" / "a" / MARKER).is_file()
        elsewhere = tmp_path.parent / f"{tmp_path.name}-explicit"
        res = run(cfg, out_dir=elsewhere)  # the caller's choice is used as given
    assert (elsewhere / "results.csv").is_file()


@pytest.mark.parametrize("content", ["file", "folder", "hidden"])
def test_existing_foreign_folder_is_never_written(content, data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    {"file": lambda: (out / "thesis.tex").write_text("x"),
     "folder": lambda: (out / "src").mkdir(),
     "hidden": lambda: (out / ".git").mkdir()}[content]()  # fmt: skip
    before = sorted(p.name for p in out.iterdir())
    cfg = _toy_run_config(data)
    with safe_imports(_toy.MODULE), pytest.raises(InputError, match="not written by xeval"):
        run(cfg, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == before


def test_output_that_is_a_file(data, tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    cfg = _toy_run_config(data)
    with safe_imports(_toy.MODULE), pytest.raises(InputError, match="not a folder"):
        run(cfg, out_dir=out)
    assert out.read_text() == "x"


# -- S4 checkpoints -----------------------------------------------------------------------
def _valid_checkpoint_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buf)
    return buf.getvalue()


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")
    return buf.getvalue()


CORRUPT = {
    "empty": lambda: b"",
    "random": lambda: np.random.default_rng(0).bytes(4096),
    "text": lambda: b"this is not a checkpoint\n" * 10,
    "truncated": lambda: _valid_checkpoint_bytes()[:200],
    "truncated-tail": lambda: _valid_checkpoint_bytes()[:-64],
    "foreign zip": _zip_bytes,
    "npy": lambda: (lambda b: (np.save(b, np.zeros(3)), b.getvalue())[1])(io.BytesIO()),
    "pickle protocol garbage": lambda: b"\x80\x05K\x01\x94.garbage",
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
@pytest.mark.parametrize("trust", [False, True])
def test_corrupt_checkpoint_is_called_corrupt(name, trust, tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(CORRUPT[name]())
    with pytest.raises(InputError) as info:
        load_checkpoint(torch.nn.Linear(2, 2), p, trust=trust)
    msg = str(info.value)
    assert str(p) in msg
    assert "trust_checkpoint" not in msg or name == "pickle protocol garbage"
    assert "not a valid torch checkpoint" in msg or "expected a state dict" in msg


def test_pickled_object_is_refused_and_never_run(tmp_path):
    p = tmp_path / "boom.pt"
    torch.save({"state_dict": Boom(str(tmp_path / "PWNED"))}, p)
    with pytest.raises(InputError, match="pickled Python objects"):
        load_checkpoint(torch.nn.Linear(2, 2), p, trust=False)
    assert not (tmp_path / "PWNED").exists()


def test_valid_checkpoint_loads(tmp_path):
    p = tmp_path / "ok.pt"
    p.write_bytes(_valid_checkpoint_bytes())
    m = load_checkpoint(torch.nn.Linear(2, 2), p)
    assert isinstance(m, torch.nn.Linear)


# -- S5 one run per output folder -------------------------------------------------------
def test_output_lock_is_exclusive(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(InputError, match=r"in use by another xeval run \(pid \d+"):
            with OutputLock(tmp_path):
                pass
    with OutputLock(tmp_path):  # released
        pass


def test_run_on_a_locked_folder_fails_fast(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cfg = _toy_run_config(data)
    with OutputLock(out), safe_imports(_toy.MODULE):
        t = time.perf_counter()
        with pytest.raises(InputError, match="in use by another xeval run"):
            run(cfg, out_dir=out)
        assert time.perf_counter() - t < 5
    assert not (out / "results.csv").exists()


def test_lock_of_a_killed_process_is_released(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys, time
        from xeval.engine.output import OutputLock
        with OutputLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"pid {proc.pid}"):
            with OutputLock(tmp_path):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with OutputLock(tmp_path):  # kill -9 left no stale lock
        pass
