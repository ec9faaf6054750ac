"""`xeval score` in chunk tasks: identical values (``==``, never ``isclose``) for any
chunking, in one process or on a Dask LocalCluster, exact and binned modes; the merge is
a tree in image order; a bad ``chunk_size`` and a corrupt map file are clear errors."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xeval.data import load_mvtec, write_tiny_mvtec
from xeval.engine import score as S
from xeval.engine.executor import DaskExecutor, InProcessExecutor
from xeval.engine.score import (
    SplitFreeBinnedState,
    TreeReduce,
    score_category,
    score_folder,
    tree_merge,
)
from xeval.errors import InputError
from xeval.metrics.pixel import BinnedPixelState, ExactPixelState, PixelRanking

CATS = ("a", "b")
N_TEST = 13  # 3 good + 2 x 5 defective per category


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A tiny MVTec tree with maps that tie across images (rounded to 0.05): every
    merge of region weights and counts of tied scores is exercised."""
    root = tmp_path_factory.mktemp("par")
    gt = write_tiny_mvtec(
        root / "gt",
        categories=CATS,
        n_train=1,
        n_good=3,
        n_defect=5,
        size=(32, 28),
        defects=("scratch", "stain"),
    )
    rng = np.random.default_rng(3)
    for cat in CATS:
        for s in load_mvtec(gt, cat, require_train=False).test:
            d = root / "maps" / cat / "test" / s.defect
            d.mkdir(parents=True, exist_ok=True)
            a = (np.round(rng.random((16, 14)) * 20) / 20).astype(np.float32)
            np.save(d / f"{s.image_path.stem}.npy", a)
    return root / "maps", gt


def _score(tree, **kw) -> pd.DataFrame:
    maps, gt = tree
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score_folder(maps, gt, threshold=0.5, fpr_limits=(0.3, 0.05), **kw)


def _assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same columns, same strings, numbers equal with ``==`` (NaN only where NaN)."""
    assert list(a.columns) == list(b.columns)
    for col in a.columns:
        x, y = a[col].tolist(), b[col].tolist()
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and np.isnan(u):
                assert isinstance(v, float) and np.isnan(v), (col, u, v)
            else:
                assert u == v, (col, u, v)


@pytest.fixture(scope="module")
def reference(tree):
    """One chunk per category (the whole split at once), per mode."""
    return {m: _score(tree, mode=m, chunk_size=10_000) for m in ("exact", "binned")}


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunk=st.integers(1, N_TEST + 2), mode=st.sampled_from(["exact", "binned"]))
def test_any_chunk_size_gives_identical_values(tree, reference, chunk, mode):
    _assert_identical(_score(tree, mode=mode, chunk_size=chunk), reference[mode])


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_chunk_sizes_1_7_64_and_in_process_executor(tree, reference, mode):
    for chunk in (1, 7, 64):
        _assert_identical(_score(tree, mode=mode, chunk_size=chunk), reference[mode])
    with InProcessExecutor() as ex:
        _assert_identical(_score(tree, mode=mode, chunk_size=4, executor=ex), reference[mode])


def test_values_are_those_of_the_metrics_on_all_images(tree, reference):
    """Chunking changes nothing against the metric called on the whole category."""
    maps, gt = tree
    for cat in CATS:
        split = load_mvtec(gt, cat, require_train=False)
        idx = S.index_maps(maps, cat)
        pairs = [S._load_pair(idx.maps[(s.defect, s.image_path.stem)][0], s) for s in split.test]
        pr = PixelRanking(mode="exact", fpr_limits=(0.3, 0.05))
        st_ = pr.update(pr.init(), [m for m, _ in pairs], [a for _, a in pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = pr.compute(st_)
        row = reference["exact"].set_index("category").loc[cat]
        for k in ("pixel_auroc", "pixel_aupr", "aupro@0.3", "aupro@0.05"):
            assert row[k] == want[k], k


# ----------------------------------------------------------------- merge invariants
def _random_images(seed: int, n: int):
    r = np.random.default_rng(seed)
    masks, maps = [], []
    for _ in range(n):
        m = np.zeros((16, 16), bool)
        for _ in range(r.integers(0, 4)):
            y, x = r.integers(0, 14, 2)
            h, w = r.integers(1, 7, 2)
            m[y : y + h, x : x + w] = True
        scale = 10.0 ** r.integers(-3, 3)  # magnitudes that move the binned cut
        masks.append(m)
        maps.append((np.round(r.random((16, 16)), 1) * scale).astype(np.float32))
    return masks, maps


def _split_states(cls, masks, maps, cuts):
    bounds = [0, *sorted(set(cuts)), len(masks)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        s = cls()
        for m, a in zip(masks[lo:hi], maps[lo:hi], strict=True):
            s.update(m, a)
        out.append(s)
    return out


def _binned_values(state) -> tuple:
    """Every value of the binned metric, NaN as None (so that tuples compare with ==)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = PixelRanking(mode="binned", fpr_limits=(0.3, 0.01)).compute(state)
    return tuple((k, None if out[k] != out[k] else out[k]) for k in sorted(out))


