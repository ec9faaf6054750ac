"""contaminate(): seeded, stratified planting; the planted images leave the test pool."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xeval.errors import InputError
from xeval.influence.contamination import NORMAL, contaminate, planted_count


@dataclass(frozen=True)
class Item:
    id: str
    defect: str


def _pool(per_type: int = 5, types=("hole", "scratch", "stain")) -> list[Item]:
    good = [Item(f"good/{i}", NORMAL) for i in range(4)]
    return good + [Item(f"{t}/{i}", t) for t in types for i in range(per_type)]


NORMALS = [Item(f"train/{i}", NORMAL) for i in range(60)]


@pytest.mark.parametrize(("rate", "k"), [(0.02, 1), (0.05, 3), (0.1, 7), (0.5, 60)])
def test_planted_count_makes_the_rate_the_fraction_of_the_training_set(rate, k):
    assert planted_count(60, rate) == k
    assert abs(k / (60 + k) - rate) <= 0.5 / (60 + k) + 1e-12  # nearest achievable


def test_contaminate_plants_k_images_and_records_them():
    c = contaminate(NORMALS, _pool(), rate=0.1, seed=3)
    assert c.k == 7 and len(c.train) == 67
    planted_items = [c.train[j] for j in c.planted_indices]
    assert all(it.defect != NORMAL for it in planted_items)
    assert [str(t) for t in c.types[c.planted]] == [it.defect for it in planted_items]
    assert (c.types[~c.planted] == NORMAL).all()
    # every normal image is kept, once
    assert sorted(it.id for it in c.train if it.defect == NORMAL) == sorted(i.id for i in NORMALS)
    # planted ones left the test pool, the others stay in order
    ids = {it.id for it in planted_items}
    assert not ids & {it.id for it in c.test}
    assert [it.id for it in c.test] == [it.id for it in _pool() if it.id not in ids]
    assert c.actual_rate == pytest.approx(7 / 67)
    assert sum(len(v) for v in c.planted_by_type().values()) == 7


def test_types_are_stratified_round_robin():
    c = contaminate(NORMALS, _pool(), rate=0.1, seed=0)  # 7 over 3 types: 3, 2, 2
    counts = Counter(str(t) for t in c.types[c.planted])
    assert sorted(counts.values()) == [2, 2, 3]
    one = contaminate(NORMALS, _pool(), rate=0.02, seed=0)
    assert one.k == 1


def test_an_exhausted_type_leaves_the_rest_to_the_others():
    pool = [Item("a/0", "a")] + [Item(f"b/{i}", "b") for i in range(10)]
    c = contaminate(NORMALS, pool, rate=0.05, seed=1)  # 3 planted, only one 'a'
    assert Counter(str(t) for t in c.types[c.planted]) == {"a": 1, "b": 2}


def test_deterministic_with_the_seed_and_independent_of_the_pool_order():
    a = contaminate(NORMALS, _pool(), rate=0.1, seed=5)
    b = contaminate(NORMALS, _pool(), rate=0.1, seed=5)
    assert [it.id for it in a.train] == [it.id for it in b.train]
    other = contaminate(NORMALS, _pool(), rate=0.1, seed=6)
    assert [it.id for it in a.train] != [it.id for it in other.train]


def test_positions_of_planted_images_are_shuffled():
    # over seeds, planted images are not always at the end (the shuffle hides them)
    first = [
        contaminate(NORMALS, _pool(), rate=0.1, seed=s).planted_indices.min() for s in range(10)
    ]
    assert min(first) < 60


def test_defects_option_restricts_the_types():
    c = contaminate(NORMALS, _pool(), rate=0.05, seed=0, defects=["hole"])
    assert set(c.types[c.planted]) == {"hole"} and c.k == 3
    with pytest.raises(InputError, match=r"not in the pool.*\['hole', 'scratch', 'stain'\]"):
        contaminate(NORMALS, _pool(), rate=0.1, seed=0, defects=["crack"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 0.0, "seed": 0}, r"rate must be a number in \(0, 1\), got 0.0"),
        ({"rate": 1.0, "seed": 0}, "rate must be"),
        ({"rate": True, "seed": 0}, "rate must be"),
        ({"rate": float("nan"), "seed": 0}, "rate must be"),
        ({"rate": 0.1, "seed": -1}, "seed must be a non-negative integer"),
        ({"rate": 0.001, "seed": 0}, r"plants .* = 0 images among 60"),
        ({"rate": 0.6, "seed": 0}, r"plants 90 images but the pool holds 15"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        contaminate(NORMALS, _pool(), **kwargs)


def test_pool_items_need_a_defect_type():
    with pytest.raises(InputError, match=r"pool\[0\] has no defect type"):
        contaminate(NORMALS, [object()], rate=0.1, seed=0)
    with pytest.raises(InputError, match="no anomalous item"):
        contaminate(NORMALS, [Item("g", NORMAL)], rate=0.1, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(5, 80),
    rate=st.floats(0.02, 0.3),
    seed=st.integers(0, 2**31),
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
)
def test_invariants(n, rate, seed, sizes):
    types = [f"t{i}" for i in range(len(sizes))]
    pool = [Item(f"{t}/{i}", t) for t, m in zip(types, sizes, strict=True) for i in range(m)]
    normal = [Item(f"n/{i}", NORMAL) for i in range(n)]
    k = planted_count(n, rate)
    if k < 1 or k > len(pool):
        with pytest.raises(InputError):
            contaminate(normal, pool, rate=rate, seed=seed)
        return
    c = contaminate(normal, pool, rate=rate, seed=seed)
    assert c.k == k and len(c.train) == n + k and len(c.test) == len(pool) - k
    ids = [it.id for it in c.train] + [it.id for it in c.test]
    assert sorted(ids) == sorted([it.id for it in normal] + [it.id for it in pool])
    # stratified: per-type counts differ by at most one unless a type ran out
    counts = Counter(str(t) for t in c.types[c.planted])
    full = [counts.get(t, 0) for t, m in zip(types, sizes, strict=True) if counts.get(t, 0) < m]
    if full:
        assert max(counts.values()) - min(full) <= 1
    assert np.array_equal(c.planted, c.types != NORMAL)
