"""Statistics between methods: paired tests on the same images (:mod:`.paired`, the
family table of :mod:`.pairwise`), rankings across categories (Friedman, Nemenyi, Holm,
critical difference: :mod:`.ranking`), and rliable-style interval estimates over runs
(IQM, probability of improvement: :mod:`.intervals`).

>>> from xeval.comparisons import paired_test, holm
>>> r = paired_test(iou_ig, iou_random, higher_is_better=True)
>>> r.mean_diff, (r.ci_low, r.ci_high), r.p_value
"""

from __future__ import annotations

from xeval.comparisons.intervals import (
    improvement_probabilities,
    interval_estimates,
    iqm,
    probability_of_improvement,
    stratified_bootstrap_ci,
)
from xeval.comparisons.paired import PairedResult, holm, paired_test
from xeval.comparisons.pairwise import COMPARISON_COLUMNS, pairwise_comparisons
from xeval.comparisons.ranking import (
    RANKING_COLUMNS,
    BlockRanking,
    Ranking,
    average_ranks,
    category_rankings,
    cliques,
    critical_difference,
    friedman_ranking,
    q_alpha,
    rankings_frame,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "RANKING_COLUMNS",
    "BlockRanking",
    "PairedResult",
    "Ranking",
    "average_ranks",
    "category_rankings",
    "cliques",
    "critical_difference",
    "friedman_ranking",
    "holm",
    "improvement_probabilities",
    "interval_estimates",
    "iqm",
    "paired_test",
    "pairwise_comparisons",
    "probability_of_improvement",
    "q_alpha",
    "rankings_frame",
    "stratified_bootstrap_ci",
]