def _small(cls):
    """States of few bins (fast to compute); the layout logic is the same."""
    return lambda: cls(bits=9, octaves=12)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 12),
    cuts=st.lists(st.integers(1, 11), max_size=6),
    data=st.data(),
)
def test_split_free_binned_state_any_split_any_bracketing(seed, n, cuts, data):
    """compute(merge of any split, merged in any bracketing) == compute(one pass)."""
    masks, maps = _random_images(seed, n)
    cuts = [c for c in cuts if c < n]
    whole = _small(SplitFreeBinnedState)()
    for m, a in zip(masks, maps, strict=True):
        whole.update(m, a)
    parts = _split_states(_small(SplitFreeBinnedState), masks, maps, cuts)
    while len(parts) > 1:  # merge a random adjacent pair (image order kept)
        i = data.draw(st.integers(0, len(parts) - 2))
        parts[i : i + 2] = [parts[i].merge(parts[i + 1])]
    assert _binned_values(parts[0]) == _binned_values(whole)
    # a pickled (sparse) state is the same state
    back = pickle.loads(pickle.dumps(whole))
    assert _binned_values(back) == _binned_values(whole)
    assert _binned_values(whole.packed().unpacked()) == _binned_values(whole)


def test_plain_binned_state_depends_on_the_split():
    """Why SplitFreeBinnedState exists: the float sums of region weights of the plain
    state change in the last bits with the split (this test fails if they ever stop
    doing so; then the plain state could be used)."""
    masks, maps = _random_images(0, 12)
    plain = [
        _binned_values(tree_merge(_split_states(BinnedPixelState, masks, maps, c)))
        for c in ([], [5], list(range(1, 12)))
    ]
    fixed = [
        _binned_values(tree_merge(_split_states(SplitFreeBinnedState, masks, maps, c)))
        for c in ([], [5], list(range(1, 12)))
    ]
    assert len(set(plain)) > 1
    assert len(set(fixed)) == 1


def test_split_free_weights_are_correctly_rounded_sums():
    """Each bin's weight is the correctly rounded sum of its pixels' weights (fsum)."""
    import math

    from xeval.metrics.regions import positive_weights

    masks, maps = _random_images(7, 6)
    st_ = SplitFreeBinnedState()
    for m, a in zip(masks, maps, strict=True):
        st_.update(m, a)
    summ = st_.summary()
    want: dict = {}
    for m, a in zip(masks, maps, strict=True):
        w, _ = positive_weights(m)
        for t, wi in zip(a[m].tolist(), w.tolist(), strict=True):
            want.setdefault(t, []).append(wi)
    # maps hold few distinct values, each far from the others: one bin per value
    got = dict(zip(summ.thresholds.tolist(), summ.w.tolist(), strict=True))
    assert len(got) == len(want)
    for t, ws in want.items():
        lo = max(k for k in got if k <= t)
        assert got[lo] == math.fsum(ws)


def test_tree_reduce_is_pairwise_in_order():
    class Cat:
        def __init__(self, s):
            self.s = s

        def merge(self, o):
            return Cat(f"({self.s}{o.s})")

    assert tree_merge([Cat(c) for c in "abcd"]).s == "((ab)(cd))"
    assert tree_merge([Cat(c) for c in "abcde"]).s == "(((ab)(cd))e)"
    assert tree_merge([Cat("a")]).s == "a"
    tr = TreeReduce()
    for c in "abcdefg":
        tr.add(Cat(c))
    assert len(tr._stack) == 3  # O(log n) states held
    assert tr.result().s == "(((ab)(cd))((ef)g))"
    with pytest.raises(ValueError):
        TreeReduce().result()


