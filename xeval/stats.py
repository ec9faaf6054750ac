"""Statistics over images: percentile bootstrap confidence intervals (seeded)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def bootstrap_auroc_ci(
    labels, scores, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the AUROC over image resamples (stratified: the numbers of normal
    and anomalous images are kept, so every resample has both classes)."""
    y = np.asarray(labels, bool)
    s = np.asarray(scores, float)
    pos, neg = s[y], s[~y]
    if n_boot <= 0 or pos.size == 0 or neg.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    p = pos[rng.integers(0, pos.size, (n_boot, pos.size))]
    n = neg[rng.integers(0, neg.size, (n_boot, neg.size))]
    r = rankdata(np.concatenate([p, n], axis=1), axis=1)  # midranks: ties count 1/2
    u = r[:, : pos.size].sum(axis=1) - pos.size * (pos.size + 1) / 2
    auc = u / (pos.size * neg.size)
    a = (1 - level) / 2
    return float(np.quantile(auc, a)), float(np.quantile(auc, 1 - a))


def bootstrap_mean_ci(
    values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean of per-image values (NaN values excluded)."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if n_boot <= 0 or v.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))
