"""Build ``fixtures/aupimo_anomalib.npz``: anomalib's AUPIMO on deterministic synthetic maps.

Not a test (pytest does not collect it); run it by hand in an environment where
anomalib is installed, e.g. a separate virtualenv::

    python3 -m venv /tmp/anomalib-venv && . /tmp/anomalib-venv/bin/activate
    pip install anomalib==2.7.0   # pulls torch (with CUDA libraries; the CPU suffices)
    python tests/metrics/make_aupimo_fixture.py

The stored fixture was made with anomalib 2.7.0 and torch 2.14.1 (CPU).

The maps are not stored: :func:`synthetic_set` regenerates them from the stored
parameters with numpy only (the test imports it). The file keeps the parameters,
anomalib's per-image AUPIMO, the image classes, the number of integration points and
the anomalib / torch versions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "aupimo_anomalib.npz"

PARAMS = {
    "seed": 20240607,
    "n_normal": 30,
    "n_anomalous": 12,
    "height": 128,
    "width": 128,
}
FPR_BOUNDS = (1e-5, 1e-4)
NUM_THRESHOLDS = 300_000


def _smooth(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter by shifted sums (elementwise operations only, so the
    result does not depend on FFT or BLAS implementations); ``noise`` is padded by
    ``r = ceil(3 sigma)`` on each side and the output is ``2 r`` smaller per axis."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = noise.shape[0] - 2 * r, noise.shape[1] - 2 * r
    rows = np.zeros((h, noise.shape[1]))
    for i, kv in enumerate(k):
        rows += kv * noise[i : i + h]
    out = np.zeros((h, w))
    for j, kv in enumerate(k):
        out += kv * rows[:, j : j + w]
    return out


def synthetic_set(
    seed: int, n_normal: int, n_anomalous: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(masks (N, H, W) bool, maps (N, H, W) float32)``, normal and anomalous images
    in a seeded random order.

    Every map is a smooth random field (Gaussian-filtered white noise, unit variance)
    plus a little white noise; an anomalous image has one or two elliptic defects
    (its mask) and a Gaussian bump over each, of amplitudes spread from faint to
    strong so that the per-image AUPIMO ranges from about 0 to 1.
    """
    rng = np.random.default_rng(seed)
    n = n_normal + n_anomalous
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    masks = np.zeros((n, height, width), dtype=bool)
    maps = np.zeros((n, height, width), dtype=np.float32)
    order = rng.permutation(n)  # order[i] < n_normal: image i is normal
    amplitudes = np.linspace(2.0, 7.0, n_anomalous)
    for i in range(n):
        sigma = 2.0
        r = int(np.ceil(3 * sigma))
        field = _smooth(rng.standard_normal((height + 2 * r, width + 2 * r)), sigma)
        field /= field.std()
        field += 0.3 * rng.standard_normal((height, width))
        j = int(order[i]) - n_normal
        if j >= 0:
            for _ in range(int(rng.integers(1, 3))):
                cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
                ry, rx = rng.uniform(0.04, 0.15, 2) * np.array([height, width])
                d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
                masks[i] |= d2 <= 1.0
                field += amplitudes[j] * np.exp(-0.5 * d2 / 1.5**2) * rng.uniform(0.8, 1.2)
        maps[i] = field.astype(np.float32)
    return masks, maps


def main() -> None:
    import anomalib
    import torch
    from anomalib.metrics.pimo.functional import aupimo_scores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=FIXTURE)
    args = ap.parse_args()
    masks, maps = synthetic_set(**PARAMS)
    _, _, _, classes, aupimos, npts = aupimo_scores(
        torch.from_numpy(maps),
        torch.from_numpy(masks),
        num_thresholds=NUM_THRESHOLDS,
        fpr_bounds=FPR_BOUNDS,
        force=False,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        **{k: np.int64(v) for k, v in PARAMS.items()},
        fpr_bounds=np.array(FPR_BOUNDS),
        num_thresholds=np.int64(NUM_THRESHOLDS),
        maps_sum=np.float64(maps.astype(np.float64).sum()),
        image_classes=classes.numpy().astype(np.int8),
        aupimos=aupimos.numpy().astype(np.float64),
        num_points_integral=np.int64(npts),
        anomalib_version=np.str_(anomalib.__version__),
        torch_version=np.str_(torch.__version__),
    )
    a = aupimos.numpy()
    print(
        f"wrote {args.out}: anomalib {anomalib.__version__}, {int(classes.sum())} anomalous "
        f"images, mean AUPIMO {np.nanmean(a):.6f}, {npts} integration points"
    )


if __name__ == "__main__":
    main()