def test_exact_chunk_states_hold_no_more_than_their_chunk(tree):
    """A chunk task returns states for its own images only (memory ~ chunk size)."""
    maps, gt = tree
    split = load_mvtec(gt, "a", require_train=False)
    tasks = S.chunk_tasks("a", split, S.index_maps(maps, "a"), chunk_size=4)
    assert [len(t.paths) for t in tasks] == [4, 4, 4, 1]
    out = S.score_chunk(tasks[0])
    assert isinstance(out.pixel, ExactPixelState) and out.pixel.n_images == 4
    assert len(out.image.ids) == 4
    binned = S.score_chunk(S.ChunkTask(**{**tasks[0].__dict__, "mode": "binned"}))
    assert isinstance(binned.pixel, S.PackedBinned)  # sparse, not the dense histogram
    assert len(pickle.dumps(binned)) < 2**20


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "8", None])
def test_bad_chunk_size_names_the_argument(tree, bad):
    maps, gt = tree
    with pytest.raises(InputError, match=r"chunk_size .*got " + re.escape(repr(bad))):
        score_folder(maps, gt, chunk_size=bad)
    with pytest.raises(InputError, match="chunk_size"):
        score_category(maps, gt, "a", chunk_size=bad)


@pytest.fixture()
def corrupt_tree(tree, tmp_path):
    """The tree with one map file of category 'b' (its 9th image) replaced by junk."""
    import shutil

    maps, gt = tree
    copy = tmp_path / "maps"
    shutil.copytree(maps, copy)
    s = load_mvtec(gt, "b", require_train=False).test[8]
    bad = copy / "b" / "test" / s.defect / f"{s.image_path.stem}.npy"
    bad.write_bytes(b"not a numpy file")
    with pytest.raises(InputError) as direct:  # the error of reading that one map
        S._load_pair(bad, s)
    return copy, gt, bad, str(direct.value)


def test_corrupt_map_error_names_the_file_for_any_chunking(corrupt_tree):
    maps, gt, bad, direct = corrupt_tree
    messages = set()
    for chunk in (1, 7, 64):
        with pytest.raises(InputError, match=re.escape(str(bad))) as ei:
            score_folder(maps, gt, chunk_size=chunk)
        messages.add((type(ei.value), str(ei.value)))
    with InProcessExecutor() as ex, pytest.raises(InputError) as ei:
        score_folder(maps, gt, chunk_size=3, executor=ex)
    messages.add((type(ei.value), str(ei.value)))
    assert len(messages) == 1  # the same error, whatever the chunking
    assert messages.pop()[1] == direct  # that of reading the map, as before chunks


# ----------------------------------------------------------------------------- Dask
def test_dask_local_cluster_gives_identical_values(tree, reference, corrupt_tree):
    """2 worker processes: exact and binned identical to one process; a corrupt
    map is the same error, naming the file, as in one process (~10 s)."""
    maps, gt, bad, direct = corrupt_tree
    with pytest.raises(InputError) as local:
        score_folder(maps, gt, chunk_size=5)
    with DaskExecutor(workers=2) as ex:
        for mode in ("exact", "binned"):
            _assert_identical(_score(tree, mode=mode, chunk_size=3, executor=ex), reference[mode])
        with pytest.raises(InputError) as remote:
            score_folder(maps, gt, chunk_size=5, executor=ex)
        assert type(remote.value) is type(local.value)
        assert str(remote.value) == str(local.value)
        assert str(bad) in str(remote.value) and str(remote.value) == direct
        used = {u["worker"] for u in ex.overhead()["units"].values()}
        assert len(used) == 2  # both workers did chunks


@pytest.mark.slow
def test_dask_one_worker_gives_identical_values(tree, reference):
    with DaskExecutor(workers=1) as ex:
        for mode in ("exact", "binned"):
            _assert_identical(_score(tree, mode=mode, chunk_size=2, executor=ex), reference[mode])


def _nan_free(obj):
    """JSON records with NaN replaced by None (so that == compares them)."""
    if isinstance(obj, dict):
        return {k: _nan_free(v) for k, v in obj.items()}
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_cli_workers_give_identical_json(tree, tmp_path, workers, mode, capsys):
    """``xeval score --workers N`` writes the numbers of ``xeval score`` (one process)."""
    import json

    from xeval.cli import main

    maps, gt = tree
    common = ["score", "--maps", str(maps), "--gt", str(gt), "--mode", mode]
    common += ["--threshold", "0.5", "--fpr-limit", "0.3", "0.05"]
    one, many = tmp_path / "one.json", tmp_path / "many.json"
    assert main([*common, "--json", str(one)]) == 0
    assert main([*common, "--json", str(many), "--workers", workers]) == 0
    capsys.readouterr()
    a, b = json.loads(one.read_text()), json.loads(many.read_text())
    assert _nan_free(a) == _nan_free(b)
