"""Benchmark of the attribution explainers (not a test).

For one batch on a small conv autoencoder (``xeval.adapters.autoencoder.ConvAutoencoder``
if importable, else a tiny one defined here):

- time of xeval's path (``explainer.explain``: validation, baselines, seeding, chunking,
  reduction) vs captum called directly on the raw score function with the same inputs,
  baselines and parameters, and their ratio (target: <= 1.10);
- attribution throughput (images/s) of xeval's path;
- peak memory per explainer: peak RSS during one explain call minus the RSS before it
  (Linux ``/proc/self/clear_refs`` resets the peak), in a fresh subprocess per method;
  on CUDA, ``torch.cuda.max_memory_allocated``.

Run: ``python bench/bench_explainers.py [--size 64] [--batch 8] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from captum import attr as ca  # noqa: E402

from xeval.explainers import attribution as A  # noqa: E402
from xeval.explainers.attribution import ScoreModule  # noqa: E402
from xeval.explainers.reduce import reduce_channels  # noqa: E402
from xeval.rng import torch_seeded  # noqa: E402


def make_detector(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    train = rng.uniform(0.3, 0.7, (32, 3, size, size)).astype(np.float32)
    try:
        from xeval.adapters.autoencoder import ConvAutoencoder

        det = ConvAutoencoder(input_size=size, epochs=1, width=16, batch_size=16, seed=seed)
        det.fit([train])
        return det, train, "ConvAutoencoder(width=16)"
    except ImportError:  # pragma: no cover
        sys.path.insert(0, os.path.join(ROOT, "tests", "explainers"))
        from _attr_toys import TinyAEDetector

        return TinyAEDetector(size=size), train, "TinyAE"


def cases(ref: np.ndarray):
    """name -> (xeval explainer, captum-direct function(forward, module, x, b1, bk))."""
    k = 8
    refk = ref[:k]
    return {
        "saliency": (A.Saliency(internal_batch_size=None),
                     lambda f, m, x, b1, bk: ca.Saliency(f).attribute(x, abs=False)),
        "input_x_gradient": (A.InputXGradient(internal_batch_size=None),
                             lambda f, m, x, b1, bk: ca.InputXGradient(f).attribute(x)),
        "integrated_gradients": (
            A.IntegratedGradients(reference=ref, n_steps=32, internal_batch_size=64),
            lambda f, m, x, b1, bk: ca.IntegratedGradients(f).attribute(
                x, baselines=b1, n_steps=32, internal_batch_size=64)),
        "gradient_shap": (
            A.GradientShap(baseline=refk, n_samples=16, internal_batch_size=None),
            lambda f, m, x, b1, bk: ca.GradientShap(f).attribute(x, baselines=bk, n_samples=16)),
        "deeplift": (A.DeepLift(reference=ref, internal_batch_size=None),
                     lambda f, m, x, b1, bk: ca.DeepLift(ScoreModule(f, m)).attribute(
                         x, baselines=b1)),
        "deeplift_shap": (
            A.DeepLiftShap(baseline=refk, internal_batch_size=None),
            lambda f, m, x, b1, bk: ca.DeepLiftShap(ScoreModule(f, m)).attribute(
                x, baselines=bk)),
        "smoothgrad": (
            A.SmoothGrad(nt_samples=16, stdevs=0.1, nt_samples_batch_size=8),
            lambda f, m, x, b1, bk: ca.NoiseTunnel(ca.Saliency(f)).attribute(
                x, nt_type="smoothgrad", nt_samples=16, nt_samples_batch_size=8, stdevs=0.1,
                abs=False)),
        "grad_cam": (A.GradCam(internal_batch_size=None), None),
        "occlusion": (
            A.Occlusion(reference=ref, window=16, stride=8, perturbations_per_eval=16,
                        internal_batch_size=None),
            lambda f, m, x, b1, bk: ca.Occlusion(f).attribute(
                x, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8), baselines=b1,
                perturbations_per_eval=16)),
        "feature_ablation": (
            A.FeatureAblation(reference=ref, n_segments=32, perturbations_per_eval=16,
                              internal_batch_size=None), None),
        "kernel_shap": (A.KernelShap(reference=ref, n_segments=16, n_samples=64), None),
    }  # fmt: skip


def _time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def child(method: str, size: int, batch: int) -> None:
    det, train, _ = make_detector(size)
    x = np.random.default_rng(1).uniform(0, 1, (batch, 3, size, size)).astype(np.float32)
    e = cases(train)[method][0]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    gc.collect()
    try:  # reset the peak-RSS mark (Linux), so training's peak does not hide ours
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS:")
        e.explain(det, x)
        rss = (_status_kib("VmHWM:") - before) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        e.explain(det, x)
        rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"rss_mib": rss, "gpu_mib": gpu}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.size, args.batch)
        return
    det, train, label = make_detector(args.size)
    x_np = np.random.default_rng(1).uniform(0, 1, (args.batch, 3, args.size, args.size))
    x_np = x_np.astype(np.float32)
    f = det.torch_score()
    warnings.filterwarnings("ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the module DeepLIFT may hook (None when its activations are reused, as xeval does)
        mod = A._hookable_module(det, f, (torch.from_numpy(x_np[:1]), ()))
    x = torch.from_numpy(x_np)
    b1 = torch.from_numpy(np.broadcast_to(train.mean(0), x_np.shape).copy())
    bk = torch.from_numpy(train[:8])
    print(f"detector: {label}, batch {args.batch} x 3 x {args.size}^2, "
          f"{args.threads} threads, min of {args.repeats} interleaved runs")  # fmt: skip
    hdr = f"{'method':<22}{'xeval s':>9}{'captum s':>10}{'ratio':>7}{'img/s':>9}{'peak MiB':>10}"
    print(hdr)
    print("-" * len(hdr))
    for name, (e, direct) in cases(train).items():
        e.explain(det, x_np)  # warm-up
        run_direct = None
        if direct is not None:

            def run_direct(direct=direct, e=e):
                with torch_seeded(e.seed, numpy_global=True):
                    a = direct(f, mod, x.clone(), b1, bk)
                return reduce_channels(a.detach(), "abs_sum").numpy()

            run_direct()
        tx, tc_ = [], []
        for _ in range(args.repeats):  # interleaved, min: robust to a busy machine
            tx.append(_time(lambda e=e: e.explain(det, x_np), 1))
            if run_direct is not None:
                tc_.append(_time(run_direct, 1))
        t_x = min(tx)
        t_c = min(tc_) if tc_ else None
        ratio = t_x / t_c if t_c else None
        mem = ""
        if not args.no_memory:
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, "--size", str(args.size),
                 "--batch", str(args.batch), "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            r = json.loads(out)
            mem = f"{r['gpu_mib'] if r['gpu_mib'] is not None else r['rss_mib']:.0f}"
        tc = f"{t_c:.3f}" if t_c is not None else "-"
        rt = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"{name:<22}{t_x:>9.3f}{tc:>10}{rt:>7}{args.batch / t_x:>9.1f}{mem:>10}")


if __name__ == "__main__":
    main()
