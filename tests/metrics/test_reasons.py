"""Reason metrics (X-MAN): AP per reason equals scikit-learn, mAP = nanmean, top-k and
confusion against hand-built cases and a naive implementation, coarse level by hand,
registered metrics (values, options, merge of any split, errors)."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import average_precision_score

from xeval.data.video.base import ReasonVocabulary
from xeval.errors import InputError, UndefinedMetricWarning
from xeval.metrics.base import Explanation
from xeval.metrics.reasons import (
    ReasonMAP,
    ReasonTopK,
    coarse_labels,
    coarse_scores,
    most_confused,
    reason_ap,
    reason_confusion,
    reason_map,
    reason_top_k,
)
from xeval.record import Inputs, Record, Targets
from xeval.registry import METRICS

FAST = settings(max_examples=60, deadline=None)


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return fn(*a, **kw)


@st.composite
def problems(draw, max_frames=25, max_reasons=5):
    """(y_true, y_score): random multi-label truth and scores with many ties."""
    n = draw(st.integers(1, max_frames))
    r = draw(st.integers(1, max_reasons))
    y = draw(hnp.arrays(bool, (n, r)))
    tie_heavy = draw(st.booleans())
    elems = st.integers(0, 3) if tie_heavy else st.floats(-1e6, 1e6, allow_nan=False)
    s = draw(hnp.arrays(np.float64, (n, r), elements=elems))
    return y, s


# ------------------------------------------------------------------ reason_ap
@FAST
@given(problems())
def test_reason_ap_equals_sklearn_per_reason(p):
    y, s = p
    ap = quiet(reason_ap, y, s)
    assert ap.shape == (y.shape[1],) and ap.dtype == np.float64
    for j in range(y.shape[1]):
        if y[:, j].any():
            ref = average_precision_score(y[:, j], s[:, j])
            assert math.isclose(ap[j], ref, rel_tol=1e-12, abs_tol=1e-15), (j, ap[j], ref)
        else:
            assert np.isnan(ap[j])


@FAST
@given(problems(), st.randoms(use_true_random=False))
def test_reason_ap_ignores_frame_order_exactly(p, rnd):
    y, s = p
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    a, b = quiet(reason_ap, y, s), quiet(reason_ap, y[perm], s[perm])
    assert np.array_equal(a, b, equal_nan=True)  # bit-identical: merges are exact


def test_reason_ap_by_hand_and_one_warning_counting_missing_reasons():
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]])
    s = np.array([[0.9, 0.1, 0.2], [0.8, 0.5, 0.9], [0.3, 0.2, 0.1], [0.1, 0.3, 0.4]])
    # reason 0: ranks 0.9(+) 0.8(-) 0.3(+) 0.1(-): AP = (1/1 + 2/3) / 2
    # reason 2: ranks 0.9(-) 0.4(-) 0.2(-) 0.1(+): AP = 1/4
    with pytest.warns(UndefinedMetricWarning, match=r"1 of 3 reasons .*'b'") as rec:
        ap = reason_ap(y, s, names=["a", "b", "c"])
    assert len(rec) == 1
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and np.isnan(ap[1])
    assert ap[2] == pytest.approx(0.25)


def test_reason_ap_ties_form_one_threshold():
    # a tie between a positive and a negative at the top: precision 1/2 at that threshold
    y = np.array([[1], [0], [1]])
    s = np.array([[1.0], [1.0], [0.0]])
    assert reason_ap(y, s)[0] == pytest.approx((0.5 + 2 / 3) / 2)
    assert reason_ap(y, s)[0] == pytest.approx(average_precision_score(y[:, 0], s[:, 0]))


# ------------------------------------------------------------------ reason_map
@FAST
@given(problems())
def test_reason_map_is_the_nanmean_of_reason_ap(p):
    y, s = p
    ap = quiet(reason_ap, y, s)
    m = quiet(reason_map, y, s)
    if np.isnan(ap).all():
        assert np.isnan(m)
    else:
        assert math.isclose(m, float(np.nanmean(ap)), rel_tol=1e-12)


def test_reason_map_all_undefined_is_nan_with_a_warning():
    with pytest.warns(UndefinedMetricWarning, match="none of the 2 reasons"):
        assert np.isnan(reason_map(np.zeros((3, 2)), np.ones((3, 2))))


def test_a_perfect_scorer_has_map_one_and_an_inverted_one_less():
    y = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
    assert reason_map(y, y.astype(float)) == 1.0
    assert reason_map(y, 1.0 - y) < 1.0


# -------------------------------------------------------------------- top-k
def naive_top_k(y, s, k):
    """Pessimistic top-k by brute force: order the reasons of each frame by score,
    wrong reasons before true ones within a tie, and look at the first k."""
    hits, used = 0, 0
    for yi, si in zip(y, s, strict=True):
        if not yi.any():
            continue
        used += 1
        order = sorted(range(len(si)), key=lambda j: (-si[j], bool(yi[j])))
        hits += any(yi[j] for j in order[:k])
    return hits / used if used else math.nan


@FAST
@given(problems(), st.integers(1, 6))
def test_top_k_equals_the_naive_pessimistic_rule(p, k):
    y, s = p
    got = quiet(reason_top_k, y, s, k=k)
    ref = naive_top_k(y, s, k)
    assert (np.isnan(got) and np.isnan(ref)) or got == pytest.approx(ref, abs=1e-15)


@FAST
@given(problems(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_top_k_and_ap_do_not_depend_on_the_column_order(p, k, rnd):
    y, s = p
    perm = np.array(rnd.sample(range(y.shape[1]), y.shape[1]))
    a = quiet(reason_top_k, y, s, k=k)
    b = quiet(reason_top_k, y[:, perm], s[:, perm], k=k)
    assert (np.isnan(a) and np.isnan(b)) or a == b
    ap, ap_p = quiet(reason_ap, y, s), quiet(reason_ap, y[:, perm], s[:, perm])
    assert np.array_equal(ap[perm], ap_p, equal_nan=True)


def test_top_k_by_hand():
    y = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], bool)
    s = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # true reason ranked first: hit at k=1
            [0.5, 0.1, 0.4, 0.0],  # best true (0.4) ranked second: hit at k=2
            [0.3, 0.2, 0.1, 0.0],  # true reason last: hit at k=4 only
            [1.0, 0.0, 0.0, 0.0],  # no true reason: skipped
        ]
    )
    with pytest.warns(UndefinedMetricWarning, match="1 of 4 frames have no true reason"):
        assert reason_top_k(y, s, k=1) == pytest.approx(1 / 3)
    assert quiet(reason_top_k, y, s, k=2) == pytest.approx(2 / 3)
    assert quiet(reason_top_k, y, s, k=3) == pytest.approx(2 / 3)
    assert quiet(reason_top_k, y, s, k=4) == 1.0


def test_top_k_ties_are_broken_against_the_method():
    y = np.array([[0, 0, 1]], bool)
    const = np.zeros((1, 3))
    assert reason_top_k(y, const, k=1) == 0.0  # a constant scorer earns nothing
    assert reason_top_k(y, const, k=2) == 0.0
    assert reason_top_k(y, const, k=3) == 1.0
    # a true reason tied with one wrong reason at the top: miss at k=1, hit at k=2
    s = np.array([[0.5, 0.9, 0.9]])
    assert reason_top_k(y, s, k=1) == 0.0 and reason_top_k(y, s, k=2) == 1.0


def test_top_k_without_any_true_reason_is_nan():
    with pytest.warns(UndefinedMetricWarning, match="none of the 2 frames"):
        assert np.isnan(reason_top_k(np.zeros((2, 3)), np.ones((2, 3))))


# ------------------------------------------------------------------- coarse
VOCAB = ReasonVocabulary(
    (("action", "run"), ("action", "throw"), ("location", "lawn"), ("object", "bike"))
)


def test_coarse_labels_and_scores_by_hand():
    m = VOCAB.coarse_matrix()  # coarse classes: action, location, object
    y = np.array([[1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]], bool)
    s = np.array(
        [[0.1, 0.7, 0.2, 0.0], [0.4, 0.3, 0.9, 0.5], [0.0, 0.0, 0.6, 0.8], [0.2, 0.1, 0.3, 0.3]]
    )
    yc = coarse_labels(y, m)
    sc = coarse_scores(s, m)
    assert yc.tolist() == [
        [True, False, False],
        [True, False, True],
        [False, True, False],
        [False, False, False],
    ]
    assert sc.tolist() == [[0.7, 0.2, 0.0], [0.4, 0.9, 0.5], [0.0, 0.6, 0.8], [0.2, 0.3, 0.3]]
    # coarse AP by hand: action ranks 0.7(+) 0.4(+) 0.2(-) 0.0(-): AP 1;
    # location ranks 0.9(-) 0.6(+) ...: AP 1/2; object ranks 0.8(-) 0.5(+) ...: AP 1/2
    assert reason_ap(yc, sc).tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert reason_map(yc, sc) == pytest.approx(2 / 3)
    # top-1 coarse: frame 0 hit (0.7 action), frame 1 miss (location 0.9 is wrong),
    # frame 2 miss (object 0.8 wrong); frame 3 skipped
    assert quiet(reason_top_k, yc, sc, k=1) == pytest.approx(1 / 3)


def test_coarse_matrix_is_checked():
    y = np.zeros((2, 4), bool)
    with pytest.raises(InputError, match="coarse_matrix.*n_fine = 4"):
        coarse_labels(y, np.ones((3, 2), bool))
    bad = VOCAB.coarse_matrix().copy()
    bad[0, 1] = True
    with pytest.raises(InputError, match="row 0 marks 2 coarse classes"):
        coarse_scores(np.zeros((2, 4)), bad)
    empty_col = np.concatenate([VOCAB.coarse_matrix(), np.zeros((4, 1), bool)], axis=1)
    with pytest.raises(InputError, match="column 3 has no fine reason"):
        coarse_labels(y, empty_col)


# ---------------------------------------------------------------- confusion
def test_confusion_by_hand():
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
    s = np.array(
        [
            [0.9, 0.1, 0.0],  # true 0 -> predicted 0
            [0.1, 0.8, 0.0],  # true 0 -> predicted 1
            [0.2, 0.1, 0.7],  # true 1 and 2 -> predicted 2 (counts in rows 1 and 2)
            [0.5, 0.5, 0.1],  # true 2 -> tie 0/1: 1/2 each
            [0.0, 0.0, 1.0],  # no true reason: nothing
        ]
    )
    c = reason_confusion(y, s)
    assert c.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 1.0]]
    assert most_confused(c, ["a", "b", "c"], top=3) == [
        ("a", "b", 1.0),
        ("b", "c", 1.0),
        ("c", "a", 0.5),
    ]


@FAST
@given(problems())
def test_confusion_rows_sum_to_the_frames_carrying_the_reason(p):
    y, s = p
    c = reason_confusion(y, s)
    assert c.shape == (y.shape[1],) * 2
    assert np.allclose(c.sum(axis=1), y.sum(axis=0))
    # the diagonal with no ties is top-1 accuracy per reason
    if len(np.unique(s)) == s.size:
        top = s.argmax(axis=1)
        for j in range(y.shape[1]):
            assert c[j, j] == np.sum(y[:, j] & (top == j))


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "y, s, match",
    [
        (np.zeros(3), np.zeros(3), "y_true must be a 2-D"),
        (np.zeros((3, 2)), np.zeros((3, 2, 1)), "y_score must be a 2-D"),
        (np.zeros((3, 2)), np.zeros((3, 3)), r"same \(n_frames, n_reasons\) shape"),
        (np.full((2, 2), 2), np.zeros((2, 2)), r"y_true must be binary.*found 2"),
        (np.array([["a"]]), np.zeros((1, 1)), "y_true must be binary"),
        (
            np.zeros((2, 2)),
            np.array([[0.0, np.nan], [0, 0]]),
            r"y_score holds a non-finite.*\(0, 1\)",
        ),
        (np.zeros((2, 2)), np.array([[0.0, 0], [np.inf, 0]]), "y_score holds a non-finite"),
        (np.zeros((2, 2)), np.array([["x", "y"], ["z", "w"]]), "y_score must hold real"),
        (np.zeros((0, 2)), np.zeros((0, 2)), "empty"),
        (np.zeros((1, 1)), np.array([[2**60]]), "beyond"),
    ],
)
@pytest.mark.parametrize("fn", [reason_ap, reason_map, reason_top_k, reason_confusion])
def test_bad_input_is_an_error_naming_the_argument(fn, y, s, match):
    with pytest.raises(InputError, match=match):
        fn(y, s)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(InputError, match="k must be a positive integer"):
        reason_top_k(np.ones((1, 2)), np.zeros((1, 2)), k=k)
    with pytest.raises(InputError, match="k must be a positive integer"):
        ReasonTopK(k=k)


# ------------------------------------------------------- registered metrics
NAMES = VOCAB.fine


def make_record(truth, labels, scores, *, prefix="f", names=NAMES, explainer="why"):
    n = len(labels)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    rec = Record(
        Inputs(ids=ids, category="video", video_ids=["v"] * n, frame_index=np.arange(n)),
        Targets(labels=np.asarray(labels), reasons=list(truth)),
    )
    expl = Explanation(
        explainer=explainer,
        maps=np.zeros((n, 2, 2), np.float32),
        native=[np.zeros((2, 2), np.float32)] * n,
        scores=np.zeros(n),
        reasons=None if scores is None else np.asarray(scores, float),
        reason_names=tuple(names),
    )
    return rec, expl


def random_video(seed=0, n=40):
    """Frames: normal (no reasons), anomalous with 1-2 reasons, a few anomalous ones
    without reason labels; scores correlated with the truth."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    truth, y = [], np.zeros((n, len(NAMES)), bool)
    for i in range(n):
        if labels[i] and rng.random() < 0.85:
            k = rng.integers(1, 3)
            js = rng.choice(len(NAMES), size=k, replace=False)
            y[i, js] = True
            truth.append(tuple(NAMES[j] for j in js))
        else:
            truth.append(())
    scores = y + rng.normal(0, 0.7, y.shape)
    scores[::7] = np.round(scores[::7])  # some ties
    return truth, labels, scores, y


