"""``xeval score`` end to end (decoding included) in one process vs on Dask workers.

Writes once (seeded) 1725 anomaly maps of 256×256 as float32 TIFF in MVTec AD layout,
15 categories of 115 test images (about a quarter normal), with their ground truth
(PNG masks and grey PNG test images): the maps and masks of
``bench_pixel_metrics.make_data`` (smooth background, elevated blobs over irregular
defects). Then runs each contender as its own command in a fresh process tree:

- ``xeval score`` (exact / binned) in one process, and with ``--workers 2`` (a Dask
  LocalCluster of 2 worker processes; ``--chunk-size`` is the library default, 64);
- the MVTec AD evaluation algorithm on the same files (AUPRO@0.3 by an argsort of all
  pixels of a category, ``bench_pixel_metrics.naive_aupro``; image AUROC from the map
  maxima with scikit-learn), the files decoded as xeval decodes them (``read_map``,
  ``read_mask``), one category at a time as the MVTec script does.

Reported: wall time of the command (interpreter start, imports, cluster start and
shutdown included), peak resident memory (``VmHWM``) of the client and of each other
process of the tree (the Dask workers), and whether the values of the worker runs are
identical (``==``) to those of one process.

Usage: ``python bench/bench_score_workers.py [--data DIR] [--n-images 1725] [--size 256]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XEVAL_BENCH_DIR", "/tmp/xeval-bench"))
N_CATS = 15


def write_tree(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """``(maps, gt)`` folders in MVTec layout; written once (a ``done`` file marks it)."""
    maps, gt = root / "maps", root / "gt"
    if (root / "done").exists():
        return maps, gt
    import tifffile
    from PIL import Image

    sys.path.insert(0, str(HERE))
    from bench_pixel_metrics import make_data

    pm, pa = make_data(n, size, seed)
    masks, amaps = np.load(pm), np.load(pa, mmap_mode="r")
    grey = Image.fromarray(np.full((size, size), 128, np.uint8))
    per = -(-n // N_CATS)
    for i in range(n):
        cat, k = f"cat{i // per:02d}", i % per
        defect = "defect" if masks[i].any() else "good"
        stem = f"{k:03d}"
        for d in (gt / cat / "test" / defect, maps / cat / "test" / defect):
            d.mkdir(parents=True, exist_ok=True)
        grey.save(gt / cat / "test" / defect / f"{stem}.png")
        tifffile.imwrite(maps / cat / "test" / defect / f"{stem}.tiff", np.asarray(amaps[i]))
        if defect != "good":
            g = gt / cat / "ground_truth" / defect
            g.mkdir(parents=True, exist_ok=True)
            Image.fromarray(masks[i].astype(np.uint8) * 255).save(g / f"{stem}_mask.png")
    (root / "done").write_text("ok\n")
    return maps, gt


def _hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _tree(pid: int) -> list[int]:
    """``pid``'s descendants (from /proc; no extra dependency)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; wall time and the peak RSS (VmHWM, polled) of every process of its
    tree: the client and the other big processes (Dask workers)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, float] = {}
    names: dict[int, str] = {}
    while proc.poll() is None:
        for p in [proc.pid, *_tree(proc.pid)]:
            h = _hwm_mb(p)
            if h is not None:
                peaks[p] = max(peaks.get(p, 0.0), h)
                names.setdefault(p, _cmdline(p))
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    client = peaks.pop(proc.pid, float("nan"))
    workers = sorted(
        (v for p, v in peaks.items() if "resource_tracker" not in names[p] and v > 60),
        reverse=True,
    )
    return {"wall_s": wall, "client_mb": client, "worker_mb": workers}


def mvtec_algorithm(maps: Path, gt: Path, out: Path) -> None:
    """The MVTec evaluation algorithm on the files, one category at a time."""
    sys.path.insert(0, str(HERE))
    from bench_pixel_metrics import naive_aupro
    from sklearn.metrics import roc_auc_score

    from xeval.data.io import read_map, read_mask

    res = {}
    for cat in sorted(p.name for p in gt.iterdir()):
        masks, amaps, labels = [], [], []
        for f in sorted((maps / cat / "test").glob("*/*.tiff")):
            defect = f.parent.name
            amaps.append(read_map(f))
            labels.append(int(defect != "good"))
            mf = gt / cat / "ground_truth" / defect / f"{f.stem}_mask.png"
            masks.append(read_mask(mf) if labels[-1] else np.zeros(amaps[-1].shape, bool))
        m, a = np.stack(masks), np.stack(amaps)
        res[cat] = {
            "aupro@0.3": naive_aupro(m, a, 0.3),
            "image_auroc": float(roc_auc_score(labels, a.reshape(len(a), -1).max(axis=1))),
        }
    out.write_text(json.dumps(res))


def _import_score() -> None:
    import xeval.engine.score  # noqa: F401


def warm_score(mode: str, workers: int, maps: Path, gt: Path, out: Path) -> None:
    """Time ``score_folder`` alone, after the imports (and, for ``workers``, the cluster
    start and the workers' imports): the scoring itself, without the fixed costs."""
    from xeval.engine.executor import DaskExecutor
    from xeval.engine.score import score_folder

    ex = DaskExecutor(workers=workers) if workers else None
    try:
        if ex is not None:
            ex.client.run(_import_score)
        t0 = time.perf_counter()
        df = score_folder(maps, gt, mode=mode, executor=ex)
        wall = time.perf_counter() - t0
        info = ex.overhead() if ex is not None else {}
    finally:
        if ex is not None:
            ex.close()
    out.write_text(
        json.dumps(
            {
                "wall_s": wall,
                "values": df.drop(columns=["note"]).to_dict(orient="list"),
                "worker_peak_mb": sorted(info.get("peak_rss_mb_per_worker", {}).values()),
                "mean_overhead_s": info.get("mean_overhead_s"),
                "mean_worker_s": info.get("mean_worker_s"),
                "n_units": len(info.get("units", {})),
            }
        )
    )


