"""Shared fixtures: where the reference fixtures live, a tiny MVTec tree."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    d = SHARED / "reference"
    if not (d / "expected.json").exists():
        pytest.skip("shared/reference fixtures not found beside the checkout")
    return d
