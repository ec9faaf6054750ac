"""Slow, obviously-correct implementations of the definitions, for tests only."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def naive_aupro(masks, maps, limit):
    """Per distinct threshold, brute force: FPR over GT-free pixels, PRO over regions."""
    regions = []
    neg_scores = []
    for m, a in zip(masks, maps, strict=True):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        for k in range(1, n + 1):
            regions.append(a[lab == k])
        neg_scores.append(a[~m.astype(bool)])
    neg = np.concatenate(neg_scores)
    allv = np.concatenate([a.ravel() for a in maps])
    xs, ys = [0.0], [0.0]
    for t in np.unique(allv)[::-1]:
        xs.append(min(np.mean(neg >= t), 1.0))
        ys.append(min(np.mean([np.mean(r >= t) for r in regions]), 1.0))
    xs.append(1.0)
    ys.append(1.0)
    x, y = np.array(xs), np.array(ys)
    area = 0.0
    for i in range(len(x) - 1):
        x0, x1, y0, y1 = x[i], x[i + 1], y[i], y[i + 1]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit
