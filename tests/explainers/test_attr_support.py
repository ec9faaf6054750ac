"""Baselines, channel reduction, caching, label-free importance, seeding, memory bounds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from _attr_toys import LinearDetector, TinyAEDetector, images, region_weights
from captum import attr as ca

from xeval.errors import InputError
from xeval.explainers import attribution as A
from xeval.explainers.api import explain, method_names
from xeval.explainers.cache import CachedExplainer, cache_key
from xeval.explainers.label_free import LabelFree
from xeval.explainers.reduce import normalize_per_sample, reduce_channels
from xeval.record import Inputs
from xeval.substrates import (
    Black,
    Blur,
    Constant,
    NormalReference,
    Uniform,
    resolve_baseline,
)

W = region_weights()
LIN = LinearDetector(W)
AE = TinyAEDetector()
X = images(3)
REF = images(6, seed=4)


# ----------------------------------------------------------------------------- baselines
def test_baselines_shapes_and_values():
    assert np.all(Black().single(X) == 0)
    nr = NormalReference(REF, k=4)
    np.testing.assert_allclose(nr.single(X)[1], REF.mean(0), atol=1e-7)
    d = nr.distribution(X, k=4, seed=0)
    assert d.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(d, nr.distribution(X, k=4, seed=0))  # seeded
    assert NormalReference(REF[:2], k=4).distribution(X, seed=0).shape == (2, 3, 16, 16)
    bl = Blur(sigma=2).single(X)
    assert bl.shape == X.shape and bl.std() < X.std()
    assert Blur(2).distribution(X, k=3, seed=0).shape == (3, 1, 3, 16, 16)
    u = Uniform(seed=1).distribution(X, k=5, seed=0)
    assert u.shape == (5, 3, 16, 16) and 0 <= u.min() and u.max() < 1
    assert Constant(REF[0]).single(X).shape == X.shape
    assert resolve_baseline(None) is None
    assert isinstance(resolve_baseline("normal", reference=REF), NormalReference)
    with pytest.raises(InputError, match="baseline must be one of"):
        resolve_baseline("grey")
    with pytest.raises(InputError, match="NaN"):
        NormalReference(REF * np.nan)


def test_blur_baseline_for_distribution_methods_runs_per_sample():
    a = A.GradientShap(baseline=Blur(3), n_samples=4, internal_batch_size=4).attribute(AE, X)
    b = A.DeepLiftShap(baseline="blur").attribute(AE, X)
    assert a.shape == b.shape == X.shape and np.isfinite(a).all()
    # DeepLiftShap with one (blurred) baseline per input equals DeepLIFT against it
    np.testing.assert_allclose(b, A.DeepLift(baseline="blur").attribute(AE, X), atol=1e-6)


def test_config_records_baseline_and_reduce():
    e = A.IntegratedGradients(reference=REF, reduce="sum", n_steps=8)
    cfg = e.config()
    json.dumps(cfg)
    assert cfg["reduce"] == "sum" and cfg["n_steps"] == 8
    assert cfg["baseline"]["name"] == "normal_reference" and cfg["baseline"]["n"] == 6
    assert A.Saliency().config() == {"name": "saliency", "reduce": "abs_sum",
                                     "internal_batch_size": 64, "seed": 0}  # fmt: skip
    for name in method_names():
        if name != "native":
            json.dumps(A.METHODS.get(name, LabelFree)().config())


# ----------------------------------------------------------------------------- reduction
def test_reductions():
    a = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(reduce_channels(a, "abs_sum"), np.abs(a).sum(1))
    np.testing.assert_allclose(reduce_channels(a, "sum"), a.sum(1))
    np.testing.assert_allclose(reduce_channels(a, "l2"), np.linalg.norm(a, axis=1), rtol=1e-6)
    np.testing.assert_allclose(reduce_channels(a, "max_abs"), np.abs(a).max(1))
    t = reduce_channels(torch.from_numpy(a), "l2").numpy()
    np.testing.assert_allclose(t, np.linalg.norm(a, axis=1), rtol=1e-6)
    n = normalize_per_sample(np.stack([np.ones((4, 5)), 10 * np.ones((4, 5))]))
    np.testing.assert_allclose(n, 1.0)  # per sample, not per batch


# ------------------------------------------------------------------------------- seeding
# (uses numpy's legacy global RNG on purpose: captum draws from it)
def test_seeded_and_caller_rng_untouched():
    np.random.seed(123)  # noqa: NPY002
    torch.manual_seed(123)
    before = (np.random.random(), torch.rand(1).item())  # noqa: NPY002
    np.random.seed(123)  # noqa: NPY002
    torch.manual_seed(123)
    e = A.GradientShap(reference=REF, n_samples=5, stdevs=0.1, seed=5)
    a1, a2 = e.attribute(AE, X), e.attribute(AE, X)
    after = (np.random.random(), torch.rand(1).item())  # noqa: NPY002
    np.testing.assert_array_equal(a1, a2)
    assert before == after
    a3 = A.GradientShap(reference=REF, n_samples=5, stdevs=0.1, seed=6).attribute(AE, X)
    assert not np.allclose(a1, a3)


def test_memory_bound_respected():
    seen = []
    f = AE.torch_score()

    class Spy(TinyAEDetector):
        def torch_score(self):
            return lambda x: (seen.append(len(x)), f(x))[1]

    det = Spy()
    for method, kw in [
        ("saliency", {}),
        ("integrated_gradients", {"n_steps": 10}),
        ("gradient_shap", {"n_samples": 10}),
        ("deeplift_shap", {}),
        ("occlusion", {"window": 4, "stride": 4, "perturbations_per_eval": 4}),
        ("smoothgrad", {"nt_samples": 10}),
    ]:
        seen.clear()
        explain(det, X, method, reference=REF, internal_batch_size=8, **kw)
        assert seen and max(seen) <= 8, (method, max(seen))


# --------------------------------------------------------------------------- label-free
def test_label_free_equals_captum_on_inner_product():
    enc = AE.model.code
    x = torch.from_numpy(X)
    ref = enc(x).flatten(1).detach()

    def g(xp, r):
        return (enc(xp).flatten(1) * r).sum(1)

    b = torch.from_numpy(np.broadcast_to(REF.mean(0), X.shape).copy())
    theirs = ca.IntegratedGradients(g).attribute(
        x, baselines=b, additional_forward_args=(ref,), n_steps=16
    )
    ours = LabelFree(base="integrated_gradients", reference=REF, n_steps=16, reduce="sum")
    a = ours.attribute(AE, X)
    np.testing.assert_allclose(a, theirs.detach().numpy(), rtol=1e-4, atol=1e-7)
    # completeness: sum = <f(x) - f(b), f(x)>
    fb = enc(b).flatten(1).detach()
    np.testing.assert_allclose(a.sum((1, 2, 3)), ((ref - fb) * ref).sum(1).numpy(), rtol=2e-2)
    assert ours.config()["base"] == "integrated_gradients"
    assert "encoder" in ours.requires
    for m in ("saliency", "gradient_shap", "occlusion", "deeplift"):
        out = explain(AE, X, "label_free", base=m, reference=REF)
        assert out.shape == (3, 16, 16) and np.isfinite(out).all()


# -------------------------------------------------------------------------------- cache
def _batch(x, ids):
    return Inputs(ids=ids, category="c", images=x)


def test_cache_roundtrip(tmp_path, monkeypatch):
    inner = A.IntegratedGradients(reference=REF, n_steps=8)
    c = CachedExplainer(inner, tmp_path, "det-v1")
    m1 = c.explain(AE, _batch(X, ["a", "b", "c"]))
    assert (c.hits, c.misses) == (0, 3)
    files = sorted(p for p in tmp_path.rglob("*.npy"))
    assert len(files) == 3 and not list(tmp_path.rglob("*.tmp"))
    calls = []
    orig = inner.explain
    monkeypatch.setattr(inner, "explain", lambda d, b, maps=None: (calls.append(b.ids),
                                                                   orig(d, b))[1])  # fmt: skip
    x2 = np.concatenate([X[1:], images(1, seed=42)])
    m2 = c.explain(AE, _batch(x2, ["b", "c", "d"]))
    assert calls == [["d"]] and (c.hits, c.misses) == (2, 4)
    np.testing.assert_array_equal(m2[:2], m1[1:])
    # a different explainer config or detector key never shares entries
    other = CachedExplainer(A.IntegratedGradients(reference=REF, n_steps=9), tmp_path, "det-v1")
    other.explain(AE, _batch(X[:1], ["a"]))
    assert other.misses == 1
    assert cache_key("k", {"a": 1, "b": 2}, "s") == cache_key("k", {"b": 2, "a": 1}, "s")
    assert cache_key("k", {"a": 1}, "s") != cache_key("k2", {"a": 1}, "s")
    # same id, different pixels: recomputed
    c.explain(AE, _batch(images(1, seed=77), ["a"]))
    assert c.misses == 5
    # corrupt entry: recomputed and overwritten, never unpickled
    f = files[0]
    f.write_bytes(b"garbage")
    c2 = CachedExplainer(inner, tmp_path, "det-v1")
    for ids, x in ((["a", "b", "c"], X),):
        c2.explain(AE, _batch(x, ids))
    assert c2.misses >= 1 and np.load(f, allow_pickle=False).dtype == np.float32
    assert c2.name == inner.name and c2.config() == inner.config()
    assert os.path.basename(str(f)).endswith(".npy")
