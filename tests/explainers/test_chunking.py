"""Chunking never changes a map (issue 8).

For every registered explainer that can explain a toy detector, and N images around the
internal batch size, ``explain(det, images[:N], method, internal_batch_size=k)`` equals

- the concatenation of ``explain`` on each image alone, and on uneven chunks (the calls
  pass :class:`~xeval.record.Inputs` carrying the images' ids in the full call: the ids
  seed per-sample randomness -- the random control, GradientSHAP, SmoothGrad,
  KernelSHAP -- and a bare array's ids are its positions), and
- one call with an internal batch larger than everything,

to ``atol = 1e-6`` times the map's scale (``max(1, max |map|)``; float32 rounding of a
batched convolution differs by a few ulps), ``1e-5`` for label-free importance, whose
scalar ``<f(x'), f(x)>`` is large here (maps up to ~50): its rounding, amplified by
KernelSHAP's regression, reaches a few ``1e-6`` of the map's scale.

Detectors: :class:`TinyAEDetector` (a conv net with an encoder: every method),
``chunked_ae`` -- the same network and score behind
:class:`~xeval.adapters.TorchModuleDetector` with ``batch_size=2``, whose
``torch_score`` splits its input into chunks of 2 images and so runs every module once
per chunk: before the fix Grad-CAM kept the last chunk's activations only (wrong
shape) and DeepLIFT raised captum's "module used more than once" error -- and
:class:`BlackBox` (numpy score only: perturbation methods, controls, native map).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch
from _attr_toys import BlackBox, TinyAEDetector, _TinyAE, images, region_weights
from torch import nn

from xeval.adapters.torch_module import TorchModuleDetector
from xeval.explainers.api import explain
from xeval.explainers.attribution import single_run_rows
from xeval.explainers.pairing import supported
from xeval.record import Inputs
from xeval.registry import EXPLAINERS

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks"),
    pytest.mark.filterwarnings("ignore:Internal batch size cannot be less"),
]

X = images(7, seed=11)
REF = images(6, seed=5)
NS = (1, 2, 3, 5, 7)  # the last is all of X
BIG = 10_000  # an internal batch larger than any call here


class _AEError(nn.Module):
    """TinyAE's per-pixel error map as a plain module (what TorchModuleDetector wraps)."""

    def __init__(self) -> None:
        super().__init__()
        self.ae = _TinyAE()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae.error(x)


def chunked_ae(batch_size: int = 2) -> TorchModuleDetector:
    """TinyAEDetector's network and score behind TorchModuleDetector, whose torch_score
    runs its module once per chunk of ``batch_size`` images."""
    return TorchModuleDetector(
        _AEError(),
        name=f"chunked_ae{batch_size}",
        input_size=16,
        batch_size=batch_size,
        score_fn=lambda out, x: out.flatten(1).mean(dim=1),
    )


DETECTORS = {
    "tiny_ae": TinyAEDetector(),
    "chunked_ae": chunked_ae(2),
    "black_box": BlackBox(region_weights()),
}
#: the internal batch size tried per detector (the chunked detector's own batch is 2)
IBS = {"tiny_ae": 3, "chunked_ae": 2, "black_box": 2}
#: the chunking detector only matters where captum hooks its modules or takes gradients
CHUNKED_AE_NEEDS = {"gradients", "layer", "encoder"}

#: small settings so that the module runs in seconds (method defaults otherwise)
PARAMS: dict[str, dict] = {
    "integrated_gradients": {"n_steps": 8},
    "gradient_shap": {"n_samples": 5, "stdevs": 0.05, "n_baselines": 4},
    "deeplift_shap": {"n_baselines": 3},
    "smoothgrad": {"nt_samples": 4, "stdevs": 0.1},
    "occlusion": {"window": 8, "stride": 4, "perturbations_per_eval": 1},
    "feature_ablation": {"n_segments": 6, "perturbations_per_eval": 1},
    "kernel_shap": {"segments": "grid", "window": 8, "n_samples": 12},
    "label_free": {"base": "integrated_gradients", "n_steps": 8},
}