def run(metric, rec, expl):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return metric.compute(metric.update(metric.init(), rec, expl))


def test_registered_with_family_and_options():
    assert METRICS.get("reason_map") is ReasonMAP and METRICS.get("reason_top_k") is ReasonTopK
    for cls in (ReasonMAP, ReasonTopK):
        assert cls.family == "reasons" and cls.higher_is_better
    assert ReasonMAP().params == {"level": "fine", "frames": "anomalous"}
    assert ReasonTopK(k=3, level="coarse").params == {
        "k": 3,
        "level": "coarse",
        "frames": "anomalous",
    }
    labels = {
        ReasonMAP().label,
        ReasonMAP(level="coarse").label,
        ReasonMAP(frames="all").label,
        ReasonTopK().label,
        ReasonTopK(k=3, level="coarse").label,
    }
    assert labels == {
        "reason_map",
        "reason_map_coarse",
        "reason_map_all",
        "reason_top1",
        "reason_top3_coarse",
    }
    with pytest.raises(InputError, match="level must be"):
        ReasonMAP(level="medium")
    with pytest.raises(InputError, match="frames must be"):
        ReasonTopK(frames="normal")


@pytest.mark.parametrize("level", ["fine", "coarse"])
@pytest.mark.parametrize("frames", ["anomalous", "all"])
def test_registered_values_equal_the_functions(level, frames):
    truth, labels, scores, y = random_video(1)
    rec, expl = make_record(truth, labels, scores)
    labelled = y.any(axis=1)
    used = labelled if frames == "anomalous" else labelled | (labels == 0)
    yy, ss = y, scores
    if level == "coarse":
        m = VOCAB.coarse_matrix()
        yy, ss = coarse_labels(y, m), coarse_scores(scores, m)
    v = run(ReasonMAP(level=level, frames=frames), rec, expl)
    assert v.value == pytest.approx(quiet(reason_map, yy[used], ss[used]), rel=1e-12)
    assert v.n == int(used.sum())
    unlabelled = int(((labels == 1) & ~labelled).sum())
    assert unlabelled and f"{unlabelled} anomalous frames without reason labels" in v.note
    assert f"level={level}" in v.note and f"frames={frames}" in v.note
    kind = f"reason_ap_{level}" + ("_all" if frames == "all" else "")
    x, ap = v.curves[kind]
    assert np.array_equal(ap, quiet(reason_ap, yy[used], ss[used]), equal_nan=True)
    assert x.tolist() == list(range(len(ap)))
    for k in (1, 2):
        t = run(ReasonTopK(k=k, level=level, frames=frames), rec, expl)
        assert t.value == pytest.approx(quiet(reason_top_k, yy, ss, k=k))
        assert t.n == int(labelled.sum())
        assert np.array_equal(np.isnan(t.per_image), ~labelled)
        assert t.ids == rec.ids
        assert len(t.excluded) == unlabelled


