"""Metrics of example importance: does a ranking of training images find the planted
anomalies, and do per-test attributions point at the right training images?

Conventions
-----------
- A **suspicion score** ``s[j]`` per training image ranks images from most to least
  suspicious (descending): self-influence, the detector's own score on the training
  image, a kNN distance... ``planted[j]`` is True for the planted (known anomalous)
  images: the positives.
- An **attribution matrix** ``influence[i, j]`` (``xeval.influence``) is the change of
  test image i's anomaly score when training image j is removed; positive means j makes
  i look normal. A planted image of test anomaly i's own defect type should make i look
  normal (the detector learnt to reconstruct that defect from it), so per-test rankings
  are by **descending** influence.
- Ties: AUROC counts a tied (positive, negative) pair as 1/2; average precision treats
  tied scores as one threshold (scikit-learn); precision@k and the cumulative-detection
  area are the **expected values over a uniformly random order of tied scores** (exact,
  not sampled), so neither the index order nor luck decides a tie. Top-k lists (similarity
  rate, cardinality) break ties by the lower training index (stable sort).
- Undefined values (no positive, no negative, NaN scores) are NaN with an
  :class:`~xeval.errors.UndefinedMetricWarning` saying why.

References
----------
- AUROC, average precision: scikit-learn's ``roc_auc_score`` /
  ``average_precision_score``.
- Cumulative detection area: quanda's ``MislabelingDetectionMetric`` (Bareeva et al.
  2024, following Kwon et al. 2024, DataInf): rank by descending self-influence, curve
  ``c[t] = (#planted in the first t+1) / k``, score ``trapezoid(c, dx=1) / n``.
- Similarity rate and top-k cardinality: Hanawa et al. 2021, "Evaluation of similarity-
  based explanations" (identical class test; TracIn's top lists that are the same for
  every test input).
"""

from __future__ import annotations

import numbers

import numpy as np

from xeval._validation import undefined
from xeval.errors import InputError

__all__ = [
    "INFLUENCE_BASELINES",
    "DetectorScoreBaseline",
    "KnnDistanceBaseline",
    "RandomBaseline",
    "attribution_auprc",
    "cumulative_detection_auc",
    "cumulative_detection_curve",
    "detection_metrics",
    "planted_auprc",
    "planted_auroc",
    "precision_at_k",
    "similarity_rate",
    "top_k_cardinality",
    "top_k_indices",
]