#: further parameterisations (label, method, params, detectors): the other random and
#: per-input-baseline code paths, and the hooked bases
VARIANTS = [
    ("smoothgrad[deeplift]", "smoothgrad", {"base": "deeplift", "nt_samples": 3},
     ("tiny_ae", "chunked_ae")),
    ("smoothgrad[ig,vargrad,nsb2]", "smoothgrad",
     {"base": "integrated_gradients", "base_params": {"n_steps": 4}, "nt_samples": 3,
      "nt_type": "vargrad", "nt_samples_batch_size": 2}, ("tiny_ae",)),
    ("gradient_shap[blur]", "gradient_shap", {"baseline": "blur", "n_samples": 4},
     ("tiny_ae",)),
    ("deeplift_shap[blur]", "deeplift_shap", {"baseline": "blur"}, ("tiny_ae", "chunked_ae")),
    ("feature_ablation[grid]", "feature_ablation", {"segments": "grid", "window": 4},
     ("black_box",)),
    ("label_free[gradient_shap]", "label_free",
     {"base": "gradient_shap", "n_samples": 4, "stdevs": 0.05}, ("tiny_ae",)),
    ("label_free[smoothgrad]", "label_free", {"base": "smoothgrad", "nt_samples": 3},
     ("tiny_ae",)),
    ("label_free[deeplift]", "label_free", {"base": "deeplift"}, ("tiny_ae",)),
    ("label_free[kernel_shap]", "label_free",
     {"base": "kernel_shap", "segments": "grid", "window": 8, "n_samples": 10},
     ("tiny_ae",)),
]  # fmt: skip


def _takes_ibs(method: str) -> bool:
    """Whether ``method`` has an internal batch (label_free: its base's, via **params)."""
    cls = EXPLAINERS.get(method)
    if cls.__init__ is object.__init__:
        return False
    params = inspect.signature(cls.__init__).parameters
    return "internal_batch_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is ~10x faster than several (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _cases() -> list:
    cases = []
    for det_name, det in DETECTORS.items():
        ok = set(supported(det))
        if det_name == "chunked_ae":
            ok = {m for m in ok if EXPLAINERS.get(m).requires & CHUNKED_AE_NEEDS}
        runs = [(m, m, PARAMS.get(m, {})) for m in EXPLAINERS.names() if m in ok]
        runs += [(lab, m, p) for lab, m, p, dets in VARIANTS if det_name in dets]
        for label, method, params in runs:
            ibs = IBS[det_name] if _takes_ibs(method) else None
            cid = f"{det_name}-{label}" + ("" if ibs is None else f"-ibs{ibs}")
            cases.append(pytest.param(det_name, method, params, ibs, id=cid))
    return cases


CASES = _cases()


def _inputs(lo: int, hi: int) -> Inputs:
    """Images lo..hi-1 under their ids in the full call (their positions)."""
    return Inputs(ids=[str(i) for i in range(lo, hi)], category="toy", images=X[lo:hi])


def _same(got: np.ndarray, want: np.ndarray, what: str, *, tol: float = 1e-6) -> None:
    assert got.shape == want.shape, (what, got.shape, want.shape)
    atol = tol * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def test_every_registered_explainer_is_covered():
    covered = {c.values[1] for c in CASES}
    missing = set(EXPLAINERS.names()) - covered
    if missing == {"label_free"}:  # pragma: no cover - the toys have an encoder
        pytest.skip("no toy detector exposes an encoder(): label_free not covered")
    assert not missing, f"registered explainers without a chunking case: {sorted(missing)}"


