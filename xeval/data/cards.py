"""Dataset cards: the declarative ``datasets/*.yaml`` files that describe each
registered dataset format (description, layout, license, source, options).

A card is documentation that cannot drift: the tests check that every registered format
has a card and that the card's ``options`` are exactly the reader's options. Runs record
the card's name, license and source in their manifest, so a report says under which
terms its data may be used. Cards are read with ``yaml.safe_load`` and never name code.
"""

from __future__ import annotations

from functools import cache

import yaml

from xeval.assets import asset_dir

__all__ = ["dataset_card", "dataset_cards"]


@cache
def dataset_cards() -> dict[str, dict]:
    """``{format: card}`` of every card in ``datasets/``."""
    out = {}
    for path in sorted(asset_dir("datasets").glob("*.yaml")):
        card = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(card, dict) and isinstance(card.get("format"), str):
            out[card["format"]] = {**card, "file": path.name}
    return out


def dataset_card(fmt: str) -> dict | None:
    """The card of dataset format ``fmt`` (None when it has none)."""
    return dataset_cards().get(fmt)
