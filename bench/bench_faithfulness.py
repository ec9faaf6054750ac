"""Benchmark of xeval's deletion / region-perturbation metrics against Quantus (not a test).

Same inputs for every contender: a small conv autoencoder detector
(:class:`xeval.adapters.ConvAutoencoder`, trained briefly on smooth synthetic
textures), ``--n-images`` anomalous images of ``--size``² with bright blob defects, and
the detector's own anomaly map (plus 1e-6 noise, so that no two pixels tie) as the
explanation. Removed pixels are replaced by the **mean normal image** in both libraries
(xeval ``substrate="normal"``; Quantus through a custom ``perturb_func``), with the same
number of steps.

Rows:

- ``xeval deletion``          : :func:`xeval.metrics.deletion_curve`, pixels, ``--steps``
- ``Quantus PixelFlipping``   : ``features_in_step = H * W / steps`` (grey images: see
                                :func:`make_data` for why not RGB)
- ``xeval patches``           : :func:`xeval.metrics.deletion_curve` with
                                ``patch_size=--patch`` (the raw curve gives AOPC)
- ``Quantus RegionPerturbation``: ``patch_size=--patch``, ``regions_evaluation`` = all
                                patches, ``order="morf"``
- ``xeval deletion (road)``   : for information, ROAD's sparse solves per perturbed image
- ``Quantus ... softmax=True``: Quantus' default on a single-output model, to show the
                                pitfall: softmax over one logit is always 1 -> flat curve

How Quantus is made to work on a single-output anomaly detector:

1. Quantus expects a classifier ``(B, n_classes)`` and indexes it with ``y_batch``.
   :class:`ScoreAsLogit` wraps the detector's differentiable score
   (``detector.torch_score()``, ``(B, C, H, W) -> (B,)``) in an ``nn.Module`` that
   returns ``(B, 1)``; ``y_batch`` is all zeros (target 0).
2. ``softmax=False`` in every ``__call__``: with Quantus' default ``softmax=True`` the
   one-column output becomes ``softmax([s]) = 1`` for every input (flat curves).
3. ``normalise=False, abs=False``: Quantus' default normalisation divides by a max
   (order-preserving here, but we keep the raw map), and ``abs`` would change the order
   of signed maps.
4. ``perturb_func=replace_by_reference``: Quantus' built-in baselines are black,
   uniform, mean of the image, ... ; none is "a normal reference image", so a custom
   perturbation writes the reference's values at the perturbed indices.
5. Quantus' PixelFlipping curve has ``steps`` points (after each step) and no point for
   the intact image; RegionPerturbation returns ``s(x) - s(x_k)``; xeval's raw scores
   ``scores[:, 1:]`` and ``scores[:, :1] - scores[:, 1:]`` are compared with them.

Usage: ``python bench/bench_faithfulness.py [--n-images 32] [--size 64] [--steps 16]``
(Quantus must be installed: ``pip install quantus``; it is optional for xeval).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xeval.adapters.autoencoder import ConvAutoencoder  # noqa: E402
from xeval.metrics import deletion_curve  # noqa: E402


def make_data(n: int, size: int, seed: int = 0):
    """Smooth grey textures (normal training set) and anomalous test images with blobs.

    One channel (the detector repeats it to three): Quantus' PixelFlipping requires
    ``features_in_step`` to divide ``H * W`` but counts ``C * H * W`` features, so on RGB
    its steps cannot remove whole pixels in ``steps`` equal steps (with 16 steps on
    64x64x3 it asks for 768 | 4096).
    """
    rng = np.random.default_rng(seed)

    def textures(k: int) -> np.ndarray:
        noise = rng.normal(size=(k, 1, size, size))
        smooth = ndimage.gaussian_filter(noise, sigma=(0, 0, 3, 3))
        return (0.5 + 0.15 * smooth / smooth.std()).clip(0, 1).astype(np.float32)

    train = textures(64)
    test = textures(n)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        r = rng.uniform(0.05, 0.12) * size
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        test[i] = (test[i] + 0.6 * blob).clip(0, 1)
    return train, test


class ScoreAsLogit(torch.nn.Module):
    """``(B, C, H, W) -> (B, 1)``: the detector's score as the single 'class' logit."""

    def __init__(self, score_fn, counter: list[int]) -> None:
        super().__init__()
        self.score_fn = score_fn
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.counter[0] += 1
        return self.score_fn(x).unsqueeze(1)