@pytest.mark.parametrize(("det_name", "method", "params", "ibs"), CASES)
def test_chunking_gives_the_same_maps(det_name, method, params, ibs):
    det = DETECTORS[det_name]
    kw = dict(params, reference=REF)
    small = {} if ibs is None else {"internal_batch_size": ibs}
    big = {} if ibs is None else {"internal_batch_size": BIG}

    # label-free explains <f(x'), f(x)>, large here: float32 rounding of its batched
    # evaluation (and of the reference f(x)) moves maps by a few 1e-6 of their scale
    tol = 1e-5 if method == "label_free" else 1e-6

    def run(images, **extra):
        return explain(det, images, method, **kw, **extra)

    def same(got, want, what):
        _same(got, want, what, tol=tol)

    singles = np.concatenate([run(_inputs(i, i + 1), **small) for i in range(len(X))])
    assert singles.shape == (len(X), *X.shape[2:]) and np.isfinite(singles).all()
    for n in NS:
        what = f"{det_name} {method} {params} ibs={ibs} N={n}"
        chunked = singles[:1] if n == 1 else run(_inputs(0, n), **small)
        same(chunked, singles[:n], f"{what}: vs one image per call")
        same(chunked, run(_inputs(0, n), **big), f"{what}: vs one large internal batch")
    # the full call also equals uneven chunks of several images, and a bare array
    parts = [run(_inputs(lo, min(lo + 3, len(X))), **small) for lo in range(0, len(X), 3)]
    same(np.concatenate(parts), chunked, f"{what}: vs chunks of 3, 3, 1")
    same(run(X, **small), chunked, f"{what}: bare array (ids = positions)")


# ----------------------------------------------------------- detectors that chunk inputs
@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("saliency", {}),
        ("grad_cam", {}),
        ("deeplift", {}),
        ("deeplift_shap", {"n_baselines": 3}),
        ("smoothgrad", {"base": "deeplift", "nt_samples": 3}),
        ("integrated_gradients", {"n_steps": 8}),
    ],
)
def test_chunking_detector_gives_the_unchunked_networks_maps(method, params):
    """Same network and score, once behind a torch_score that splits its input into
    chunks of 2 images: the maps are those of the plain detector at the default internal
    batch (64 rows; captum's hooks would see the modules run once per chunk). DeepLIFT's
    rescale rules are really applied (not degraded to gradients): no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", "Input Tensor 0 did not already")
        warnings.filterwarnings("ignore", "Setting forward, backward hooks")
        got = explain(DETECTORS["chunked_ae"], X, method, reference=REF, **params)
    want = explain(DETECTORS["tiny_ae"], X, method, reference=REF, **params)
    _same(got, want, method)


def test_detector_running_one_image_per_pass():
    """batch_size=1: Grad-CAM runs one image per captum call and stays exact; DeepLIFT
    (input and baseline in one pass) cannot hook the modules: it says so and degrades
    to plain gradients, still independent of the chunking."""
    det = chunked_ae(1)
    want = explain(DETECTORS["tiny_ae"], X, "grad_cam")
    _same(explain(det, X, "grad_cam"), want, "grad_cam")
    with pytest.warns(UserWarning, match="rescale rule"):
        a = explain(det, X, "deeplift", reference=REF)
    with pytest.warns(UserWarning, match="rescale rule"):
        singles = np.concatenate([explain(det, _inputs(i, i + 1), "deeplift", reference=REF)
                                  for i in range(len(X))])  # fmt: skip
    _same(a, singles, "deeplift, unhooked")


class _Chunks(nn.Module):
    def __init__(self, size: int, twice: bool = False) -> None:
        super().__init__()
        self.size, self.twice = size, twice
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i in range(0, len(x), self.size):
            h = self.act(x[i : i + self.size])
            outs.append(self.act(h) if self.twice else h)
        return torch.cat(outs).flatten(1).sum(dim=1)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 7, 16])
def test_single_run_rows(size, n):
    m = _Chunks(size)
    probe = (torch.rand(1, 3, 4, 4), ())
    rows = single_run_rows(m, probe, [m.act], n)
    assert 1 <= rows <= min(n, size) and (rows == n or rows * 2 > min(n, size))
    assert not m.act._forward_hooks  # probes leave no hook behind
    twice = _Chunks(size, twice=True)
    assert single_run_rows(twice, probe, [twice.act], n) == 0
