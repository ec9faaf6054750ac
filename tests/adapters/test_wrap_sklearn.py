"""xeval.wrap on scikit-learn / PyOD estimators: sign fix, patch maps, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from xeval.adapters.sklearn import SklearnFeaturesDetector, color_stats, is_pyod, patch_stats
from xeval.adapters.wrap import infer_kind, wrap
from xeval.errors import InputError

H = W = 16


def flat_images(values: np.ndarray) -> np.ndarray:
    """Images constant per channel: the channel means are the features."""
    return np.broadcast_to(values[:, :, None, None], (len(values), 3, H, W)).astype(np.float32)


def channel_means(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3))


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    normal = flat_images(0.5 + 0.03 * rng.standard_normal((200, 3)))
    test_normal = flat_images(0.5 + 0.03 * rng.standard_normal((20, 3)))
    outliers = flat_images(0.5 + np.array([[0.3, -0.3, 0.3]]) + 0.01 * rng.standard_normal((5, 3)))
    return normal, test_normal, outliers


@pytest.mark.parametrize(
    "estimator",
    [
        IsolationForest(n_estimators=100, random_state=0),
        EllipticEnvelope(random_state=0),
        LocalOutlierFactor(n_neighbors=20, novelty=True),
        OneClassSVM(gamma="scale", nu=0.1),
    ],
    ids=lambda e: type(e).__name__,
)
def test_sign_is_fixed_planted_outliers_score_higher(estimator):
    normal, test_normal, outliers = data()
    det = wrap(estimator, features=channel_means, input_size=H)
    assert isinstance(det, SklearnFeaturesDetector)
    assert det.score_method == "score_samples" and det.higher_is_anomalous is False
    det.fit([normal[:100], normal[100:]])
    s_norm, m = det.predict(test_normal)
    s_out = det.score(outliers)
    assert s_norm.shape == (20,) and m.shape == (20, 0, 0) and s_norm.dtype == np.float32
    assert s_out.min() > s_norm.max()
    # exactly the negated score_samples
    np.testing.assert_allclose(
        s_out, -estimator.score_samples(channel_means(outliers)), rtol=1e-5, atol=1e-6
    )
    assert det.has_map is False and det.torch_score() is None
    with pytest.raises(InputError, match="image scores only"):
        det.anomaly_map(outliers)


def test_explicit_direction_and_method():
    normal, test_normal, outliers = data()
    est = EllipticEnvelope(random_state=0)
    det = wrap(
        est,
        features=channel_means,
        input_size=H,
        score_method="mahalanobis",
        higher_is_anomalous=True,
    )
    det.fit([normal])
    np.testing.assert_allclose(
        det.score(outliers), est.mahalanobis(channel_means(outliers)), rtol=1e-5
    )
    assert det.score(outliers).min() > det.score(test_normal).max()


def test_patch_features_give_a_map_peaking_at_the_defect():
    rng = np.random.default_rng(0)
    normal = (0.5 + 0.02 * rng.standard_normal((30, 3, H, W))).astype(np.float32)
    test = (0.5 + 0.02 * rng.standard_normal((4, 3, H, W))).astype(np.float32)
    test[:2, :, 8:12, 4:8] = 0.95  # one 4x4 patch of the 4x4 grid: row 2, col 1
    det = wrap(
        IsolationForest(random_state=0),
        features="patch_stats",
        feature_params={"patch": 4},
        input_size=H,
        max_fit_samples=300,
        seed=1,
    )
    assert det.has_map is True  # probed on the features before fitting
    s, m = det.fit([normal]).predict(test)
    assert m.shape == (4, 4, 4) and s.shape == (4,)
    np.testing.assert_allclose(s, m.reshape(4, -1).max(axis=1))
    for i in range(2):
        assert np.unravel_index(m[i].argmax(), m[i].shape) == (2, 1)
    assert s[:2].min() > s[2:].max()
    assert det.n_fit_rows_ == 300
    assert det.config()["features"] == "patch_stats"


def test_builtin_extractors_shapes():
    x = np.random.default_rng(0).random((2, 3, H, W)).astype(np.float32)
    assert color_stats(x).shape == (2, 9)
    f = patch_stats(x, patch=4, stride=2)
    assert f.shape == (2, 7, 7, 6)
    np.testing.assert_allclose(f[1, 3, 2, :3], x[1, :, 6:10, 4:8].mean(axis=(1, 2)), rtol=1e-5)
    det = wrap(
        IsolationForest(random_state=0), features="pixels", feature_params={"size": 4}, input_size=H
    )
    assert det.fit([x]).score(x).shape == (2,)


def test_errors():
    with pytest.raises(InputError, match="novelty=True"):
        wrap(LocalOutlierFactor(), features=channel_means)
    with pytest.raises(InputError, match="has no method 'nope'"):
        wrap(IsolationForest(), features=channel_means, score_method="nope")
    det = wrap(IsolationForest(), features=lambda x: np.ones(len(x)), name="iso", input_size=H)
    with pytest.raises(InputError, match=r"SklearnFeaturesDetector 'iso'.*features .* returned"):
        det.fit([flat_images(np.full((4, 3), 0.5))])
    det = wrap(IsolationForest(), features=lambda x: np.full((len(x), 2), np.nan), name="iso")
    with pytest.raises(InputError, match="NaN"):
        det.fit([flat_images(np.full((4, 3), 0.5))])
    det = wrap(IsolationForest(), features=channel_means, name="iso")
    with pytest.raises(InputError, match="not fitted"):
        det.predict(flat_images(np.full((4, 3), 0.5)))
    with pytest.raises(InputError, match="level='patch'"):
        wrap(IsolationForest(), features=channel_means, level="patch").fit(
            [flat_images(np.full((4, 3), 0.5))]
        )


class FakePyOD:
    """Mimics PyOD's API: decision_function is higher = more anomalous."""

    def fit(self, X):
        self.mu = X.mean(axis=0)
        self.decision_scores_ = self.decision_function(X)
        return self

    def decision_function(self, X):
        return np.linalg.norm(X - self.mu, axis=1)


FakePyOD.__module__ = "pyod.models.fake"


def test_pyod_convention_detected_by_module_name():
    normal, test_normal, outliers = data()
    est = FakePyOD()
    assert is_pyod(est) and infer_kind(est) == "sklearn_features"
    det = wrap(est, features=channel_means, input_size=H).fit([normal])
    assert det.score_method == "decision_function" and det.higher_is_anomalous is True
    assert det.score(outliers).min() > det.score(test_normal).max()


def test_real_pyod_estimators():
    from _crosscheck import require

    require("pyod")
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN

    normal, test_normal, outliers = data()
    for est in (IForest(random_state=0), KNN()):
        det = wrap(est, features=channel_means, input_size=H).fit([normal])
        assert det.higher_is_anomalous is True
        assert det.score(outliers).min() > det.score(test_normal).max()
