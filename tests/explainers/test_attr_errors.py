"""Bad inputs give clear InputErrors naming the method, the detector and what it did."""

from __future__ import annotations

import numpy as np
import pytest
from _attr_toys import (
    BlackBox,
    Detached,
    LinearDetector,
    NaNScore,
    ThroughNumpy,
    TinyAEDetector,
    WrongShape,
    images,
    region_weights,
)

from xeval.errors import InputError
from xeval.explainers import attribution as A
from xeval.explainers.api import explain, make_explainer

W = region_weights()
X = images(2)
REF = images(3, seed=1)


def test_wrong_shape_named():
    with pytest.raises(InputError, match=r"saliency.*'wrong_shape'.*shape \(2, 2\).*\(2,\)"):
        explain(WrongShape(W), X, "saliency")


def test_nan_scores_named():
    with pytest.raises(InputError, match=r"'nan_score'.*non-finite score"):
        explain(NaNScore(W), X, "integrated_gradients", reference=REF)


@pytest.mark.parametrize("det", [Detached(W), ThroughNumpy(W)])
def test_not_differentiable_named(det):
    with pytest.raises(InputError, match=rf"{det.name}.*does not require grad"):
        explain(det, X, "saliency")


def test_grad_cam_on_detached_score():
    class D(TinyAEDetector):
        name = "detached_ae"

        def torch_score(self):
            return lambda x: self.model.score(x).detach()

    with pytest.raises(InputError, match=r"detached_ae.*not differentiable"):
        explain(D(), X, "grad_cam")


@pytest.mark.parametrize("method", ["deeplift", "saliency", "grad_cam", "smoothgrad"])
def test_black_box_pairing_lists_working_methods(method):
    with pytest.raises(InputError) as ei:
        explain(BlackBox(W), X, method, reference=REF)
    msg = str(ei.value)
    assert method in msg and "'black_box' (BlackBox)" in msg and "torch_score() is None" in msg
    assert "occlusion" in msg and "feature_ablation" in msg and "native" in msg
    assert "integrated_gradients," not in msg


def test_black_box_perturbation_works():
    m = explain(BlackBox(W), X, "occlusion", reference=REF, window=4, stride=4)
    assert m.shape == (2, 16, 16) and m.dtype == np.float32


def test_label_free_needs_encoder():
    with pytest.raises(InputError, match=r"label_free.*encoder\(\) hook is None"):
        explain(LinearDetector(W), X, "label_free")


def test_grad_cam_unknown_layer_lists_layers():
    with pytest.raises(InputError, match=r"no layer 'nope'.*conv layers: \['enc'\]"):
        explain(TinyAEDetector(), X, "grad_cam", layer="nope")


def test_missing_baseline_says_how_to_pass_one():
    with pytest.raises(InputError, match=r"integrated_gradients needs a baseline.*reference=.*"
                       r"baseline=.*fit_reference"):  # fmt: skip
        explain(LinearDetector(W), X, "integrated_gradients")


def test_fit_reference_supplies_it():
    e = A.IntegratedGradients()
    e.fit_reference(REF)
    assert e.config()["baseline"]["name"] == "normal_reference"
    np.testing.assert_allclose(e.attribute(LinearDetector(W), X), W * (X - REF.mean(0)),
                               atol=1e-5)  # fmt: skip
    # an explicit baseline is not overridden by fit_reference
    e2 = A.IntegratedGradients(baseline="black").fit_reference(REF)
    assert e2.config()["baseline"]["name"] == "black"


def test_bad_params():
    with pytest.raises(InputError, match="unknown explanation method 'lrp'"):
        make_explainer("lrp")
    with pytest.raises(InputError, match=r"bad parameters \['n_stepz'\]"):
        make_explainer("integrated_gradients", n_stepz=3)
    with pytest.raises(InputError, match="reduce must be one of"):
        make_explainer("saliency", reduce="mean")
    with pytest.raises(InputError, match=r"saliency.*bad parameters \[.baseline.\]"):
        make_explainer("saliency", baseline="black")
    with pytest.raises(InputError, match="takes one baseline"):
        explain(LinearDetector(W), X, "integrated_gradients", baseline=REF)
    with pytest.raises(InputError, match=r"baseline has shape \(C, H, W\) = \(3, 8, 8\)"):
        explain(LinearDetector(W), X, "deeplift", baseline=np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InputError, match="images hold non-finite values"):
        explain(LinearDetector(W), X * np.nan, "saliency")
    with pytest.raises(InputError, match="shape"):
        explain(LinearDetector(W), X[0], "saliency")
