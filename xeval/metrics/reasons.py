"""Reason metrics (X-MAN): does a method say *why* a frame is anomalous?

Ground truth: per anomalous frame a set of reasons ``(coarse, fine)`` such as
``("action", "run / jog")`` (Szymanowicz et al., "X-MAN: Explaining multiple sources of
anomalies in video", CVPRW 2021). A method gives one score per reason per frame (higher =
the reason is more likely). Arrays: ``y_true`` ``(n_frames, n_reasons)`` binary,
``y_score`` ``(n_frames, n_reasons)`` finite real scores, columns in the same order.

Definitions (higher is better for all):

- **Per-reason AP** (:func:`reason_ap`): for each reason (column), average precision of
  the frames ranked by that reason's score, ``AP = sum_k (R_k - R_{k-1}) P_k`` over the
  distinct score thresholds ``score >= t`` (scikit-learn's step definition,
  ``sklearn.metrics.average_precision_score``; tied scores form one threshold). NaN for a
  reason with no positive frame (one :class:`~xeval.errors.UndefinedMetricWarning`
  counts them).
- **mAP** (:func:`reason_map`): the mean of the per-reason APs over the reasons where AP
  is defined (``nanmean``); NaN with a warning when no reason has a positive frame.
- **Top-k accuracy** (:func:`reason_top_k`): the fraction of frames having at least one
  true reason whose ``k`` highest-scored reasons contain one of their true reasons.
  Frames without a true reason are skipped (counted in a warning). **Ties are broken
  against the method** (pessimistic): a frame is a hit iff fewer than ``k`` *wrong*
  reasons score at least as high as its best-scored true reason. This rule does not
  depend on the column order, and an input-independent (constant) scorer gets 0 for
  ``k`` smaller than the number of wrong reasons instead of the luck of an index order.
- **Coarse level** (:func:`coarse_labels`, :func:`coarse_scores`): a frame carries a
  coarse class (e.g. ``"action"``) when it carries one of its fine reasons; the coarse
  score of a class is the **max** of the fine scores of its reasons. AP, mAP and top-k
  at coarse level are the same functions on these arrays (the matrix comes from
  :meth:`xeval.data.video.base.ReasonVocabulary.coarse_matrix`).
- **Confusion** (:func:`reason_confusion`): ``C[i, j]`` = number of frames carrying true
  reason ``i`` whose top-1 predicted reason is ``j`` (a frame with several true reasons
  counts once in each of its rows; a frame whose highest score is shared by ``m``
  reasons adds ``1/m`` to each of them, so rows sum to the number of frames carrying the
  reason and the result does not depend on the column order). Off-diagonal mass says
  which reasons a method mixes up (:func:`most_confused` lists the largest entries).

Registered metrics (family ``"reasons"``): ``reason_map`` and ``reason_top_k``, with
options ``level`` (``"fine"`` / ``"coarse"``) and ``frames`` (``"anomalous"`` /
``"all"``), see :class:`ReasonMAP`. Both share one :class:`ReasonState`;
:meth:`ReasonMetric.per_reason` and :meth:`ReasonMetric.confusion` read the per-reason
APs and the confusion matrix from it.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics._validation import (
    FLOAT64_EXACT_INT,
    check_ids,
    exact_mean,
    extend_ids,
    merged_ids,
    undefined,
)
from xeval.metrics.base import Metric, MetricValue
from xeval.registry import METRICS

__all__ = [
    "ReasonMAP",
    "ReasonMetric",
    "ReasonState",
    "ReasonTopK",
    "coarse_labels",
    "coarse_scores",
    "most_confused",
    "reason_ap",
    "reason_confusion",
    "reason_map",
    "reason_top_k",
]

Reason = tuple[str, str]


# ---------------------------------------------------------------------- validation
def _check_labels(y, name: str) -> np.ndarray:
    """``y`` as a 2-D bool array; raise unless it is 2-D and binary."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise InputError(f"{name} must be a 2-D (n_frames, n_reasons) array, got shape {y.shape}")
    if y.dtype == bool:
        return y
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise InputError(f"{name} must be binary (0/1 or bool), got dtype {y.dtype}")
    bad = (y != 0) & (y != 1)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{name} must be binary (0/1 or bool), found {y[at].item()!r} at (frame, reason) {at}"
        )
    return y != 0


