"""Dataset cards (datasets/*.yaml) match the dataset registry: one card per format, the
card's options are the reader's options."""

from __future__ import annotations

import pytest

from xeval.data.cards import dataset_card, dataset_cards
from xeval.registry import DATASETS, VIDEO_DATASETS, option_spec

FORMATS = [(DATASETS, f) for f in DATASETS.names()] + [
    (VIDEO_DATASETS, f) for f in VIDEO_DATASETS.names()
]


@pytest.mark.parametrize(("registry", "fmt"), FORMATS, ids=[f for _, f in FORMATS])
def test_every_format_has_a_matching_card(registry, fmt):
    card = dataset_card(fmt)
    assert card is not None, f"no datasets/*.yaml card with format: {fmt}"
    for key in ("name", "description", "layout", "license", "source", "options"):
        assert key in card, (fmt, key)
    reader = set(option_spec(registry.get(fmt))) - {"seed"}
    assert set(card["options"]) - {"seed"} == reader, fmt
    assert "reader" not in card  # cards never name code


def test_cards_are_only_for_registered_formats():
    assert set(dataset_cards()) == set(DATASETS.names()) | set(VIDEO_DATASETS.names())
