"""Which test images a costly metric runs on (faithfulness, robustness, sanity).

A metric with ``subset = True`` runs on at most ``max_images`` images of its population
(anomalous images for those above), drawn per (category, detector) unit by the run's
``evaluation.subset`` strategy:

``"first"``
    The first images in test order (deterministic; one defect type may dominate when
    files are grouped by type).
``"stratified"``
    Balanced over defect types: each type's images are shuffled with a seed derived
    from ``(seed, category, metric)``, and the types are visited in turn (sorted by
    name) until ``max_images`` are chosen; the chosen images keep their test order.

The chosen ids are listed in the unit's output (``subsets``) and in ``per_image.csv``.
"""

from __future__ import annotations

from collections import defaultdict

from xeval.data.sample import Sample
from xeval.rng import rng

__all__ = ["select", "subsets_for"]


def select(
    samples: list[Sample],
    *,
    n: int | None,
    population: str,
    strategy: str,
    seed: int,
    key: str = "",
) -> list[str]:
    """Ids of at most ``n`` samples of ``population`` (``"all"`` or ``"anomalous"``)."""
    pool = [s for s in samples if population == "all" or s.label == 1]
    if n is None or n >= len(pool):
        return [s.id for s in pool]
    if strategy == "first":
        return [s.id for s in pool[:n]]
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in pool:
        groups[s.defect].append(s)
    order = {}
    for d in sorted(groups):
        g = groups[d]
        perm = rng(seed, key, d).permutation(len(g))
        order[d] = [g[i] for i in perm]
    chosen: set[str] = set()
    while len(chosen) < n:
        for d in sorted(order):
            if order[d] and len(chosen) < n:
                chosen.add(order[d].pop(0).id)
    return [s.id for s in pool if s.id in chosen]


def subsets_for(metrics, samples: list[Sample], *, strategy: str, seed: int, category: str):
    """``{metric label: [ids]}`` for the subset metrics of a unit."""
    out = {}
    for m in metrics:
        if m.subset:
            out[m.label] = select(
                samples,
                n=m.max_images,
                population=m.population,
                strategy=strategy,
                seed=seed,
                key=f"{category}/{m.label}",
            )
    return out