def _check_scores(s, name: str) -> np.ndarray:
    """``s`` as a 2-D float64 array; raise unless it is 2-D, real and finite."""
    s = np.asarray(s)
    if s.ndim != 2:
        raise InputError(f"{name} must be a 2-D (n_frames, n_reasons) array, got shape {s.shape}")
    if s.dtype == bool:
        return s.astype(np.float64)
    if np.issubdtype(s.dtype, np.integer):
        if s.size and s.dtype.itemsize >= 8:
            big = max(abs(int(s.min())), abs(int(s.max())))
            if big > FLOAT64_EXACT_INT:
                raise InputError(
                    f"{name} holds integers beyond ±2**53 (e.g. {big}) which float64 cannot "
                    "hold exactly (distinct scores would become ties); pass their ranks"
                )
        return s.astype(np.float64)
    if not np.issubdtype(s.dtype, np.floating):
        raise InputError(f"{name} must hold real-valued scores, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if s.size and not np.isfinite(s).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(s))[0])
        raise InputError(
            f"{name} holds a non-finite score {s[at]} at (frame, reason) {at}; reason scores "
            "must be finite"
        )
    return s


def _check_pair(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = _check_labels(y_true, "y_true")
    s = _check_scores(y_score, "y_score")
    if y.shape != s.shape:
        raise InputError(
            f"y_true and y_score must have the same (n_frames, n_reasons) shape, got "
            f"{y.shape} and {s.shape}"
        )
    if y.size == 0:
        raise InputError(
            f"y_true and y_score are empty (shape {y.shape}): nothing to evaluate, "
            "at least one frame and one reason are needed"
        )
    return y, s


def _check_k(k, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _check_coarse_matrix(m, n_fine: int) -> np.ndarray:
    m = np.asarray(m)
    if m.ndim != 2 or m.shape[0] != n_fine:
        raise InputError(
            f"coarse_matrix must be an (n_fine, n_coarse) array with n_fine = {n_fine} "
            f"(one row per fine reason), got shape {m.shape}"
        )
    m = _check_labels(m, "coarse_matrix")
    per_row = m.sum(axis=1)
    if (per_row != 1).any():
        i = int(np.flatnonzero(per_row != 1)[0])
        raise InputError(
            f"coarse_matrix row {i} marks {int(per_row[i])} coarse classes; every fine "
            "reason belongs to exactly one coarse class"
        )
    empty = np.flatnonzero(~m.any(axis=0))
    if empty.size:
        raise InputError(
            f"coarse_matrix column {int(empty[0])} has no fine reason; every coarse class "
            "needs at least one"
        )
    return m


def _names_of(idx: np.ndarray, names: Sequence[str] | None, shown: int = 5) -> str:
    lab = [repr(names[i]) if names is not None else f"#{i}" for i in idx[:shown]]
    return ", ".join(lab) + (", ..." if idx.size > shown else "")


# ------------------------------------------------------------------------ kernels
def _ap_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-column average precision (NaN where a column has no positive), one sort per
    column for all thresholds: ``AP = sum over groups of tied scores of (positives in the
    group) * (precision at the group's end) / n_pos``. Only group ends enter the sum, and
    they depend on the sorted scores alone, so the value is bit-identical for any order
    of the frames (exact merges)."""
    st, yt = np.ascontiguousarray(s.T), np.ascontiguousarray(y.T)  # (R, n): sort rows
    order = np.argsort(-st, axis=1)
    ss = np.take_along_axis(st, order, axis=1)
    tps = np.cumsum(np.take_along_axis(yt, order, axis=1), axis=1, dtype=np.int64)
    end = np.ones(ss.shape, dtype=bool)
    end[:, :-1] = ss[:, :-1] != ss[:, 1:]
    tp_end = np.where(end, tps, 0)
    before = np.zeros_like(tps)  # true positives up to the end of the previous group
    before[:, 1:] = np.maximum.accumulate(tp_end, axis=1)[:, :-1]
    precision = tps / np.arange(1, ss.shape[1] + 1)
    pos = tps[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(end, (tps - before) * precision, 0.0).sum(axis=1) / pos
    return np.where(pos > 0, ap, np.nan)


def _top_k_hits(y: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """Per frame: True when fewer than ``k`` wrong reasons score at least as high as the
    frame's best-scored true reason (pessimistic ties). Frames without a true reason get
    False (callers skip them)."""
    best_true = np.where(y, s, -np.inf).max(axis=1)
    wrong_above = ((~y) & (s >= best_true[:, None])).sum(axis=1)
    return y.any(axis=1) & (wrong_above < k)


def _confusion(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    top = s == s.max(axis=1, keepdims=True)
    share = top / top.sum(axis=1, keepdims=True)
    return y.T.astype(np.float64) @ share


def _coarse_scores(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    # one column per coarse class (a handful): max of the fine scores of the class
    return np.stack([s[:, m[:, c]].max(axis=1) for c in range(m.shape[1])], axis=1)


def _coarse_labels(y: np.ndarray, m: np.ndarray) -> np.ndarray:
    return (y.astype(np.int64) @ m.astype(np.int64)) > 0


# ---------------------------------------------------------------- functional API
def reason_ap(y_true, y_score, *, names: Sequence[str] | None = None) -> np.ndarray:
    """Average precision of every reason (see the module docstring): a 1-D float64 array
    of ``n_reasons`` values, equal to ``sklearn.metrics.average_precision_score`` on each
    column; NaN for a reason with no positive frame (one warning counts them, naming
    them by ``names`` when given, else by column index). Higher is better."""
    y, s = _check_pair(y_true, y_score)
    ap = _ap_columns(y, s)
    _warn_missing(ap, names, "reason_ap")
    return ap


def _warn_missing(ap: np.ndarray, names, metric: str) -> None:
    missing = np.flatnonzero(np.isnan(ap))
    if missing.size:
        undefined(
            metric,
            f"{missing.size} of {ap.size} reasons have no positive frame "
            f"({_names_of(missing, names)}); their AP is NaN",
        )


def reason_map(y_true, y_score, *, names: Sequence[str] | None = None) -> float:
    """Mean average precision over reasons: the mean of :func:`reason_ap` over the
    reasons with a positive frame (``nanmean``); NaN with a warning when none has one.
    Higher is better."""
    y, s = _check_pair(y_true, y_score)
    ap = _ap_columns(y, s)
    ok = ap[~np.isnan(ap)]
    if not ok.size:
        return undefined("reason_map", f"none of the {ap.size} reasons has a positive frame")
    _warn_missing(ap, names, "reason_ap")
    return exact_mean(ok)


def reason_top_k(y_true, y_score, *, k: int = 1) -> float:
    """Top-``k`` reason accuracy: the fraction of frames with at least one true reason
    whose ``k`` highest-scored reasons include a true one, ties broken against the
    method (a hit needs fewer than ``k`` wrong reasons scoring >= the best true reason).
    Frames without a true reason are skipped (a warning counts them); NaN when no frame
    has one. With ``k >= n_reasons`` every frame is a hit. Higher is better."""
    k = _check_k(k)
    y, s = _check_pair(y_true, y_score)
    has = y.any(axis=1)
    if not has.any():
        return undefined("reason_top_k", f"none of the {len(y)} frames has a true reason")
    if not has.all():
        warnings.warn(
            f"reason_top_k: {int((~has).sum())} of {len(y)} frames have no true reason and "
            "are skipped",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    hits = _top_k_hits(y[has], s[has], k)
    return float(hits.sum()) / float(has.sum())


def reason_confusion(y_true, y_score) -> np.ndarray:
    """``(n_reasons, n_reasons)`` float64 confusion matrix: row = true reason, column =
    top-1 predicted reason, summed over frames (a frame counts once in each row of its
    true reasons; a top score shared by ``m`` reasons gives ``1/m`` to each). Row ``i``
    sums to the number of frames carrying reason ``i``; frames without a true reason add
    nothing. The diagonal is what the method gets right, off-diagonal entries what it
    mixes up."""
    y, s = _check_pair(y_true, y_score)
    return _confusion(y, s)


def most_confused(confusion, names: Sequence[str], *, top: int = 5) -> list[tuple[str, str, float]]:
    """The ``top`` largest off-diagonal entries of a confusion matrix as
    ``(true reason, predicted reason, count)``, largest first (ties in row, then column
    order); zero entries are left out."""
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] != len(names):
        raise InputError(
            f"confusion must be a square (n, n) matrix with n = len(names) = {len(names)}, "
            f"got shape {c.shape}"
        )
    top = _check_k(top, "top")
    off = c.copy()
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(-off, axis=None, kind="stable")[:top]
    out = []
    for f in flat:
        i, j = divmod(int(f), c.shape[0])
        if off[i, j] > 0:
            out.append((str(names[i]), str(names[j]), float(off[i, j])))
    return out


def coarse_labels(y_true_fine, coarse_matrix) -> np.ndarray:
    """``(n_frames, n_coarse)`` bool: a frame carries a coarse class when it carries one
    of its fine reasons (``y_true_fine @ coarse_matrix > 0``)."""
    y = _check_labels(y_true_fine, "y_true_fine")
    return _coarse_labels(y, _check_coarse_matrix(coarse_matrix, y.shape[1]))


def coarse_scores(y_score_fine, coarse_matrix) -> np.ndarray:
    """``(n_frames, n_coarse)`` float64: the coarse score of a class is the max of the
    fine scores of its reasons."""
    s = _check_scores(y_score_fine, "y_score_fine")
    if s.shape[0] == 0:
        raise InputError("y_score_fine has no frame: nothing to aggregate")
    return _coarse_scores(s, _check_coarse_matrix(coarse_matrix, s.shape[1]))


# ------------------------------------------------------------------ metric states
@dataclass
class ReasonState:
    """What the reason metrics keep, in update order: frame ids, whether each frame is
    labelled anomalous (``record.targets.labels``) and whether it has reason labels, the
    fine-level truth and scores in chunks of ``(B, R)`` arrays, and the reason
    ``names`` ``((coarse, fine), ...)`` of the columns (empty before the first update)."""

    ids: list = field(default_factory=list)
    names: tuple = ()
    anomalous: list = field(default_factory=list)
    labelled: list = field(default_factory=list)
    truth: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(anomalous (n,), labelled (n,), truth (n, R) bool, scores (n, R))``."""
        r = len(self.names)
        truth = np.concatenate(self.truth) if self.truth else np.zeros((0, r), bool)
        scores = np.concatenate(self.scores) if self.scores else np.zeros((0, r))
        return (
            np.asarray(self.anomalous, dtype=bool),
            np.asarray(self.labelled, dtype=bool),
            truth,
            scores,
        )


def _reorder(names: tuple, to: tuple, where: str) -> np.ndarray | None:
    """Column permutation taking reason ``names`` to the order ``to`` (None: identity);
    raise when the two sets differ."""
    if names == to:
        return None
    if set(names) != set(to):
        extra = sorted(set(names) - set(to))[:3]
        lacking = sorted(set(to) - set(names))[:3]
        raise InputError(
            f"{where}: reason columns differ between batches or states (new {extra}, "
            f"missing {lacking}); every explanation of a run must score the same reasons"
        )
    pos = {n: i for i, n in enumerate(names)}
    return np.array([pos[n] for n in to], dtype=np.int64)


def _check_names(names, n_cols: int, where: str) -> tuple[Reason, ...]:
    out = []
    for i, r in enumerate(names):
        if (
            not isinstance(r, (tuple, list))
            or len(r) != 2
            or not all(isinstance(x, str) and x for x in r)
        ):
            raise InputError(
                f"{where}: explanation.reason_names[{i}] is {r!r}; expected a (coarse, fine) "
                "pair of non-empty strings"
            )
        out.append((r[0], r[1]))
    if len(set(out)) != len(out):
        dup = next(r for r in out if out.count(r) > 1)
        raise InputError(f"{where}: explanation.reason_names repeats {dup!r}")
    if len(out) != n_cols or not out:
        raise InputError(
            f"{where}: explanation.reasons has {n_cols} columns but reason_names names "
            f"{len(out)} reasons; expected one (coarse, fine) name per column (at least one)"
        )
    return tuple(out)


class ReasonMetric(Metric):
    """Base of the registered reason metrics: one shared :class:`ReasonState` (fine
    level, every frame), the level and the frames chosen at compute time."""

    family = "reasons"
    higher_is_better = True
    needs = frozenset({"labels", "reasons"})
    _suffix: ClassVar[str] = ""

    level: str
    frames: str

    def _set_common(self, level, frames) -> None:
        if level not in ("fine", "coarse"):
            raise InputError(f"level must be 'fine' or 'coarse', got {level!r}")
        if frames not in ("anomalous", "all"):
            raise InputError(f"frames must be 'anomalous' or 'all', got {frames!r}")
        self.level, self.frames = level, frames

    def _label_suffix(self) -> str:
        return ("_coarse" if self.level == "coarse" else "") + (
            "_all" if self.frames == "all" else ""
        )

    def shares(self):
        return ("reasons",)

    # ---------------------------------------------------------------------- state
    def init(self) -> ReasonState:
        return ReasonState()

    def update(self, state: ReasonState, record, explanation) -> ReasonState:
        where = f"metric {self.label!r}"
        n = len(record)
        ids = check_ids(record.ids, n, where)
        extend_ids(list(state.ids), ids, where)  # refuse repeated ids before any work
        if explanation.reasons is None:
            raise InputError(
                f"{where}: explainer {explanation.explainer!r} gives no reason scores "
                "(Explanation.reasons is None); reason metrics need an explainer that scores "
                "reasons per frame, e.g. the reasoning detector's"
            )
        scores = _check_scores(explanation.reasons, f"{where}: explanation.reasons")
        if scores.shape[0] != n:
            raise InputError(
                f"{where}: explanation.reasons has {scores.shape[0]} rows for the {n} frames "
                f"of the record; expected one row per frame, in the record's order"
            )
        names = _check_names(explanation.reason_names, scores.shape[1], where)
        truth_lists = record.targets.reasons
        if truth_lists is None:
            raise InputError(
                f"{where}: the record has no reason labels (Targets.reasons is None); reason "
                "metrics need a dataset with X-MAN labels (xeval.data.video.xman)"
            )
        labels = np.asarray(record.targets.labels)
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            raise InputError(
                f"{where}: record.targets.labels must be 0/1, found {labels[bad][0]!r} "
                f"(frame {ids[int(np.flatnonzero(bad)[0])]!r})"
            )
        col = {r: j for j, r in enumerate(names)}
        truth = np.zeros(scores.shape, dtype=bool)
        for i, rs in enumerate(truth_lists):
            for r in rs or ():
                if not (isinstance(r, (tuple, list)) and len(r) == 2):
                    raise InputError(
                        f"{where}: frame {ids[i]!r} has reason label {r!r}; expected a "
                        "(coarse, fine) pair"
                    )
                j = col.get((r[0], r[1]))
                if j is None:
                    raise InputError(
                        f"{where}: frame {ids[i]!r} has true reason {tuple(r)!r}, which is not "
                        f"among the {len(names)} reasons explainer {explanation.explainer!r} "
                        f"scores (reason_names {list(names)[:6]}"
                        f"{' ...' if len(names) > 6 else ''})"
                    )
                truth[i, j] = True
        labelled = truth.any(axis=1)
        contradict = np.flatnonzero(labelled & (labels == 0))
        if contradict.size:
            raise InputError(
                f"{where}: frame {ids[int(contradict[0])]!r} has reason labels but is labelled "
                "normal (record.targets.labels = 0)"
            )
        if state.names:
            perm = _reorder(names, state.names, where)
            if perm is not None:
                truth, scores = truth[:, perm], scores[:, perm]
        else:
            state.names = names
        extend_ids(state.ids, ids, where)
        state.anomalous.extend((labels == 1).tolist())
        state.labelled.extend(labelled.tolist())
        state.truth.append(truth)
        state.scores.append(scores)
        return state

    def merge(self, a: ReasonState, b: ReasonState) -> ReasonState:
        where = "merging reason states"
        ids = merged_ids(a.ids, b.ids, where)
        names = a.names or b.names
        truth_b, scores_b = list(b.truth), list(b.scores)
        if a.names and b.names:
            perm = _reorder(b.names, a.names, where)
            if perm is not None:
                truth_b = [t[:, perm] for t in truth_b]
                scores_b = [s[:, perm] for s in scores_b]
        return ReasonState(
            ids=ids,
            names=names,
            anomalous=a.anomalous + b.anomalous,
            labelled=a.labelled + b.labelled,
            truth=a.truth + truth_b,
            scores=a.scores + scores_b,
        )

    # -------------------------------------------------------------------- reading
    def level_arrays(self, state: ReasonState) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(names, truth, scores)`` of every frame at this metric's level: display names
        (``"coarse: fine"`` or the coarse class), ``(n, R)`` bool and float64."""
        from xeval.data.video.base import ReasonVocabulary

        _, _, truth, scores = state.arrays()
        vocab = ReasonVocabulary(tuple(state.names))
        if self.level == "fine":
            return vocab.names, truth, scores
        m = vocab.coarse_matrix()
        if not len(truth):
            return list(vocab.coarse), np.zeros((0, m.shape[1]), bool), np.zeros((0, m.shape[1]))
        return list(vocab.coarse), _coarse_labels(truth, m), _coarse_scores(scores, m)

    def _used(self, state: ReasonState) -> tuple[np.ndarray, int]:
        """Frames the metric is computed on, and the anomalous frames without reason
        labels (excluded in both modes)."""
        anomalous, labelled, _, _ = state.arrays()
        unlabelled = int((anomalous & ~labelled).sum())
        used = labelled if self.frames == "anomalous" else (labelled | ~anomalous)
        return used, unlabelled

    def per_reason(self, state: ReasonState) -> tuple[list[str], np.ndarray]:
        """``(names, ap)``: the AP of every reason at this metric's level on its frames
        (NaN for a reason without a positive frame), for per-reason AP bars."""
        names, y, s = self.level_arrays(state)
        used, _ = self._used(state)
        if not used.any():
            return names, np.full(len(names), np.nan)
        return names, _ap_columns(y[used], s[used])

    def confusion(self, state: ReasonState) -> tuple[list[str], np.ndarray]:
        """``(names, C)``: the confusion matrix of :func:`reason_confusion` at this
        metric's level over the frames with reason labels (rows: true reason, columns:
        top-1 predicted reason)."""
        names, y, s = self.level_arrays(state)
        used, _ = self._used(state)
        if not used.any():
            return names, np.zeros((len(names), len(names)))
        return names, _confusion(y[used], s[used])

    def _note(self, unlabelled: int, extra: str = "") -> str:
        parts = [f"level={self.level}", f"frames={self.frames}"]
        if self.frames == "anomalous":
            parts.append("computed on the frames with reason labels (anomalous frames)")
        else:
            parts.append("normal frames count as negatives for every reason")
        if extra:
            parts.append(extra)
        if unlabelled:
            parts.append(f"{unlabelled} anomalous frames without reason labels excluded")
        return "; ".join(parts)


@METRICS.register
class ReasonMAP(ReasonMetric):
    """Reason mAP (X-MAN): per reason, the average precision ``sum_k (R_k - R_{k-1}) P_k``
    of the frames ranked by the method's score for that reason (scikit-learn's
    ``average_precision_score``, tied scores one threshold), averaged over the reasons
    that have a positive frame (reasons without one are NaN, left out and counted in the
    note). **Higher is better.** ``level="fine"`` scores the ``(coarse, fine)`` reasons;
    ``"coarse"`` the coarse classes (label = any fine reason of the class, score = max
    of their fine scores). ``frames="anomalous"`` (default) uses only the frames with
    reason labels, i.e. anomalous frames, because X-MAN lists reasons for anomalous
    frames only and *why* must not be confused with *whether*; ``frames="all"`` adds the
    normal frames as negatives for every reason (a method then also loses AP by giving
    normal frames high reason scores). Anomalous frames without reason labels are
    excluded in both modes and counted in the note. Per-reason APs: the curve
    ``"reason_ap_<level>[_all]"`` (x = column index, y = AP) and
    :meth:`ReasonMetric.per_reason`. Reference: Szymanowicz, Charles & Cipolla (2021),
    "X-MAN: Explaining multiple sources of anomalies in video", CVPR Workshops."""

    name = "reason_map"
    headline = 1

    def __init__(
        self,
        *,
        level: Literal["fine", "coarse"] = "fine",
        frames: Literal["anomalous", "all"] = "anomalous",
    ) -> None:
        self._set_common(level, frames)

    @property
    def label(self) -> str:
        return "reason_map" + self._label_suffix()

    def compute(self, state: ReasonState) -> MetricValue:
        used, unlabelled = self._used(state)
        n = int(used.sum())
        if not n:
            value = undefined(self.label, "no frame with reason labels")
            return MetricValue(value=value, n=0, note=self._note(unlabelled))
        names, ap = self.per_reason(state)
        missing = np.flatnonzero(np.isnan(ap))
        ok = ap[~np.isnan(ap)]
        if ok.size:
            value = exact_mean(ok)
        else:
            value = undefined(self.label, f"none of the {ap.size} reasons has a positive frame")
        extra = (
            f"{missing.size} of {ap.size} reasons without a positive frame left out "
            f"({_names_of(missing, names)})"
            if missing.size
            else f"{ap.size} reasons"
        )
        kind = "reason_ap_" + self.level + ("_all" if self.frames == "all" else "")
        return MetricValue(
            value=value,
            n=n,
            note=self._note(unlabelled, extra),
            curves={kind: (np.arange(ap.size, dtype=np.float64), ap)},
        )


@METRICS.register
class ReasonTopK(ReasonMetric):
    """Top-k reason accuracy (X-MAN): the fraction of frames with at least one true
    reason whose ``k`` highest-scored reasons include one of their true reasons. Ties are
    broken against the method: a frame is a hit iff fewer than ``k`` wrong reasons score
    at least as high as its best-scored true reason (independent of column order; a
    constant scorer gets 0). **Higher is better.** Per-frame values are 1 (hit) or 0
    (NaN for frames without reason labels), for bootstrap CIs. ``level`` as for
    ``reason_map`` (at coarse level ``k`` counts coarse classes). The value is defined on
    frames with a true reason only, so ``frames="all"`` gives the same value as the
    default (normal frames have no true reason and are skipped); the option exists so
    that a protocol can set both reason metrics alike. Anomalous frames without reason
    labels are excluded and counted. Reference: Szymanowicz, Charles & Cipolla (2021),
    "X-MAN: Explaining multiple sources of anomalies in video", CVPR Workshops."""

    name = "reason_top_k"
    per_image = True

    def __init__(
        self,
        *,
        k: int = 1,
        level: Literal["fine", "coarse"] = "fine",
        frames: Literal["anomalous", "all"] = "anomalous",
    ) -> None:
        self.k = _check_k(k)
        self._set_common(level, frames)

    @property
    def label(self) -> str:
        return f"reason_top{self.k}" + self._label_suffix()

    def compute(self, state: ReasonState) -> MetricValue:
        anomalous, labelled, _, _ = state.arrays()
        _, unlabelled = self._used(state)
        names, y, s = self.level_arrays(state)
        per = np.full(len(state.ids), np.nan)
        if labelled.any():
            per[labelled] = _top_k_hits(y[labelled], s[labelled], self.k).astype(np.float64)
        excluded = {
            sid: "anomalous frame without reason labels"
            for sid, a, lab in zip(state.ids, anomalous, labelled, strict=True)
            if a and not lab
        }
        n = int(labelled.sum())
        if n:
            value = float(np.nansum(per)) / n
        else:
            value = undefined(self.label, "no frame with reason labels")
        extra = f"k={self.k} of {len(names)} reasons, ties broken against the method"
        if names and self.k >= len(names):
            extra += " (k >= the number of reasons: every frame is a hit)"
        return MetricValue(
            value=value,
            n=n,
            per_image=per,
            ids=list(state.ids),
            note=self._note(unlabelled, extra),
            excluded=excluded,
        )
