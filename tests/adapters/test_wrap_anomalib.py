"""Integration: real anomalib 2.x PaDiM / PatchCore models through xeval.wrap (slow).

When anomalib is not importable here, a separate virtual environment is created once
under ``$XEVAL_ANOMALIB_VENV`` (default ``~/.cache/xeval/anomalib-venv``) with
``pip install torch==2.14.1 torchvision==0.29.1 anomalib`` and this checkout
(``pip install -e <repo> --no-deps``); the checks run there in a subprocess. Nothing is
downloaded at run time: the backbones are built with ``pre_trained=False`` and fitted
offline on synthetic images.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.anomalib]

ROOT = Path(__file__).resolve().parents[2]
PINS = ["torch==2.14.1", "torchvision==0.29.1", "anomalib"]

SCRIPT = r"""
import time
import numpy as np
import torch
from anomalib.models import Padim, Patchcore

from xeval.adapters.anomalib import AnomalibDetector
from xeval.adapters.wrap import build_from_recipe, wrap

t0 = time.perf_counter()
S = 128


def images(n, anomalous, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S] / S
    base = 0.5 + 0.1 * np.sin(2 * np.pi * 6 * xx)[None, None]
    x = base + 0.02 * rng.standard_normal((n, 3, S, S))
    if anomalous:
        for i in range(n):
            r, c = rng.integers(16, S - 48, size=2)
            x[i, :, r : r + 24, c : c + 24] = rng.random((3, 1, 1))
    return np.clip(x, 0, 1).astype(np.float32)


train = images(16, False, 0)
normal, anomal = images(4, False, 1), images(4, True, 2)
test = np.concatenate([normal, anomal])
configs = {
    "padim": (Padim, dict(backbone="resnet18", layers=["layer1", "layer2"],
                          pre_trained=False, n_features=64)),
    "patchcore": (Patchcore, dict(backbone="resnet18", layers=["layer2", "layer3"],
                                  pre_trained=False, coreset_sampling_ratio=0.05,
                                  num_neighbors=3)),
}
fitted = {}
for key, (cls, kw) in configs.items():
    torch.manual_seed(0)
    model = cls(**kw)
    det = wrap(model, name=key)
    assert isinstance(det, AnomalibDetector), type(det)
    assert det.input_size == (256, 256), det.input_size  # the pre-processor's resize
    det.fit([train[:4], train[4:8]] if key == "patchcore" else [train[:8], train[8:]])
    s, m = det.predict(test)
    assert s.shape == (8,) and s.dtype == np.float32, (s.shape, s.dtype)
    assert m.shape == (8, 256, 256) and m.dtype == np.float32, (m.shape, m.dtype)
    assert np.isfinite(s).all() and np.isfinite(m).all()
    # raw values, read before the post-processor: equal to the torch model's own output
    with torch.no_grad():
        raw = model.model(model.pre_processor(torch.from_numpy(test)))
    np.testing.assert_allclose(s, raw.pred_score.numpy().reshape(-1), rtol=1e-5)
    np.testing.assert_allclose(m, raw.anomaly_map.numpy()[:, 0], rtol=1e-5, atol=1e-6)
    print(key, "normal", np.round(s[:4], 3), "anomalous", np.round(s[4:], 3),
          "map range", float(m.min()), float(m.max()))
    assert s[4:].mean() > s[:4].mean(), "planted anomalies must score higher on average"
    if key == "padim":
        np.testing.assert_allclose(s, m.reshape(8, -1).max(axis=1), rtol=1e-5)
    # anomalib runs the backbone under no_grad: no torch_score, perturbation explainers only
    assert det.differentiable is False and det.torch_score() is None
    assert det.config()["model"] == cls.__name__
    fitted[key] = (model, s)

# recipe: class name + safe (weights_only) checkpoint of the fitted PaDiM
import tempfile, os
model, s_ref = fitted["padim"]
path = os.path.join(tempfile.mkdtemp(), "padim.ckpt")
torch.save({"state_dict": model.state_dict()}, path)
recipe = {"kind": "anomalib", "name": "padim_ckpt", "params": {
    "model": "Padim", "model_kwargs": configs["padim"][1], "checkpoint": path, "seed": 0}}
det = build_from_recipe(recipe)
assert det.name == "padim_ckpt"
det.fit([train[:2]])  # fit="auto": already fitted from the checkpoint -> no-op
np.testing.assert_allclose(det.score(test), s_ref, rtol=1e-5)
print("OK anomalib integration in %.1f s" % (time.perf_counter() - t0))
"""


def _env_python() -> tuple[str, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if importlib.util.find_spec("anomalib") is not None:
        return sys.executable, env
    venv = Path(os.environ.get("XEVAL_ANOMALIB_VENV", Path.home() / ".cache/xeval/anomalib-venv"))
    py = venv / "bin" / "python"
    if not (venv / ".xeval-ready").exists():
        tmp = venv.with_name(venv.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", str(tmp)],
            [str(tmp / "bin/python"), "-m", "pip", "install", "-q", *PINS],
            [str(tmp / "bin/python"), "-m", "pip", "install", "-q", "-e", str(ROOT), "--no-deps"],
        ]
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                pytest.fail(f"creating the anomalib venv failed at {cmd}:\n{r.stderr[-3000:]}")
        shutil.rmtree(venv, ignore_errors=True)
        tmp.rename(venv)
        # the venv's scripts hard-code their path; python itself does not need them
        (venv / ".xeval-ready").write_text(" ".join(PINS))
    return str(py), env


def test_anomalib_padim_and_patchcore_through_wrap():
    from _crosscheck import require, required

    if required():  # CI: anomalib must import here (its own venv), none is built on the fly
        require("anomalib")
    t0 = time.perf_counter()
    py, env = _env_python()
    r = subprocess.run(
        [py, "-c", SCRIPT], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT
    )
    print(r.stdout)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-5000:]}"
    assert "OK anomalib integration" in r.stdout
    print(f"total {time.perf_counter() - t0:.1f} s")
