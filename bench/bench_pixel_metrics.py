"""Speed and memory of the pixel metrics at MVTec AD test-set scale.

Generates ``--n-images`` maps of ``--size``² (default 1725 × 256², 113 M pixels) with
realistic structure (smooth background noise, elevated blobs over irregular defects,
about a quarter of the images normal), then runs each contender in its own fresh
subprocess and reports wall time, extra peak memory (peak RSS during the call minus
RSS before it; the maps themselves are not counted) and the values:

- ``xeval exact``   : pixel AUROC + pixel AUPR + AUPRO@0.3 together (one sort)
- ``xeval binned``  : the same in streaming mode, batches of 32 images, with its bound
- ``sklearn``       : roc_auc_score + average_precision_score on the flattened pixels
- ``torchmetrics``  : BinaryAUROC(thresholds=None) (exact), when installed
- ``anomalib``      : AUPRO (anomalib.metrics), when installed
- ``naive AUPRO``   : the textbook algorithm of the MVTec AD evaluation script
                      (argsort of all pixels, cumulative sums; our own code)

Usage: ``python bench/bench_pixel_metrics.py [--n-images 1725] [--size 256]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("XEVAL_BENCH_DIR", "/tmp/xeval-bench"))


def make_data(n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Write (masks uint8, maps float32) .npy files once and return their paths."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pm, pa = CACHE / f"masks_{n}_{size}_{seed}.npy", CACHE / f"maps_{n}_{size}_{seed}.npy"
    if pm.exists() and pa.exists():
        return pm, pa
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    masks = np.zeros((n, size, size), np.uint8)
    maps = np.empty((n, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i0 in range(0, n, 64):
        b = min(64, n - i0)
        low = torch.rand(b, 1, size // 16, size // 16, generator=g)
        bg = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[:, 0]
        fine = torch.rand(b, size, size, generator=g) * 0.15
        maps[i0 : i0 + b] = (0.3 * bg + fine).numpy()
    for i in range(n):
        if rng.random() < 0.27:  # normal image
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.random(2)
            ry, rx = rng.uniform(0.02, 0.12, 2)
            th = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dy * np.cos(th) + dx * np.sin(th)) / ry
            v = (-dy * np.sin(th) + dx * np.cos(th)) / rx
            r = u**2 + v**2
            region = r <= 1 + 0.3 * np.sin(6 * np.arctan2(u, v))
            masks[i] |= region
            maps[i] += (rng.uniform(0.05, 0.6) * np.exp(-0.5 * r / 1.5)).astype(np.float32)
    np.save(pm, masks)
    np.save(pa, maps)
    return pm, pa


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_aupro(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float:
    """The MVTec AD evaluation algorithm, written plainly (argsort of every pixel)."""
    from scipy import ndimage

    fp = np.zeros(maps.shape, np.uint32)
    pro = np.zeros(maps.shape, np.float64)
    n_ok = n_reg = 0
    for i in range(maps.shape[0]):
        lab, k = ndimage.label(masks[i], np.ones((3, 3), int))
        ok = lab == 0
        n_ok += ok.sum()
        n_reg += k
        fp[i, ok] = 1
        if k:
            sizes = np.bincount(lab.ravel())
            w = 1.0 / sizes
            w[0] = 0
            pro[i] = w[lab]
    flat = maps.ravel()
    order = np.argsort(flat)[::-1]
    s = flat[order]
    f = np.cumsum(fp.ravel()[order]) / n_ok
    p = np.cumsum(pro.ravel()[order]) / n_reg
    keep = np.append(np.diff(s) != 0, True)
    f = np.concatenate(([0], np.minimum(f[keep], 1), [1]))
    p = np.concatenate(([0], np.minimum(p[keep], 1), [1]))
    j = np.searchsorted(f, limit, side="right")
    yl = p[j - 1] + (p[j] - p[j - 1]) * (limit - f[j - 1]) / (f[j] - f[j - 1])
    area = np.sum(0.5 * (p[1:j] + p[: j - 1]) * np.diff(f[:j])) + 0.5 * (yl + p[j - 1]) * (
        limit - f[j - 1]
    )
    return float(area / limit)


def _preimport(name: str) -> None:
    """Import the contender's modules before the clock starts."""
    mods = {
        "xeval exact": ["xeval.metrics"],
        "xeval binned": ["xeval.metrics"],
        "sklearn": ["sklearn.metrics"],
        "torchmetrics": ["torch", "torchmetrics.classification"],
        "anomalib": ["torch", "anomalib.metrics.aupro"],
        "naive AUPRO": ["scipy.ndimage"],
    }[name]
    import importlib

    for m in mods:
        importlib.import_module(m)


