"""Ranking methods across blocks (categories, datasets): Friedman, Nemenyi, Holm, CD.

Given a blocks x methods matrix of scores (one value per method per block, e.g. the
AUPRO of each explainer on each category), following Demšar (2006), *Statistical
comparisons of classifiers over multiple data sets*, JMLR 7, §3.2.2:

- **ranks**: within each block the methods are ranked 1 (best) .. k (worst) in the
  metric's direction; ties get mid-ranks (the average of the ranks they span). The
  average rank of method j is ``R_j = mean_i r_ij`` over the N blocks.
- **Friedman test** of ``H0: all methods are equivalent``:
  ``chi2_F = 12N / (k(k+1)) * (sum_j R_j^2 - k(k+1)^2/4)``, chi-square with k-1 degrees
  of freedom. By default the tie-corrected statistic of
  :func:`scipy.stats.friedmanchisquare` (``chi2_F`` divided by
  ``1 - sum(t^3 - t) / (N k (k^2 - 1))`` over the tie groups ``t`` of every block);
  ``tie_correction=False`` gives Demšar's uncorrected formula above. (scipy needs
  k >= 3; for k = 2 the same tie-corrected formula is computed here.) The Iman-Davenport
  statistic ``F_F = (N-1) chi2_F / (N(k-1) - chi2_F)`` follows an F distribution with
  ``k-1`` and ``(k-1)(N-1)`` degrees of freedom (less conservative; Demšar recommends it).
- **Nemenyi post-hoc** (all pairs): two methods differ significantly when their average
  ranks differ by at least the critical difference
  ``CD = q_alpha * sqrt(k(k+1) / (6N))``, ``q_alpha`` = the studentized range quantile
  ``scipy.stats.studentized_range.ppf(1 - alpha, k, inf) / sqrt(2)`` (Demšar's Table 5a:
  1.960, 2.343, 2.569, 2.728, 2.850 for k = 2..6 at alpha = 0.05). Pairwise p-values are
  :func:`scikit_posthocs.posthoc_nemenyi_friedman`.
- **Holm post-hoc** (all pairs): ``z = (R_i - R_j) / sqrt(k(k+1) / (6N))``, two-sided
  normal p-values, Holm-adjusted over the ``k(k-1)/2`` pairs
  (:func:`xeval.comparisons.holm`; equal to
  :func:`scikit_posthocs.posthoc_siegel_friedman` with ``p_adjust="holm"``).
- **Cliques** (the thick bars of a critical-difference diagram): the maximal sets of
  methods, consecutive in average rank, whose average ranks differ by less than CD
  (Demšar's Fig. 1 and 2: methods joined by a bar are not significantly different by
  Nemenyi at ``alpha``). A method alone is no clique.

Evidence: the chi-square (and F) approximations need enough blocks (Demšar quotes
N > 10 and k > 5 as a rule of thumb), and with few blocks no pair can be separated at
all. The result is ``"insufficient evidence"`` (with the reason) when there are fewer
than ``min_blocks`` blocks (default 5) or when even the largest possible rank difference
``k - 1`` is below CD; the ranks are still given, as a description.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from xeval.comparisons.paired import holm
from xeval.errors import InputError

__all__ = [
    "Ranking",
    "average_ranks",
    "cliques",
    "critical_difference",
    "friedman_ranking",
    "q_alpha",
]

MIN_BLOCKS = 5
"""Fewer blocks than this is reported as insufficient evidence (see the module doc)."""


def _check_alpha(alpha) -> float:
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, (bool, np.bool_))
    if not ok or not 0 < float(alpha) < 1:
        raise InputError(f"alpha (significance level) must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def q_alpha(k: int, alpha: float = 0.05) -> float:
    """Critical value of the Nemenyi test for ``k`` methods: the studentized range
    quantile ``q(1 - alpha; k, inf) / sqrt(2)`` (Demšar 2006, Table 5a)."""
    alpha = _check_alpha(alpha)
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 2:
        raise InputError(f"k (number of methods) must be an integer >= 2, got {k!r}")
    return float(stats.studentized_range.ppf(1 - alpha, int(k), np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference ``CD = q_alpha sqrt(k(k+1) / (6N))`` of average ranks
    for ``k`` methods over ``N = n_blocks`` blocks (Demšar 2006, §3.2.2)."""
    if not isinstance(n_blocks, numbers.Integral) or isinstance(n_blocks, bool) or n_blocks < 1:
        raise InputError(f"n_blocks must be a positive integer, got {n_blocks!r}")
    return q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def average_ranks(scores, *, higher_is_better: bool = True) -> np.ndarray:
    """Per-block ranks, shape (N, k): 1 = best in the metric's direction, ties
    mid-ranked (:func:`scipy.stats.rankdata`, ``method="average"``). Average them over
    axis 0 for the average ranks."""
    m = np.asarray(scores, dtype=float)
    if m.ndim != 2:
        raise InputError(f"scores must be a blocks x methods matrix, got shape {m.shape}")
    return stats.rankdata(-m if higher_is_better else m, axis=1, method="average")


