"""Benchmark of the example-importance methods (not a test).

The built-in ``ConvAutoencoder`` is trained (with TracIn checkpoints) on the normal
training images of one ``textures`` category (the built-in benchmark, built in the
cache on first use; ``--synthetic`` uses random images instead). For every method of
``xeval.influence`` and, beside it, captum's classes called directly on the same model,
checkpoints and images:

- time per test sample (``influence``: the ``(n_test, n_train)`` matrix time / n_test,
  fixed costs such as the Hessian's eigenpairs included) and per training sample
  (``self_influence`` time / n_train); the fastest of ``--repeats`` calls;
- peak memory: the peak RSS during the call minus the RSS before it, each case in a
  fresh subprocess (Linux ``/proc/self/clear_refs`` resets the peak; elsewhere the
  process's ``ru_maxrss`` is used);
- agreement where the definitions coincide: TracIn = captum ``TracInCP``;
  ``influence_function`` (exact, ``centre=False``, damping ``r/n``, one layer) =
  captum ``NaiveInfluenceFunction`` (``hessian_reg=r``, same layer); ``representation``
  top-k = captum ``SimilarityInfluence``; Arnoldi against captum's
  ``ArnoldiInfluenceFunction`` (different start vectors and projections: correlation);
- ratios ours / captum.

captum's ``TracInCPFast`` / ``TracInCPFastRandProj`` do not apply: they need a final
fully-connected layer whose output feeds the loss, and the autoencoder's score is a
reconstruction error after a convolution and a sigmoid.

Run: ``python bench/bench_influence.py [--n-train 24] [--n-test 4] [--size 32]
[--width 8] [--epochs 6] [--threads 1] [--repeats 1]`` (prints a table; ``--json PATH`` writes it).
Temporary files (checkpoints for captum, result arrays) live in a temporary folder that
is removed at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LAYER = "decoder.8"  # the last convolution: small enough for captum's full Hessian
R = 1.0  # captum hessian_reg; ours: damping = R / n_train (captum sums the Hessians)


# ----------------------------------------------------------------------- set-up
def load_images(args) -> tuple[np.ndarray, np.ndarray, str]:
    """``(train, test, description)``: textures normal training images and test images
    (anomalous first), resized to ``size`` by block averaging."""
    if args.synthetic:
        rng = np.random.default_rng(0)
        train = rng.uniform(0.2, 0.8, (args.n_train, 3, args.size, args.size))
        test = rng.uniform(0.2, 0.8, (args.n_test, 3, args.size, args.size))
        return train.astype(np.float32), test.astype(np.float32), "synthetic uniform"
    from xeval.data.io import read_image
    from xeval.data.textures import load_textures

    split = load_textures(quick=True, categories=[args.category], n_train=args.n_train)[
        args.category
    ]

    def read(samples):
        x = np.stack([read_image(s.image_path).transpose(2, 0, 1) for s in samples])
        f = x.shape[-1] // args.size
        x = x.reshape(len(x), 3, args.size, f, args.size, f).mean(axis=(3, 5))
        return np.ascontiguousarray(x, dtype=np.float32)

    test = sorted(split.test, key=lambda s: (s.label == 0, s.id))[: args.n_test]
    desc = f"textures quick/{args.category} ({len(split.train)} train, tile 64 -> {args.size})"
    return read(split.train[: args.n_train]), read(test), desc


def make_detector(args, train):
    from xeval.adapters.autoencoder import ConvAutoencoder

    det = ConvAutoencoder(
        input_size=args.size,
        epochs=args.epochs,
        width=args.width,
        bottleneck=4,
        downsample=1,
        batch_size=8,
        augment=False,
        checkpoints=args.checkpoints,
        num_threads=args.threads,
        seed=0,
    )
    return det.fit([train])


class _ScoreNet:
    """captum's view of the detector: ``forward(x) = score`` with the autoencoder as
    the submodule ``ae`` (a deep copy, with gradients on)."""

    @staticmethod
    def build(det):
        import torch
        from torch import nn

        det = copy.deepcopy(det)
        for p in det.model_.parameters():
            p.requires_grad_(True)

        class ScoreNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.ae = det.model_
                self.__dict__["score"] = det.torch_score()

            def forward(self, x):
                return self.score(x)

        class Identity(nn.Module):
            reduction = "none"

            def forward(self, out, y):
                return out

        return ScoreNet(), Identity(), torch


def _captum_common(det, train, folder):
    from torch.utils.data import TensorDataset

    from xeval.adapters._torch import load_checkpoint, save_checkpoint

    model, identity, torch = _ScoreNet.build(det)
    paths = []
    for k, ck in enumerate(det.checkpoints_):
        state = {f"ae.{n}": v for n, v in ck.load().items()}
        paths.append(
            save_checkpoint(os.path.join(folder, f"c{k}.pt"), state=state, lr=ck.lr, epoch=ck.epoch)
        )
    final = {f"ae.{n}": v for n, v in det.model_.state_dict().items()}
    final_path = save_checkpoint(os.path.join(folder, "final.pt"), state=final, lr=1.0, epoch=0)

    def load(m, path):  # weights_only (captum's default loader unpickles)
        ck = load_checkpoint(path)
        m.load_state_dict(ck.state)
        return ck.lr

    ds = TensorDataset(torch.from_numpy(train), torch.zeros(len(train)))
    return model, identity, torch, paths, final_path, load, ds


# ------------------------------------------------------------------------ cases
def case_fns(args):
    """name -> (kind, fn(det, train, test, folder) -> array) ; kind: 'influence' (per
    test sample) or 'self' (per training sample)."""
    import xeval

    n = args.n_train
    arn = dict(solver="arnoldi", arnoldi_dim=args.arnoldi_dim, top_k=args.top_k, damping=R / n)

    def ours(method, self_=False, **kw):
        if self_:
            return "self", lambda det, tr, te, f: xeval.self_influence(det, tr, method=method, **kw)
        return "influence", lambda det, tr, te, f: xeval.influence(det, tr, te, method=method, **kw)

    def captum_tracin(self_=False):
        def fn(det, tr, te, folder):
            from captum.influence import TracInCP

            model, _, torch, paths, _, load, ds = _captum_common(det, tr, folder)
            tc = TracInCP(
                model,
                ds,
                paths,
                checkpoints_load_func=load,
                loss_fn=None,
                batch_size=8,
                sample_wise_grads_per_batch=False,
            )
            if self_:
                return tc.self_influence().numpy()
            return tc.influence((torch.from_numpy(te), torch.zeros(len(te)))).numpy()

        return ("self" if self_ else "influence"), fn

    def captum_naive(det, tr, te, folder):
        from captum.influence import NaiveInfluenceFunction

        model, identity, torch, _, final, load, ds = _captum_common(det, tr, folder)
        p = sum(v.numel() for v in model.ae.get_submodule(LAYER).parameters())
        nf = NaiveInfluenceFunction(
            model,
            ds,
            final,
            checkpoints_load_func=load,
            layers=[f"ae.{LAYER}"],
            loss_fn=identity,
            batch_size=8,
            hessian_reg=R,
            projection_dim=p,
            hessian_inverse_tol=-1e30,
        )
        return nf.influence((torch.from_numpy(te), torch.zeros(len(te)))).numpy()

    def captum_arnoldi(det, tr, te, folder):
        from captum.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction

        model, identity, torch, _, final, load, ds = _captum_common(det, tr, folder)
        af = ArnoldiInfluenceFunction(
            model,
            ds,
            final,
            checkpoints_load_func=load,
            loss_fn=identity,
            batch_size=8,
            hessian_reg=R,
            arnoldi_dim=args.arnoldi_dim,
            projection_dim=args.top_k,
            arnoldi_tol=1e-12,  # absolute in captum (default 0.1 > this Hessian's scale)
            seed=0,
        )
        return af.influence((torch.from_numpy(te), torch.zeros(len(te)))).numpy()

    def captum_similarity(det, tr, te, folder):
        from captum.influence import SimilarityInfluence

        model, _, torch, *_ = _captum_common(det, tr, folder)
        # two layers (captum 0.9 mis-wraps a single one); batch_size divides n_train
        bs = max(b for b in range(1, 9) if len(tr) % b == 0)
        sim = SimilarityInfluence(
            model,
            ["ae.encoder", "ae.decoder"],
            torch.from_numpy(tr),
            os.path.join(folder, "av"),
            batch_size=bs,
        )
        idx, val = sim.influence(torch.from_numpy(te), top_k=min(bs, 5))["ae.encoder"]
        return np.stack([idx.numpy().astype(float), val.numpy()])

    return {
        "grad_dot": ours("grad_dot"),
        "grad_cos": ours("grad_cos"),
        "knn": ours("knn"),
        "representation": ours("representation"),
        "captum SimilarityInfluence": ("influence", captum_similarity),
        "tracin": ours("tracin"),
        "captum TracInCP": captum_tracin(),
        f"tracin projection_dim={args.proj}": ours("tracin", projection_dim=args.proj),
        f"tracin count_sketch {args.proj}": ours(
            "tracin", projection_dim=args.proj, projection="count_sketch"
        ),
        "tracin self": ours("tracin", self_=True),
        "captum TracInCP self": captum_tracin(self_=True),
        f"influence_function exact [{LAYER}]": ours(
            "influence_function", solver="exact", layers=[LAYER], centre=False, damping=R / n
        ),
        f"captum NaiveInfluenceFunction [{LAYER}]": ("influence", captum_naive),
        "influence_function arnoldi": ours("influence_function", centre=False, **arn),
        "captum ArnoldiInfluenceFunction": ("influence", captum_arnoldi),
        "influence_function arnoldi self": ours("influence_function", self_=True, **arn),
        "label_free (tracin)": ours("label_free", base="tracin"),
    }


PAIRS = [  # (ours, captum, how they are compared)
    ("tracin", "captum TracInCP", "equal"),
    ("tracin self", "captum TracInCP self", "equal"),
    ("influence_function exact [{layer}]", "captum NaiveInfluenceFunction [{layer}]", "equal"),
    ("influence_function arnoldi", "captum ArnoldiInfluenceFunction", "correlation"),
    ("representation", "captum SimilarityInfluence", "top-k"),
    ("tracin projection_dim={proj}", "tracin", "correlation"),
    ("tracin count_sketch {proj}", "tracin", "correlation"),
]


# ---------------------------------------------------------------- measurement
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1])
    raise KeyError(key)


def run_case(args, name: str, out_npy: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    train, test, _ = load_images(args)
    det = make_detector(args, train)
    kind, fn = case_fns(args)[name]
    folder = os.path.dirname(out_npy)
    linux = os.path.exists("/proc/self/clear_refs")
    if linux:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS
        before = _status_kib("VmHWM:")
    else:  # pragma: no cover
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = fn(det, train, test, folder)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM:") if linux else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(out_npy, np.asarray(result, dtype=np.float64), allow_pickle=False)
    per = args.n_test if kind == "influence" else args.n_train
    return {
        "case": name,
        "kind": kind,
        "seconds": seconds,
        "per_sample_ms": 1000 * seconds / per,
        "peak_mib": (peak - before) / 1024,
        "n_params": sum(p.numel() for p in det.torch_module().parameters()),
    }


def compare(how: str, a: np.ndarray, b: np.ndarray) -> str:
    if how == "equal":
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
        return f"max |ours - captum| / max |captum| = {err:.2e}"
    if how == "correlation":
        r = [np.corrcoef(a[i], b[i])[0, 1] for i in range(len(a))]
        return f"Pearson per test image: min {min(r):.3f}, mean {np.mean(r):.3f}"
    idx, val = b  # captum top-k (indices, values)
    idx = idx.astype(int)
    k = idx.shape[1]
    ours_idx = np.argsort(-a, axis=1, kind="stable")[:, :k]
    same = ours_idx == idx
    # a different index is a tie when our value at captum's index equals ours there
    tie = np.abs(np.take_along_axis(a, idx, 1) - np.take_along_axis(a, ours_idx, 1)) <= 1e-6
    err = np.abs(-np.sort(-a, axis=1)[:, :k] - val).max()
    return (
        f"top-{k} indices equal: {same.mean():.0%} ({(same | tie).mean():.0%} counting ties "
        f"within 1e-6), max |value diff| {err:.1e}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--category", default="brick")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--proj", type=int, default=256)
    ap.add_argument("--arnoldi-dim", type=int, default=20)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--cases", default=None, help="comma-separated substrings of case names")
    ap.add_argument("--repeats", type=int, default=1, help="time: the fastest of these")
    ap.add_argument("--json", default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case is not None:  # a child process: one case
        print(json.dumps(run_case(args, args.case, args.out)))
        return

    names = list(case_fns(args))
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",")]
        names = [n for n in names if any(w in n for w in wanted)]
    train, test, desc = load_images(args)
    print(
        f"data: {desc}; {args.n_train} train, {args.n_test} test, {args.size}px; "
        f"ConvAutoencoder width={args.width}, {args.epochs} epochs, "
        f"{args.checkpoints} checkpoints; torch threads {args.threads}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rows, results = [], {}
    child_args = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k not in ("json", "case", "out", "synthetic", "cases") and v is not None
    ] + (["--synthetic"] if args.synthetic else [])
    with tempfile.TemporaryDirectory(prefix="xeval-bench-influence-") as tmp:
        for i, name in enumerate(names):
            out = os.path.join(tmp, f"case{i}", "result.npy")
            os.makedirs(os.path.dirname(out))
            proc = subprocess.run(
                [sys.executable, __file__, *child_args, "--case", name, "--out", out],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(f"{name}: FAILED\n{proc.stderr[-2000:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            results[name] = np.load(out, allow_pickle=False)
    n_params = rows[0]["n_params"] if rows else "?"
    print(f"parameters: {n_params}\n")
    print(f"{'case':44s} {'per sample':>12s} {'peak RSS':>10s}")
    for r in rows:
        unit = "test" if r["kind"] == "influence" else "train"
        print(f"{r['case']:44s} {r['per_sample_ms']:9.1f} ms/{unit:5s} {r['peak_mib']:7.1f} MiB")
    print("\nours vs captum (where the definitions coincide):")
    by = {r["case"]: r for r in rows}
    fmt = {"layer": LAYER, "proj": args.proj}
    comparisons = []
    for a, b, how in PAIRS:
        a, b = a.format(**fmt), b.format(**fmt)
        if a in results and b in results:
            text = compare(how, results[a], results[b])
            ratio = by[a]["seconds"] / by[b]["seconds"]
            print(
                f"  {a} vs {b}: {text}; time ratio ours/theirs {ratio:.2f}, "
                f"peak memory ratio {by[a]['peak_mib'] / max(by[b]['peak_mib'], 1e-9):.2f}"
            )
            comparisons.append({"ours": a, "captum": b, "agreement": text, "time_ratio": ratio})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"data": desc, "cases": rows, "comparisons": comparisons}, fh, indent=1)


if __name__ == "__main__":
    main()
