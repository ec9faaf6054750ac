"""Speed of RBDC/TBDC over all thresholds against a straightforward per-threshold loop.

Generates a Street-Scene-sized test set (default: 10,000 frames in 20 videos, about
3,000 ground-truth regions in 300 tracks, 50,000 detections -- jittered boxes near the
regions with higher scores, and random false alarms -- every score distinct, so 50,000
thresholds), then times:

- ``xeval``        : :func:`xeval.metrics.tracks.rbdc` + :func:`~xeval.metrics.tracks.tbdc`
                     (and their curves) over all thresholds, "any" and "greedy" matching;
- ``loop any``     : the straightforward algorithm: for each distinct score t, keep the
                     detections with score >= t, match them against the regions of their
                     frames (numpy-vectorised inside each threshold), count detected
                     regions, tracks and false positives;
- ``loop greedy``  : the same with the one-to-one greedy matching at each threshold.

The loops are run on ``--loop-thresholds`` thresholds spread evenly over the sorted
list (all of them with ``--full``); their time is extrapolated linearly to all
thresholds (each threshold costs about the same: the kept set grows, the work with it,
so the even spread averages it) and said to be so. Their curve points are compared with
ours at the same thresholds (exact equality of the counts); with ``--full`` the areas
too.

Usage: ``python bench/bench_rbdc.py [--frames 10000] [--detections 50000] [--full]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def make_data(n_frames: int, n_det: int, n_tracks: int, seed: int = 0):
    """``(gt_regions, detections)`` rows as the functions take them."""
    rng = np.random.default_rng(seed)
    n_videos = 20
    per_video = n_frames // n_videos
    gt = []
    for k in range(n_tracks):
        v = k % n_videos
        length = int(rng.integers(3, 18))
        start = int(rng.integers(0, per_video - length))
        x, y = rng.uniform(0, 600, 2)
        w, h = rng.uniform(20, 80, 2)
        vx, vy = rng.normal(0, 3, 2)
        for t in range(length):
            f = v * per_video + start + t
            gt.append([f, k, x + vx * t, y + vy * t, x + vx * t + w, y + vy * t + h])
    gt = np.array(gt)
    n_near = n_det // 5
    pick = rng.integers(0, len(gt), n_near)
    jit = rng.normal(0, 12, (n_near, 4))
    near = np.column_stack(
        [gt[pick, 0], gt[pick, 2:6] + jit, rng.beta(4, 2, n_near)]
    )  # some miss (IoU < beta) after jitter
    near[:, 3] = np.maximum(near[:, 3], near[:, 1] + 1)
    near[:, 4] = np.maximum(near[:, 4], near[:, 2] + 1)
    n_far = n_det - n_near
    xy = rng.uniform(0, 640, (n_far, 2))
    wh = rng.uniform(10, 90, (n_far, 2))
    far = np.column_stack([rng.integers(0, n_frames, n_far), xy, xy + wh, rng.beta(2, 4, n_far)])
    det = np.concatenate([near, far])
    return gt, det[rng.permutation(len(det))]


def _iou(a, b):
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = (
        (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        - inter
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def loop_counts(gt, det, thresholds, *, alpha=0.1, beta=0.1, matching="any"):
    """The straightforward per-threshold algorithm: ``(fp, regions, tracks)`` counts at
    each threshold of ``thresholds``."""
    order = np.argsort(gt[:, 0], kind="stable")
    gf = gt[order, 0]
    tracks, track_of = np.unique(gt[:, 1], return_inverse=True)
    length = np.bincount(track_of)
    out = []
    for t in thresholds:
        kept = np.flatnonzero(det[:, 5] >= t)
        lo = np.searchsorted(gf, det[kept, 0], "left")
        cnt = np.searchsorted(gf, det[kept, 0], "right") - lo
        d = np.repeat(kept, cnt)
        first = np.repeat(np.cumsum(cnt) - cnt, cnt)
        g = order[np.repeat(lo, cnt) + np.arange(cnt.sum()) - first]
        iou = _iou(det[d, 1:5], gt[g, 2:6])
        ok = iou >= beta
        d, g, iou = d[ok], g[ok], iou[ok]
        if matching == "any":
            hit = np.zeros(len(gt), bool)
            hit[g] = True
            fp = kept.size - np.unique(d).size
        else:
            o = np.lexsort((g, d, -iou, -det[d, 5]))
            used_d, used_g = set(), set()
            for di, gi in zip(d[o].tolist(), g[o].tolist(), strict=True):
                if di not in used_d and gi not in used_g:
                    used_d.add(di)
                    used_g.add(gi)
            hit = np.zeros(len(gt), bool)
            hit[list(used_g)] = True
            fp = kept.size - len(used_d)
        count = np.bincount(track_of, weights=hit, minlength=tracks.size)
        out.append((fp, int(hit.sum()), int(np.sum(count / length >= alpha))))
    return np.array(out)


def area(fpr, rate, fpr_max=1.0):
    fpr = np.concatenate(([0.0], fpr))
    rate = np.concatenate(([0.0], rate))
    j = int(np.searchsorted(fpr, fpr_max, side="right"))
    x, y = list(fpr[:j]), list(rate[:j])
    if j < fpr.size:
        y.append(
            rate[j - 1] + (rate[j] - rate[j - 1]) * (fpr_max - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        )
    else:
        y.append(y[-1])
    x.append(fpr_max)
    x, y = np.array(x), np.array(y)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / fpr_max)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--detections", type=int, default=50_000)
    ap.add_argument("--tracks", type=int, default=300)
    ap.add_argument("--loop-thresholds", type=int, default=400)
    ap.add_argument("--greedy-thresholds", type=int, default=100)
    ap.add_argument("--full", action="store_true", help="run the loops on every threshold")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from xeval.metrics.tracks import rbdc, rbdc_curve, tbdc, tbdc_curve

    gt, det = make_data(a.frames, a.detections, a.tracks)
    n = a.frames
    thr_all = np.unique(det[:, 5])[::-1]
    print(
        f"{n} frames, {len(det)} detections ({thr_all.size} distinct scores), "
        f"{len(gt)} GT regions in {np.unique(gt[:, 1]).size} tracks"
    )
    res: dict = {"frames": n, "detections": len(det), "regions": len(gt)}
    for matching, n_loop in (("any", a.loop_thresholds), ("greedy", a.greedy_thresholds)):
        t0 = time.perf_counter()
        v_r = rbdc(gt, det, n_frames=n, matching=matching)
        v_t = tbdc(gt, det, n_frames=n, matching=matching)
        ours = time.perf_counter() - t0
        fpr, rr, thr = rbdc_curve(gt, det, n_frames=n, matching=matching)
        _, tr, _ = tbdc_curve(gt, det, n_frames=n, matching=matching)
        if a.full:
            idx = np.arange(thr_all.size)
        else:
            idx = np.unique(np.linspace(0, thr_all.size - 1, n_loop).round().astype(int))
        t0 = time.perf_counter()
        counts = loop_counts(gt, det, thr_all[idx], matching=matching)
        loop = time.perf_counter() - t0
        loop_all = loop * thr_all.size / idx.size
        # our curve at the same thresholds (index + 1: our curve starts with (0, 0))
        same = (
            np.array_equal(counts[:, 0] / n, fpr[idx + 1])
            and np.array_equal(counts[:, 1] / len(gt), rr[idx + 1])
            and np.array_equal(counts[:, 2] / np.unique(gt[:, 1]).size, tr[idx + 1])
        )
        line = (
            f"{matching:6s}  xeval rbdc+tbdc {ours:7.3f} s  (rbdc={v_r:.6f} tbdc={v_t:.6f})   "
            f"loop {loop:7.2f} s on {idx.size} thresholds"
        )
        entry = {
            "xeval_s": ours,
            "rbdc": v_r,
            "tbdc": v_t,
            "loop_s": loop,
            "loop_thresholds": int(idx.size),
            "loop_all_s": loop_all,
            "extrapolated": not a.full,
            "same_points": bool(same),
        }
        if a.full:
            lr = area(counts[:, 0] / n, counts[:, 1] / len(gt))
            lt = area(counts[:, 0] / n, counts[:, 2] / np.unique(gt[:, 1]).size)
            entry.update(loop_rbdc=lr, loop_tbdc=lt)
            line += f" (|diff| rbdc {abs(lr - v_r):.1e}, tbdc {abs(lt - v_t):.1e})"
        else:
            line += f" -> {loop_all:8.1f} s for all {thr_all.size} (extrapolated)"
        print(line)
        print(
            f"        same curve points at the loop's thresholds: {same}; "
            f"ratio loop / xeval = {loop_all / ours:,.0f}x"
        )
        res[matching] = entry
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