# ----------------------------------------------------------------------- checks
def _scores_and_labels(scores, planted, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    p = np.asarray(planted)
    if s.ndim != 1:
        raise InputError(f"{name} must be a 1-D array (one per training image), got {s.shape}")
    if p.shape != s.shape:
        raise InputError(f"planted must have the shape of {name} {s.shape}, got {p.shape}")
    if p.dtype != bool:
        if not np.issubdtype(p.dtype, np.number) or not np.isin(p, (0, 1)).all():
            raise InputError("planted must be boolean (or 0/1): True for planted images")
        p = p.astype(bool)
    if not np.issubdtype(s.dtype, np.number) or s.dtype == bool:
        raise InputError(f"{name} must be numeric, got dtype {s.dtype}")
    return s.astype(np.float64), p


def _defined(metric: str, s: np.ndarray, p: np.ndarray) -> bool:
    if s.size == 0:
        undefined(metric, "no training image")
        return False
    if not np.isfinite(s).all():
        undefined(metric, f"{int((~np.isfinite(s)).sum())} score(s) are NaN or infinite")
        return False
    if not p.any():
        undefined(metric, "no planted image (no positive)")
        return False
    return True


# ------------------------------------------------------------ global rankings
def planted_auroc(scores, planted) -> float:
    """AUROC of ``scores`` separating planted from normal training images: the
    probability that a random planted image scores above a random normal one (ties
    count 1/2); 0.5 = chance, higher is better. ``sklearn.metrics.roc_auc_score``."""
    from sklearn.metrics import roc_auc_score

    s, p = _scores_and_labels(scores, planted)
    if not _defined("planted_auroc", s, p):
        return float("nan")
    if p.all():
        return undefined("planted_auroc", "every training image is planted (no negative)")
    return float(roc_auc_score(p, s))


def planted_auprc(scores, planted) -> float:
    """Average precision of ``scores`` for the planted images:
    ``sum_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds (descending), as
    ``sklearn.metrics.average_precision_score``; chance = the planted fraction, higher is
    better."""
    from sklearn.metrics import average_precision_score

    s, p = _scores_and_labels(scores, planted)
    if not _defined("planted_auprc", s, p):
        return float("nan")
    return float(average_precision_score(p, s))


def _expected_cumulative(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``E[#planted among the first t+1]`` for t = 0..n-1 when images are ranked by
    descending ``s`` and tied scores are ordered uniformly at random: inside a tie group
    of m images holding q planted ones, the expected count grows by q/m per position."""
    order = np.argsort(-s, kind="stable")
    ss, pp = s[order], p[order].astype(np.float64)
    n = len(ss)
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    sizes = np.diff(np.r_[starts, n])
    q = np.add.reduceat(pp, starts)
    before = np.r_[0.0, np.cumsum(q)[:-1]]
    group = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(n) - starts[group] + 1  # 1..m inside each group
    return before[group] + q[group] * pos / sizes[group]


def precision_at_k(scores, planted, *, k: int | None = None) -> float:
    """Fraction of planted images among the ``k`` most suspicious (default ``k`` = the
    number planted, where precision@k equals recall@k and R-precision); tied scores at
    the cut-off count by their expected share. Chance = the planted fraction."""
    s, p = _scores_and_labels(scores, planted)
    if not _defined("precision_at_k", s, p):
        return float("nan")
    if k is None:
        k = int(p.sum())
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= len(s):
        raise InputError(f"k must be an integer in [1, {len(s)}] (training images), got {k!r}")
    return float(_expected_cumulative(s, p)[int(k) - 1] / k)


def cumulative_detection_curve(scores, planted) -> np.ndarray:
    """``c[t]`` = fraction of the planted images found among the ``t + 1`` most
    suspicious training images (expected value over random orders of ties), t = 0..n-1;
    ``c[-1] = 1``. quanda's normalised cumulative-detection curve."""
    s, p = _scores_and_labels(scores, planted)
    if not _defined("cumulative_detection_curve", s, p):
        return np.full(s.shape, np.nan)
    return _expected_cumulative(s, p) / p.sum()


def cumulative_detection_auc(scores, planted) -> float:
    """Normalised area under the cumulative-detection curve, quanda's
    ``MislabelingDetectionMetric`` score: ``trapezoid(c, dx=1) / n`` with ``c`` from
    :func:`cumulative_detection_curve` and n the number of training images.

    Reference values for k planted among n: a perfect ranking scores
    ``(n - k/2 - 1/(2k)) / n``, the ranking that puts them last ``k / (2n)``, and a
    random ranking (or constant scores) ``(n**2 - 1) / (2 n**2)``, about 1/2. Higher is
    better."""
    c = cumulative_detection_curve(scores, planted)
    if np.isnan(c).any():
        return float("nan")
    return float(np.trapezoid(c) / len(c))


def detection_metrics(scores, planted) -> dict[str, float]:
    """The four ranking metrics of the contaminated-training protocol at once:
    ``{"auroc", "auprc", "precision_at_k", "cdc_auc"}`` (see each function)."""
    return {
        "auroc": planted_auroc(scores, planted),
        "auprc": planted_auprc(scores, planted),
        "precision_at_k": precision_at_k(scores, planted),
        "cdc_auc": cumulative_detection_auc(scores, planted),
    }


# ------------------------------------------------------------ per-test rankings
def _matrix(influence, n_train: int | None = None) -> np.ndarray:
    a = np.asarray(influence)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or a.dtype == bool:
        raise InputError(
            f"influence must be a numeric (n_test, n_train) array, got shape {a.shape} "
            f"and dtype {a.dtype}"
        )
    if n_train is not None and a.shape[1] != n_train:
        raise InputError(
            f"influence has {a.shape[1]} columns but there are {n_train} training images"
        )
    return a.astype(np.float64)


def attribution_auprc(influence, relevant) -> np.ndarray:
    """Per test image i, the average precision of ranking training images by descending
    ``influence[i]`` for ``relevant[i]`` (e.g. the planted training images of test
    anomaly i's defect type): ``(n_test,)``, NaN (with a warning) for a row without a
    relevant image or with non-finite influence. Chance = the relevant fraction."""
    from sklearn.metrics import average_precision_score

    a = _matrix(influence)
    r = np.asarray(relevant)
    if r.shape != a.shape:
        raise InputError(f"relevant must have the shape of influence {a.shape}, got {r.shape}")
    r = r.astype(bool)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if not r[i].any():
            undefined("attribution_auprc", f"test image {i} has no relevant training image")
        elif not np.isfinite(a[i]).all():
            undefined("attribution_auprc", f"test image {i} has non-finite influence")
        else:
            out[i] = average_precision_score(r[i], a[i])
    return out


def top_k_indices(influence, k: int) -> np.ndarray:
    """``(n_test, k)`` indices of the ``k`` training images of largest influence per
    test image, most influential first (ties: the lower training index first)."""
    a = _matrix(influence)
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= a.shape[1]:
        raise InputError(f"k must be an integer in [1, {a.shape[1]}] (training images), got {k!r}")
    if not np.isfinite(a).all():
        raise InputError("influence holds NaN or infinite values: top-k lists are undefined")
    return np.argsort(-a, axis=1, kind="stable")[:, : int(k)]


def similarity_rate(influence, train_types, test_types, *, k: int) -> np.ndarray:
    """Per test image i, the fraction of its ``k`` most influential training images whose
    type (category or defect type; ``"good"`` for normal images) equals test image i's:
    ``(n_test,)``. Hanawa et al. 2021's identical-class test with ``k`` neighbours."""
    a = _matrix(influence)
    tr = np.asarray(train_types).astype(str)
    te = np.asarray(test_types).astype(str)
    if tr.shape != (a.shape[1],) or te.shape != (a.shape[0],):
        raise InputError(
            f"train_types must have shape ({a.shape[1]},) and test_types ({a.shape[0]},) "
            f"for influence {a.shape}; got {tr.shape} and {te.shape}"
        )
    top = top_k_indices(a, k)
    return (tr[top] == te[:, None]).mean(axis=1)


def top_k_cardinality(influence, *, k: int) -> int:
    """Number of distinct training images over all test images' top-``k`` lists
    (:func:`top_k_indices`): ``k`` when every test image gets the same list (a known
    failure of TracIn-like methods: a few high-gradient training images top every list),
    at most ``min(n_train, n_test * k)``."""
    return int(np.unique(top_k_indices(influence, k)).size)


# ------------------------------------------------------- baselines (controls)
def _features(detector, images: np.ndarray, *, batch_size: int = 32) -> tuple[np.ndarray, str]:
    """``(N, D)`` float64 features of ``images``: the detector's encoder code
    (``detector.encoder()``, flattened) when it has one, else the pixels; and which."""
    import torch

    hook = getattr(detector, "encoder", None)
    enc = hook() if callable(hook) else None
    x = np.asarray(images, dtype=np.float32)
    if enc is None:
        return x.reshape(len(x), -1).astype(np.float64), "pixels"
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(
                enc(torch.from_numpy(x[i : i + batch_size])).reshape(len(x[i : i + batch_size]), -1)
            )
    return torch.cat(out).double().numpy(), "encoder"


class RandomBaseline:
    """Control ``random``: independent uniform scores, seeded: a ranking that knows
    nothing (its expected AUROC is 1/2, its expected AP the planted fraction)."""

    name = "random"
    description = "uniform random scores (seeded)"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)

    def self_scores(self, detector, train: np.ndarray) -> np.ndarray:
        from xeval.rng import rng

        return rng(self.seed, "random-baseline", "self").random(len(train))

    def matrix(self, detector, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        from xeval.rng import rng

        return rng(self.seed, "random-baseline", "matrix").random((len(test), len(train)))


class DetectorScoreBaseline:
    """Control ``detector_score``: the retrained (contaminated) detector's own anomaly
    score on each training image, ``detector.score(train)``, with that image in its
    training set (no leave-one-out retraining: that is :mod:`xeval.influence.ground_truth`
    on tiny models). Per test image, the same ranking for every test image
    (input-independent: its top-k cardinality is k by construction)."""

    name = "detector_score"
    description = "the detector's anomaly score on each training image (trained with it)"

    def self_scores(self, detector, train: np.ndarray) -> np.ndarray:
        return np.asarray(detector.score(train), dtype=np.float64)

    def matrix(self, detector, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return np.tile(self.self_scores(detector, train), (len(test), 1))


class KnnDistanceBaseline:
    """Control ``knn_distance``: Euclidean distances in the detector's feature space
    (its encoder code, else pixels). Self score: the mean distance of a training image
    to its ``k`` nearest **other** training images (isolated images are suspicious).
    Per test image: minus the distance to each training image (nearest = most
    influential)."""

    name = "knn_distance"
    description = "mean distance to the k nearest other training images (encoder features)"

    def __init__(self, *, k: int = 5) -> None:
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise InputError(f"knn_distance: k must be a positive integer, got {k!r}")
        self.k = int(k)
        self.feature_space = ""

    def self_scores(self, detector, train: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist

        if self.k >= len(train):
            raise InputError(
                f"knn_distance: k={self.k} needs more than k training images, got {len(train)}"
            )
        f, self.feature_space = _features(detector, train)
        d = cdist(f, f)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, : self.k].mean(axis=1)

    def matrix(self, detector, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist

        f_train, self.feature_space = _features(detector, train)
        f_test, _ = _features(detector, test)
        return -cdist(f_test, f_train)


def _baselines():
    from xeval.registry import Registry

    reg: Registry = Registry("influence_baseline", what="influence baseline")
    for cls in (RandomBaseline, DetectorScoreBaseline, KnnDistanceBaseline):
        reg.register(cls)
    return reg


INFLUENCE_BASELINES = _baselines()
"""The controls of the contaminated-training protocol, always run beside the methods:
``random``, ``detector_score``, ``knn_distance`` (each with ``self_scores(detector,
train) -> (n_train,)`` and ``matrix(detector, train, test) -> (n_test, n_train)``,
options as keyword arguments of the class)."""