def test_frames_all_counts_normal_frames_as_negatives():
    truth = [(NAMES[0],), (NAMES[1],), ()]
    labels = [1, 1, 0]
    scores = np.array([[0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0], [0.95, 0.95, 0, 0]])
    rec, expl = make_record(truth, labels, scores)
    assert run(ReasonMAP(), rec, expl).value == 1.0
    # the normal frame outranks both positives: AP 1/2 for each of the two reasons
    assert run(ReasonMAP(frames="all"), rec, expl).value == pytest.approx(0.5)
    assert run(ReasonTopK(), rec, expl).value == run(ReasonTopK(frames="all"), rec, expl).value


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.booleans(), min_size=40, max_size=40))
def test_merge_of_any_split_equals_the_whole(seed, side):
    truth, labels, scores, _ = random_video(seed)
    rec, expl = make_record(truth, labels, scores)
    a = [i for i, s in enumerate(side) if s]
    b = [i for i, s in enumerate(side) if not s]
    for m in (
        ReasonMAP(),
        ReasonMAP(level="coarse", frames="all"),
        ReasonTopK(k=2),
        ReasonTopK(level="coarse"),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            whole = m.compute(m.update(m.init(), rec, expl))
            sa = m.update(m.init(), rec.subset(a), expl.subset(a)) if a else m.init()
            sb = m.update(m.init(), rec.subset(b), expl.subset(b)) if b else m.init()
            merged = m.compute(m.merge(sa, sb))
            swapped = m.compute(m.merge(pickle.loads(pickle.dumps(sb)), sa))
        for v in (merged, swapped):
            assert v.value == whole.value or (np.isnan(v.value) and np.isnan(whole.value))
            assert v.n == whole.n
            if whole.per_image is not None:
                got = dict(zip(v.ids, v.per_image.tolist(), strict=True))
                ref = dict(zip(whole.ids, whole.per_image.tolist(), strict=True))
                assert got.keys() == ref.keys()
                assert all(got[i] == ref[i] or math.isnan(got[i]) for i in ref)


def test_one_state_serves_every_option_and_reorders_columns():
    truth, labels, scores, _ = random_video(3)
    rec, expl = make_record(truth, labels, scores)
    mp, tk = ReasonMAP(), ReasonTopK(level="coarse")
    assert mp.shares() == tk.shares()
    state = mp.update(mp.init(), rec.subset(range(20)), expl.subset(range(20)))
    # the second batch names its columns in another order
    perm = [2, 0, 3, 1]
    rec2, expl2 = make_record(
        truth[20:], labels[20:], scores[20:, perm], prefix="g", names=[NAMES[j] for j in perm]
    )
    rec2 = Record(rec.subset(range(20, 40)).inputs, rec2.targets)
    state = tk.update(state, rec2, expl2)
    whole = run(mp, rec, expl)
    assert quiet(mp.compute, state).value == whole.value
    assert quiet(tk.compute, state).value == run(tk, rec, expl).value


def test_per_reason_ap_and_confusion_from_a_state():
    truth, labels, scores, y = random_video(4)
    rec, expl = make_record(truth, labels, scores)
    m = ReasonMAP()
    state = m.update(m.init(), rec, expl)
    names, ap = m.per_reason(state)
    assert names == VOCAB.names
    used = y.any(axis=1)
    assert np.array_equal(ap, reason_ap(y[used], scores[used]), equal_nan=True)
    names, c = m.confusion(state)
    assert np.array_equal(c, reason_confusion(y[used], scores[used]))
    cn, cc = ReasonMAP(level="coarse").confusion(state)
    assert cn == ["action", "location", "object"] and cc.shape == (3, 3)
    mc = VOCAB.coarse_matrix()
    ref = reason_confusion(coarse_labels(y[used], mc), coarse_scores(scores[used], mc))
    assert np.array_equal(cc, ref)


def test_no_frame_with_reasons_is_nan_with_a_warning():
    rec, expl = make_record([(), ()], [0, 1], np.zeros((2, 4)))
    m = ReasonMAP()
    with pytest.warns(UndefinedMetricWarning, match="no frame with reason labels"):
        v = m.compute(m.update(m.init(), rec, expl))
    assert np.isnan(v.value) and v.n == 0 and "1 anomalous frames without reason" in v.note
    with pytest.warns(UndefinedMetricWarning, match="no frame with reason labels"):
        assert np.isnan(ReasonTopK().compute(m.init()).value)


def test_update_errors_name_what_is_wrong():
    m = ReasonMAP()
    truth = [(NAMES[0],), ()]
    rec, expl = make_record(truth, [1, 0], np.zeros((2, 4)))
    # an explanation without reason scores
    r0, e0 = make_record(truth, [1, 0], None)
    with pytest.raises(InputError, match="explainer 'why' gives no reason scores"):
        m.update(m.init(), r0, e0)
    # a true reason the explainer does not score
    r1, e1 = make_record([(("action", "swim"),), ()], [1, 0], np.zeros((2, 4)))
    with pytest.raises(InputError, match=r"frame 'f000' has true reason \('action', 'swim'\)"):
        m.update(m.init(), r1, e1)
    # no reason labels in the record
    r2 = Record(rec.inputs, Targets(labels=np.array([1, 0])))
    with pytest.raises(InputError, match="no reason labels"):
        m.update(m.init(), r2, expl)
    # reasons on a frame labelled normal
    r3, e3 = make_record([(), (NAMES[1],)], [1, 0], np.zeros((2, 4)))
    with pytest.raises(InputError, match="frame 'f001' has reason labels but is labelled normal"):
        m.update(m.init(), r3, e3)
    # scores and names disagree, non-finite scores, wrong number of rows
    r4, e4 = make_record(truth, [1, 0], np.zeros((2, 3)))
    with pytest.raises(InputError, match="3 columns but reason_names names 4"):
        m.update(m.init(), r4, e4)
    bad = np.zeros((2, 4))
    bad[1, 2] = np.nan
    r5, e5 = make_record(truth, [1, 0], bad)
    with pytest.raises(InputError, match=r"explanation.reasons holds a non-finite .*\(1, 2\)"):
        m.update(m.init(), r5, e5)
    r6, e6 = make_record(truth, [1, 0], np.zeros((2, 4)), names=[NAMES[0]] * 4)
    with pytest.raises(InputError, match="reason_names repeats"):
        m.update(m.init(), r6, e6)
    # the same frame twice
    state = m.update(m.init(), rec, expl)
    with pytest.raises(InputError, match="'f000' is given twice"):
        m.update(state, rec, expl)
    with pytest.raises(InputError, match="both states hold sample id"):
        m.merge(state, m.update(m.init(), rec, expl))
    # another reason set in a later batch
    r7, e7 = make_record(truth, [1, 0], np.zeros((2, 4)), prefix="h")
    e7.reason_names = (("action", "swim"),) + NAMES[1:]
    r7.targets.reasons = [(), ()]
    with pytest.raises(InputError, match="reason columns differ"):
        m.update(state, r7, e7)