def _same(a: dict, b: dict) -> bool:
    """Identical JSON records (``==``; NaN equals NaN)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return None if isinstance(x, float) and x != x else x

    return clean(a) == clean(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="folder for the files (kept)")
    ap.add_argument("--n-images", type=int, default=1725)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mvtec-only", nargs=3, metavar=("MAPS", "GT", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--warm-only", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument(
        "--tables",
        choices=("cli", "warm", "both"),
        default="both",
        help="the end-to-end commands (cli), score_folder alone (warm), or both",
    )
    a = ap.parse_args()
    if a.mvtec_only:
        mvtec_algorithm(*(Path(x) for x in a.mvtec_only))
        return
    if a.warm_only:
        mode, workers, *paths = a.warm_only
        warm_score(mode, int(workers), *(Path(x) for x in paths))
        return
    root = a.data or CACHE / f"score_tiff_{a.n_images}_{a.size}"
    t0 = time.perf_counter()
    maps, gt = write_tree(root, a.n_images, a.size)
    print(f"data: {root} ({time.perf_counter() - t0:.1f} s to write or find)")
    if a.tables in ("cli", "both"):
        cli_table(root, maps, gt, a.workers, a.n_images, a.size)
    if a.tables in ("warm", "both"):
        warm_table(root, maps, gt, a.workers)


def cli_table(root: Path, maps: Path, gt: Path, workers_n: int, n: int, size: int) -> None:
    """First table: each contender as a command, end to end."""
    xeval = [sys.executable, "-m", "xeval", "score", "--maps", str(maps), "--gt", str(gt)]
    runs = {}
    for mode in ("exact", "binned"):
        for workers in (None, workers_n):
            name = f"xeval score {mode}" + (f" --workers {workers}" if workers else "")
            js = root / f"out_{mode}_{workers or 1}.json"
            cmd = [*xeval, "--mode", mode, "--json", str(js)]
            if workers:
                cmd += ["--workers", str(workers)]
            runs[name] = measure(cmd) | {"json": js}
            print(f"  {name}: {runs[name]['wall_s']:.1f} s", flush=True)
    js = root / "out_mvtec.json"
    runs["MVTec algorithm"] = measure(
        [sys.executable, __file__, "--mvtec-only", str(maps), str(gt), str(js)]
    ) | {"json": js}
    vals = {k: json.loads(r["json"].read_text()) for k, r in runs.items()}

    print(
        f"\n{n} maps of {size}x{size} (TIFF), {N_CATS} categories, {os.cpu_count()} cores "
        f"(load average over the last minute: {os.getloadavg()[0]:.1f})\n"
    )
    print("| contender | wall s | vs 1 process | client peak MB | worker peak MB | values |")
    print("|---|---|---|---|---|---|")
    for name, r in runs.items():
        mode = "binned" if "binned" in name else "exact"
        base = runs[f"xeval score {mode}"]["wall_s"]
        if name.startswith("xeval") and "--workers" in name:
            same = _same(vals[name], vals[f"xeval score {mode}"])
            note = "identical to 1 process" if same else "DIFFERENT from 1 process"
        elif name.startswith("xeval"):
            note = "—"
        else:
            ref = vals["xeval score exact"]
            d_pro = max(abs(v["aupro@0.3"] - ref[c]["aupro@0.3"]) for c, v in vals[name].items())
            d_img = max(
                abs(v["image_auroc"] - ref[c]["image_auroc"]) for c, v in vals[name].items()
            )
            note = f"vs xeval exact: AUPRO@0.3 ±{d_pro:.1e}, image AUROC ±{d_img:.1e}"
        workers = ", ".join(f"{w:.0f}" for w in r["worker_mb"]) or "—"
        ratio = (
            r["wall_s"] / base
            if name.startswith("xeval")
            else r["wall_s"] / runs["xeval score exact"]["wall_s"]
        )
        print(
            f"| {name} | {r['wall_s']:.1f} | ×{ratio:.2f} | {r['client_mb']:.0f} | "
            f"{workers} | {note} |"
        )


def warm_table(root: Path, maps: Path, gt: Path, workers: int) -> None:
    """Second table: ``score_folder`` alone (imports, cluster start and shutdown left out)."""
    print("\nscore_folder alone (after imports; cluster started and its workers warm):\n")
    print(
        "| mode | workers | wall s | vs 1 process | client peak MB | worker peak MB | "
        "mean overhead per chunk | values |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("exact", "binned"):
        res = {}
        for w in (0, workers):
            js = root / f"warm_{mode}_{w}.json"
            r = measure(
                [sys.executable, __file__, "--warm-only", mode, str(w), str(maps), str(gt), str(js)]
            )
            res[w] = r | json.loads(js.read_text())
        for w, r in res.items():
            same = _same(r["values"], res[0]["values"])
            ovh = r["mean_overhead_s"]
            ovh = "—" if ovh is None else f"{ovh * 1000:.0f} ms ({r['n_units']} chunks)"
            peaks = ", ".join(f"{x:.0f}" for x in r["worker_peak_mb"]) or "—"
            print(
                f"| {mode} | {w or 'in-process'} | {r['wall_s']:.1f} | "
                f"×{r['wall_s'] / res[0]['wall_s']:.2f} | {r['client_mb']:.0f} | {peaks} | "
                f"{ovh} | {'identical' if same else 'DIFFERENT'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