class CountingDetector:
    """Delegates ``score`` to a detector and counts the calls."""

    def __init__(self, det) -> None:
        self.det = det
        self.calls = 0

    def score(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.det.score(x)


def make_replace_by_reference(ref_flat: np.ndarray):
    def replace_by_reference(arr: np.ndarray, indices: np.ndarray, **kwargs) -> np.ndarray:
        out = arr.copy()
        out[np.arange(len(arr))[:, None], indices] = ref_flat[indices]
        return out

    return replace_by_reference


REPEATS = [3]


def timed(fn):
    """Best wall time of ``REPEATS[0]`` runs (the first one warms torch up)."""
    best = float("inf")
    for _ in range(REPEATS[0]):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    REPEATS[0] = max(1, args.repeats)
    torch.set_num_threads(args.threads)
    n, size, steps, p = args.n_images, args.size, args.steps, args.patch

    train, images = make_data(n, size)
    det = ConvAutoencoder(input_size=size, epochs=args.epochs, width=16, batch_size=32, seed=0)
    det.fit([train])
    ref = train.mean(axis=0)
    _, maps = det.predict(images)
    attr = maps.astype(np.float64) + 1e-6 * np.random.default_rng(1).random(maps.shape)
    c = images.shape[1]
    n_patches = (size // p) ** 2
    rows = []

    def xeval_row(name: str, **kw):
        cd = CountingDetector(det)

        def run():
            cd.calls = 0
            return deletion_curve(
                cd, images, attr, reference=train, batch_size=args.batch_size, **kw
            )

        curve, t = timed(run)
        rows.append({"name": name, "time": t, "calls": cd.calls, "curve": curve})
        return curve

    d_pix = xeval_row("xeval deletion", steps=steps)
    d_patch = xeval_row(f"xeval patches {p}x{p}", steps=n_patches, patch_size=p)

    try:
        import quantus
    except ImportError:
        quantus = None
        print("quantus not installed: only xeval rows (pip install quantus)")

    if quantus is not None:
        counter = [0]
        model = ScoreAsLogit(det.torch_score(), counter).eval()
        y = np.zeros(n, dtype=np.int64)
        a_q = attr[:, None].astype(np.float32)  # (B, 1, H, W), broadcast over channels
        perturb = make_replace_by_reference(ref.reshape(-1).astype(np.float32))
        q_common = {
            "normalise": False,
            "abs": False,
            "perturb_func": perturb,
            "disable_warnings": True,
            "display_progressbar": False,
        }
        pf_step = c * size * size // steps

        def q_call(metric, softmax: bool):
            def run():
                counter[0] = 0
                return metric(
                    model=model,
                    x_batch=images,
                    y_batch=y,
                    a_batch=a_q,
                    softmax=softmax,
                    device="cpu",
                    batch_size=args.batch_size,
                )

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out, t = timed(run)
            return np.asarray(out, dtype=np.float64), t, counter[0]

        pf = quantus.PixelFlipping(features_in_step=pf_step, **q_common)
        q_pf, t, calls = q_call(pf, softmax=False)
        diff = np.abs(q_pf - d_pix.scores[:, 1:]).max()
        rows.append({"name": "Quantus PixelFlipping", "time": t, "calls": calls, "diff": diff})

        rp = quantus.RegionPerturbation(
            patch_size=p, regions_evaluation=n_patches, order="morf", **q_common
        )
        q_rp, t, calls = q_call(rp, softmax=False)
        drops = d_patch.scores[:, :1] - d_patch.scores[:, 1:]
        diff = np.abs(q_rp - drops).max()
        rows.append(
            {"name": f"Quantus RegionPerturbation {p}x{p}", "time": t, "calls": calls, "diff": diff}
        )
        aopc_q = q_rp.mean(axis=1)  # Quantus' AOPC: mean over k = 1..L
        aopc_x = drops.sum(axis=1) / (n_patches + 1)  # xeval aopc: mean over k = 0..L
        rows[-1]["aopc_check"] = np.abs(aopc_x * (n_patches + 1) / n_patches - aopc_q).max()

        pf_soft = quantus.PixelFlipping(features_in_step=pf_step, **q_common)
        q_soft, t, calls = q_call(pf_soft, softmax=True)
        rows.append(
            {
                "name": "Quantus PixelFlipping softmax=True",
                "time": t,
                "calls": calls,
                "flat": float(np.ptp(q_soft)),
            }
        )

    REPEATS[0] = 1  # ROAD: slow enough to time once
    cd = CountingDetector(det)
    road, t = timed(
        lambda: deletion_curve(
            cd,
            images,
            attr,
            substrate="road",
            reference=train,
            steps=steps,
            batch_size=args.batch_size,
        )
    )
    rows.append({"name": "xeval deletion (road)", "time": t, "calls": cd.calls, "curve": road})

    base = {"xeval deletion": rows[0]["time"], "xeval patches": rows[1]["time"]}
    print(
        f"\n{n} images {c}x{size}x{size}, {steps} steps (pixels) / {n_patches} steps "
        f"(patches {p}x{p}), batch_size {args.batch_size}, torch threads {args.threads}, "
        f"detector {det.name} (AE width 16, {args.epochs} epochs)\n"
    )
    print(f"{'method':42s} {'calls':>6s} {'time s':>8s} {'ratio':>7s}  notes")
    print("-" * 100)
    for r in rows:
        key = "xeval patches" if "atch" in r["name"] or "Region" in r["name"] else "xeval deletion"
        ratio = r["time"] / base[key]
        notes = []
        if "diff" in r:
            notes.append(f"max |diff| vs xeval raw scores = {r['diff']:.2e}")
        if "aopc_check" in r:
            notes.append(f"AOPC (rescaled L+1/L) diff = {r['aopc_check']:.2e}")
        if "flat" in r:
            notes.append(f"curve range = {r['flat']:.1e} (flat: softmax of one logit)")
        if "curve" in r:
            cur = r["curve"]
            notes.append(f"mean AUC = {np.nanmean(cur.auc):.4f}")
        print(f"{r['name']:42s} {r['calls']:6d} {r['time']:8.3f} {ratio:7.2f}  {'; '.join(notes)}")


if __name__ == "__main__":
    main()
