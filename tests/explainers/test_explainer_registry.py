"""build_explainer: names, spec mappings, clear errors."""

from __future__ import annotations

import pytest

from xeval.errors import ConfigError
from xeval.explainers import (
    EXPLAINERS,
    CentrePrior,
    NativeMap,
    RandomMap,
    SobelEdges,
    build_explainer,
)


@pytest.mark.parametrize(
    ("spec", "cls"),
    [("native", NativeMap), ("random", RandomMap), ("sobel", SobelEdges), ("centre", CentrePrior)],
)
def test_names(spec, cls):
    ex = build_explainer(spec)
    assert type(ex) is cls and ex.name == spec and EXPLAINERS[spec] is cls


def test_mapping_specs():
    assert build_explainer({"name": "random", "params": {"seed": 4}}).seed == 4
    assert build_explainer({"name": "random", "seed": 2}).config() == {"name": "random", "seed": 2}
    assert build_explainer({"name": "centre", "sigma_fraction": 0.1}).sigma_fraction == 0.1


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown explainer 'gradcamm'") as info:
        build_explainer("gradcamm")
    for name in ("native", "random", "sobel", "centre"):
        assert name in str(info.value)


def test_bad_params_and_specs():
    with pytest.raises(ConfigError, match=r"'random'.*\['colour'\].*valid options: \['seed'\]"):
        build_explainer({"name": "random", "colour": 1})
    with pytest.raises(ConfigError, match="'name'"):
        build_explainer({"seed": 1})
    with pytest.raises(ConfigError, match="name or a mapping"):
        build_explainer(3)