def run_one(name: str, pm: str, pa: str) -> dict:
    masks = np.load(pm)
    maps = np.load(pa)
    masks_b = masks.astype(bool)
    import gc

    _preimport(name)

    gc.collect()
    rss0 = _rss_mb()
    t = time.perf_counter()
    out: dict = {}
    if name == "xeval exact":
        from xeval.metrics import PixelRanking

        m = PixelRanking(fpr_limits=(0.3,), mode="exact")
        r = m.compute(m.update(m.init(), masks_b, maps))
        out = {k: r[k] for k in ("pixel_auroc", "pixel_aupr", "aupro@0.3")}
    elif name == "xeval binned":
        from xeval.metrics import PixelRanking

        m = PixelRanking(fpr_limits=(0.3,), mode="binned")
        st = m.init()
        for i in range(0, maps.shape[0], 32):  # streaming: one batch at a time
            st = m.update(st, masks_b[i : i + 32], maps[i : i + 32])
        r = m.compute(st)
        out = {k: r[k] for k in ("pixel_auroc", "pixel_aupr", "aupro@0.3")}
        out.update({k: v for k, v in r.items() if k.startswith("error_bound/")})
    elif name == "sklearn":
        from sklearn.metrics import average_precision_score, roc_auc_score

        y = masks_b.ravel()
        s = maps.ravel()
        out = {"pixel_auroc": roc_auc_score(y, s), "pixel_aupr": average_precision_score(y, s)}
    elif name == "torchmetrics":
        import torch
        from torchmetrics.classification import BinaryAUROC

        au = BinaryAUROC(thresholds=None)
        au.update(torch.from_numpy(maps.ravel()), torch.from_numpy(masks.ravel()).long())
        out = {"pixel_auroc": float(au.compute())}
    elif name == "anomalib":
        import torch
        from anomalib.metrics.aupro import _AUPRO  # the metric without anomalib's Batch plumbing

        au = _AUPRO(fpr_limit=0.3)
        au.update(torch.from_numpy(maps), torch.from_numpy(masks_b))
        out = {"aupro@0.3": float(au.compute())}
    elif name == "naive AUPRO":
        out = {"aupro@0.3": naive_aupro(masks_b, maps)}
    out["seconds"] = time.perf_counter() - t
    out["extra_peak_mb"] = _peak_mb() - rss0
    return out


def available(name: str) -> bool:
    mod = {"torchmetrics": "torchmetrics", "anomalib": "anomalib"}.get(name)
    if mod is None:
        return True
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=1725)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--anomalib-python",
        default=None,
        help="a Python interpreter with anomalib installed (its own venv)",
    )
    ap.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        print(json.dumps(run_one(*a._child)))
        return
    pm, pa = make_data(a.n_images, a.size)
    names = a.only or [
        "xeval exact",
        "xeval binned",
        "sklearn",
        "torchmetrics",
        "anomalib",
        "naive AUPRO",
    ]
    print(f"{a.n_images} maps of {a.size}x{a.size} = {a.n_images * a.size**2 / 1e6:.0f} M pixels")
    res = {}
    for name in names:
        exe = sys.executable
        if name == "anomalib" and a.anomalib_python:
            exe = a.anomalib_python
        elif not available(name):
            print(f"{name:14s} not installed, skipped")
            continue
        p = subprocess.run(
            [exe, __file__, "--_child", name, str(pm), str(pa)],
            capture_output=True,
            text=True,
        )
        if p.returncode:
            print(f"{name:14s} FAILED: {p.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        res[name] = r
        vals = "  ".join(
            f"{k}={v:.10f}" for k, v in r.items() if k not in ("seconds", "extra_peak_mb")
        )
        print(f"{name:14s} {r['seconds']:7.2f} s  {r['extra_peak_mb']:7.0f} MB  {vals}")
    ex = res.get("xeval exact")
    if ex:
        print("\nratios (contender / xeval exact):")
        for name, r in res.items():
            if name != "xeval exact":
                print(
                    f"  {name:14s} time x{r['seconds'] / ex['seconds']:.1f}   "
                    f"memory x{r['extra_peak_mb'] / max(ex['extra_peak_mb'], 1):.1f}"
                )
        for name, r in res.items():
            for k in ("pixel_auroc", "pixel_aupr", "aupro@0.3"):
                if k in r and name != "xeval exact":
                    print(f"  |{name} - xeval exact| {k}: {abs(r[k] - ex[k]):.2e}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