def cliques(mean_ranks: pd.Series, cd: float) -> list[tuple[str, ...]]:
    """Maximal groups of methods not significantly different by Nemenyi.

    Methods are sorted by average rank; a group is a run of consecutive methods whose
    first and last average ranks differ by less than ``cd``; groups contained in another
    and single methods are dropped (Demšar 2006, Fig. 1/2).

    Parameters
    ----------
    mean_ranks : Series
        Method name -> average rank.
    cd : float
        Critical difference.

    Returns
    -------
    list of tuple of str
        Groups in order of their best (lowest) rank, each from best to worst.
    """
    r = pd.Series(mean_ranks, dtype=float).sort_values(kind="stable")
    names, values = list(r.index), r.to_numpy()
    if np.isnan(values).any() or not np.isfinite(cd):
        return []
    # for each start, the last method within CD; keep only runs not inside a previous one
    ends = np.searchsorted(values, values + cd, side="left") - 1
    out, last_end = [], -1
    for start, end in enumerate(ends):
        if end > start and end > last_end:
            out.append(tuple(names[start : end + 1]))
            last_end = end
    return out


@dataclass(frozen=True)
class Ranking:
    """Friedman test, post-hoc tests and average ranks of k methods over N blocks.

    Attributes
    ----------
    methods : tuple of str
        Method names, in the input column order.
    blocks : tuple of str
        Blocks used (rows with a value for every method).
    dropped_blocks : tuple of str
        Blocks dropped because a method had no value (NaN).
    higher_is_better : bool
        Direction used for ranking.
    ranks : DataFrame
        Per-block ranks (blocks x methods), 1 = best, mid-ranks for ties.
    mean_ranks : Series
        Average rank per method, sorted best first.
    statistic : float
        Friedman chi-square (tie-corrected unless ``tie_correction=False``).
    p_value : float
        Its chi-square (k-1 df) p-value.
    iman_davenport : float
        ``F_F``; NaN when ``chi2_F = N(k-1)`` (every block ranks the methods alike).
    iman_davenport_p : float
        Its F(k-1, (k-1)(N-1)) p-value (0 when ``F_F`` is infinite).
    alpha : float
        Significance level of the post-hoc tests and CD.
    q_alpha, cd : float
        Nemenyi critical value and critical difference of average ranks.
    nemenyi : DataFrame
        Nemenyi p-values (methods x methods; 1 on the diagonal).
    holm_z : DataFrame
        ``(R_i - R_j) / sqrt(k(k+1)/(6N))`` (row minus column; negative = row better).
    holm : DataFrame
        Holm-adjusted two-sided p-values of ``holm_z`` over the k(k-1)/2 pairs.
    cliques : list of tuple of str
        Groups joined by a bar in the CD diagram (:func:`cliques`).
    evidence : str
        ``"sufficient"`` or ``"insufficient evidence"``.
    reason : str
        Why the evidence is insufficient ("" otherwise), or a caveat.
    tie_correction : bool
        Whether the Friedman statistic is tie-corrected.
    """

    methods: tuple[str, ...]
    blocks: tuple[str, ...]
    dropped_blocks: tuple[str, ...]
    higher_is_better: bool
    ranks: pd.DataFrame
    mean_ranks: pd.Series
    statistic: float
    p_value: float
    iman_davenport: float
    iman_davenport_p: float
    alpha: float
    q_alpha: float
    cd: float
    nemenyi: pd.DataFrame
    holm_z: pd.DataFrame
    holm: pd.DataFrame
    cliques: list[tuple[str, ...]] = field(default_factory=list)
    evidence: str = "sufficient"
    reason: str = ""
    tie_correction: bool = True

    @property
    def k(self) -> int:
        """Number of methods."""
        return len(self.methods)

    @property
    def n_blocks(self) -> int:
        """Number of blocks used (N)."""
        return len(self.blocks)

    def significant(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` differ by Nemenyi (|R_a - R_b| >= CD) with enough
        evidence."""
        if self.evidence != "sufficient":
            return False
        return bool(abs(self.mean_ranks[a] - self.mean_ranks[b]) >= self.cd)

    def pairs(self) -> pd.DataFrame:
        """One row per pair (i < j in average-rank order): the rank difference, Nemenyi
        p, Holm z and Holm-adjusted p, and whether Nemenyi separates them at ``alpha``."""
        order = list(self.mean_ranks.index)
        rows = []
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                diff = float(self.mean_ranks[b] - self.mean_ranks[a])
                rows.append(
                    {
                        "method_a": a,
                        "method_b": b,
                        "rank_a": float(self.mean_ranks[a]),
                        "rank_b": float(self.mean_ranks[b]),
                        "rank_diff": diff,
                        "nemenyi_p": float(self.nemenyi.at[a, b]),
                        "holm_z": float(self.holm_z.at[b, a]),
                        "holm_p": float(self.holm.at[a, b]),
                        "significant": self.significant(a, b),
                    }
                )
        return pd.DataFrame(rows)


def friedman_ranking(
    scores: pd.DataFrame,
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    tie_correction: bool = True,
    min_blocks: int = MIN_BLOCKS,
) -> Ranking:
    """Friedman test, Nemenyi and Holm post-hoc tests, average ranks and CD cliques.

    Parameters
    ----------
    scores : DataFrame
        Blocks (index, e.g. categories) x methods (columns): one score each. A block
        where a method has no value (NaN) is dropped (listed in ``dropped_blocks``).
    higher_is_better : bool
        Direction of the score: rank 1 goes to the highest (or lowest) value.
    alpha : float
        Significance level of the post-hoc tests and of the CD.
    tie_correction : bool
        Tie-corrected Friedman statistic (scipy's) or Demšar's uncorrected formula.
    min_blocks : int
        Fewer blocks is reported as insufficient evidence.

    Returns
    -------
    Ranking
        See the module doc for each statistic.

    Raises
    ------
    InputError
        Fewer than 2 methods or 2 complete blocks, duplicate method names, inf values,
        a bad option.
    """
    alpha = _check_alpha(alpha)
    if not isinstance(scores, pd.DataFrame):
        raise InputError(f"scores must be a blocks x methods DataFrame, got {type(scores)}")
    if not isinstance(higher_is_better, (bool, np.bool_)):
        raise InputError(f"higher_is_better must be True or False, got {higher_is_better!r}")
    if not isinstance(min_blocks, numbers.Integral) or isinstance(min_blocks, bool):
        raise InputError(f"min_blocks must be an integer, got {min_blocks!r}")
    methods = [str(c) for c in scores.columns]
    if len(set(methods)) != len(methods):
        raise InputError(f"scores has duplicate method columns: {methods}")
    if len(methods) < 2:
        raise InputError(f"a ranking needs at least 2 methods, got {methods}")
    try:
        m = scores.to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError("scores must hold numbers (NaN for a missing value)") from exc
    if np.isinf(m).any():
        raise InputError("scores hold inf: rank finite values (NaN for a missing one)")
    complete = ~np.isnan(m).any(axis=1)
    names = [str(b) for b in scores.index]
    blocks = [b for b, ok in zip(names, complete, strict=True) if ok]
    dropped = [b for b, ok in zip(names, complete, strict=True) if not ok]
    m = m[complete]
    n, k = m.shape
    if n < 2:
        raise InputError(
            f"a ranking needs at least 2 blocks with a value for every method, got {n} "
            f"(blocks {names}; dropped for a missing value: {dropped})"
        )
    r = average_ranks(m, higher_is_better=bool(higher_is_better))
    mean = pd.Series(r.mean(axis=0), index=methods).sort_values(kind="stable")
    chi2, p = _friedman(m, r, tie_correction=tie_correction)
    ff, ff_p = _iman_davenport(chi2, n, k)
    q = q_alpha(k, alpha)
    se = math.sqrt(k * (k + 1) / (6.0 * n))
    cd = q * se
    import scikit_posthocs as sp  # noqa: PLC0415  (imported when used: ~1 s)

    # scikit-posthocs ranks ascending; the p-values depend on |R_i - R_j| only
    oriented = m if higher_is_better else -m
    nemenyi = _relabel(sp.posthoc_nemenyi_friedman(oriented), methods)
    rm = r.mean(axis=0)
    z = pd.DataFrame((rm[:, None] - rm[None, :]) / se, index=methods, columns=methods)
    holm_p = _holm_posthoc(z.to_numpy(), methods)
    evidence, reason = _evidence(n, k, cd, min_blocks)
    return Ranking(
        methods=tuple(methods),
        blocks=tuple(blocks),
        dropped_blocks=tuple(dropped),
        higher_is_better=bool(higher_is_better),
        ranks=pd.DataFrame(r, index=blocks, columns=methods),
        mean_ranks=mean,
        statistic=chi2,
        p_value=p,
        iman_davenport=ff,
        iman_davenport_p=ff_p,
        alpha=alpha,
        q_alpha=q,
        cd=cd,
        nemenyi=nemenyi,
        holm_z=z,
        holm=holm_p,
        cliques=cliques(mean, cd),
        evidence=evidence,
        reason=reason,
        tie_correction=bool(tie_correction),
    )


def _friedman(m: np.ndarray, r: np.ndarray, *, tie_correction: bool) -> tuple[float, float]:
    n, k = m.shape
    if tie_correction and np.all(np.ptp(m, axis=1) == 0):
        return math.nan, math.nan  # every block ties all methods: 0 / 0
    if tie_correction and k >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.friedmanchisquare(*m.T)
        return float(res.statistic), float(res.pvalue)
    rj = r.mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(rj**2) - k * (k + 1) ** 2 / 4.0)
    if tie_correction:  # k = 2, which scipy refuses: the same correction by hand
        ties = sum(np.sum(c**3 - c) for c in (np.unique(row, return_counts=True)[1] for row in r))
        chi2 /= 1.0 - ties / (n * k * (k * k - 1.0))
    return float(chi2), float(stats.chi2.sf(chi2, k - 1))


def _iman_davenport(chi2: float, n: int, k: int) -> tuple[float, float]:
    if math.isnan(chi2):
        return math.nan, math.nan
    denom = n * (k - 1) - chi2
    if denom <= 0:  # every block ranks the methods identically: F_F is infinite
        return math.inf, 0.0
    ff = (n - 1) * chi2 / denom
    return float(ff), float(stats.f.sf(ff, k - 1, (k - 1) * (n - 1)))


def _holm_posthoc(z: np.ndarray, methods: list[str]) -> pd.DataFrame:
    """Two-sided normal p-values of the pairwise z, Holm-adjusted over the k(k-1)/2
    pairs; equals ``scikit_posthocs.posthoc_siegel_friedman(..., p_adjust="holm")``
    (whose statsmodels call costs a garbage collection, ~0.3 s, per table)."""
    k = len(methods)
    iu = np.triu_indices(k, 1)
    out = np.ones((k, k))
    out[iu] = holm(np.minimum(2.0 * stats.norm.sf(np.abs(z[iu])), 1.0))
    out.T[iu] = out[iu]
    return pd.DataFrame(out, index=methods, columns=methods)


def _relabel(frame: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(frame.to_numpy(dtype=float), index=methods, columns=methods)
    return out


def _evidence(n: int, k: int, cd: float, min_blocks: int) -> tuple[str, str]:
    if k - 1 < cd:
        return (
            "insufficient evidence",
            f"with N = {n} blocks and k = {k} methods the critical difference "
            f"({cd:.2f}) exceeds the largest possible rank difference ({k - 1}): "
            "no pair can be told apart",
        )
    if n < min_blocks:
        return (
            "insufficient evidence",
            f"only N = {n} blocks (fewer than {min_blocks}): the Friedman test and its "
            "post-hoc tests have little power and their approximations are rough; "
            "read the ranks as a description",
        )
    if n <= 10:
        return "sufficient", f"few blocks (N = {n}): the tests have little power"
    return "sufficient", ""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BlockRanking:
    """One ranking made from a results table (see :func:`category_rankings`).

    Attributes
    ----------
    kind : {"explainers", "detectors"}
        What is ranked: the explainers of ``detector``, or the detectors on ``explainer``.
    detector, explainer : str
        The detector whose explainers are ranked (or ``""``), the explainer the detectors
        are ranked on (or ``""``).
    metric : str
        Metric label.
    controls : frozenset of str
        Ranked methods that are trivial controls.
    ranking : Ranking or None
        None when the table cannot be ranked (``reason`` says why).
    reason : str
        Why there is no ranking.
    """

    kind: str
    detector: str
    explainer: str
    metric: str
    controls: frozenset[str]
    ranking: Ranking | None
    reason: str = ""

    @property
    def title(self) -> str:
        """E.g. ``"aupro@0.3: explainers of padim"``."""
        scope = (
            f"explainers of {self.detector}"
            if self.kind == "explainers"
            else f"detectors on {self.explainer}"
        )
        return f"{self.metric}: {scope}"


RANKING_COLUMNS = [
    "kind",
    "detector",
    "explainer",
    "metric",
    "method",
    "control",
    "mean_rank",
    "n_blocks",
    "k",
    "friedman_chi2",
    "friedman_p",
    "iman_davenport_f",
    "iman_davenport_p",
    "alpha",
    "cd",
    "groups",
    "evidence",
    "reason",
]
"""Columns of :func:`rankings_frame` (``rankings.csv``): one row per ranked method."""


def category_rankings(
    results: pd.DataFrame,
    *,
    metrics=None,
    controls=None,
    alpha: float = 0.05,
    min_blocks: int = MIN_BLOCKS,
) -> list[BlockRanking]:
    """Rank methods across the categories of a results table, per metric.

    Blocks are the (dataset, protocol, category) of the rows that are not ``"mean"``
    rows; the score of a method in a block is its ``value``. For a metric of the
    ``detection`` family the detectors are ranked, on the explainer they all share
    (``native`` when shared, else the first shared real explainer); for any other metric
    the explainers of each detector are ranked, controls included (and marked).

    Parameters
    ----------
    results : DataFrame
        The results long table.
    metrics : iterable of str, optional
        Metric labels; default: the headline metrics
        (:func:`xeval.reports.tables.headline_metrics`).
    controls : iterable of str, optional
        Control explainers; default: those the results mark.
    alpha, min_blocks
        See :func:`friedman_ranking`.

    Returns
    -------
    list of BlockRanking
    """
    from xeval.reports.data import controls_of, display_frame  # noqa: PLC0415
    from xeval.reports.tables import headline_metrics  # noqa: PLC0415

    controls = controls_of(results) if controls is None else frozenset(controls)
    df = display_frame(results)
    df = df[df["category"].astype(str) != "mean"].copy()
    for c in ("detector", "explainer", "dataset", "protocol", "category"):
        df[c] = df[c].where(df[c].notna(), "").astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    labels = headline_metrics(results) if metrics is None else [str(m) for m in metrics]
    multi = [c for c in ("dataset", "protocol") if df[c].nunique() > 1]
    df["block"] = df[[*multi, "category"]].agg(" / ".join, axis=1)
    out: list[BlockRanking] = []
    for metric in labels:
        part = df[df["metric"] == metric]
        if part.empty:
            continue
        hib = bool(
            part["higher_is_better"].map(lambda v: str(v).lower() in {"true", "1"}).mean() >= 0.5
        )
        family = str(part["family"].iloc[0]) if "family" in part else ""
        if family == "detection":
            explainer = _shared_explainer(part, controls)
            if explainer is None:
                continue
            sub = part[part["explainer"] == explainer]
            out.append(
                _rank(sub, "detector", kind="detectors", detector="", explainer=explainer,
                      metric=metric, hib=hib, controls=frozenset(), alpha=alpha,
                      min_blocks=min_blocks)
            )  # fmt: skip
            continue
        for det, sub in part.groupby("detector", sort=False):
            out.append(
                _rank(sub, "explainer", kind="explainers", detector=det, explainer="",
                      metric=metric, hib=hib, controls=controls, alpha=alpha,
                      min_blocks=min_blocks)
            )  # fmt: skip
    return out


def _shared_explainer(part: pd.DataFrame, controls: frozenset[str]) -> str | None:
    dets = part["detector"].unique()
    if len(dets) < 2:
        return None
    have = part.groupby("explainer", sort=False)["detector"].nunique()
    shared = [e for e, n in have.items() if n == len(dets) and e not in controls]
    if not shared:
        return None
    return "native" if "native" in shared else shared[0]


def _rank(sub: pd.DataFrame, column: str, *, kind, detector, explainer, metric, hib, controls,
          alpha, min_blocks) -> BlockRanking:  # fmt: skip
    sub = sub.drop_duplicates(subset=["block", column], keep="last")
    wide = sub.pivot(index="block", columns=column, values="value")
    order = list(dict.fromkeys(sub[column]))
    order = [m for m in order if m not in controls] + [m for m in order if m in controls]
    wide = wide.reindex(index=list(dict.fromkeys(sub["block"])), columns=order)
    present = frozenset(m for m in order if m in controls)
    try:
        ranking = friedman_ranking(wide, higher_is_better=hib, alpha=alpha, min_blocks=min_blocks)
    except InputError as exc:
        return BlockRanking(kind, detector, explainer, metric, present, None, str(exc))
    return BlockRanking(kind, detector, explainer, metric, present, ranking)


def rankings_frame(rankings: list[BlockRanking]) -> pd.DataFrame:
    """The rankings as a long table (:data:`RANKING_COLUMNS`), one row per method, best
    first; ``groups`` lists the CD cliques (1-based, ``;``-separated) the method is in."""
    rows = []
    for br in rankings:
        base = {"kind": br.kind, "detector": br.detector, "explainer": br.explainer,
                "metric": br.metric}  # fmt: skip
        r = br.ranking
        if r is None:
            rows.append({**base, "evidence": "insufficient evidence", "reason": br.reason})
            continue
        for method, rank in r.mean_ranks.items():
            groups = [str(i + 1) for i, g in enumerate(r.cliques) if method in g]
            rows.append(
                {
                    **base,
                    "method": method,
                    "control": method in br.controls,
                    "mean_rank": float(rank),
                    "n_blocks": r.n_blocks,
                    "k": r.k,
                    "friedman_chi2": r.statistic,
                    "friedman_p": r.p_value,
                    "iman_davenport_f": r.iman_davenport,
                    "iman_davenport_p": r.iman_davenport_p,
                    "alpha": r.alpha,
                    "cd": r.cd,
                    "groups": ";".join(groups),
                    "evidence": r.evidence,
                    "reason": r.reason,
                }
            )
    return pd.DataFrame(rows, columns=RANKING_COLUMNS)
