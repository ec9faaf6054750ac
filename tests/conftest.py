"""Shared fixtures: where the reference fixtures live, a tiny MVTec tree; the run header
says whether the optional cross-check packages are required (see `_crosscheck.py`)."""

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


def pytest_report_header(config) -> str:
    from _crosscheck import required

    if required():
        return "cross-checks: required (XEVAL_REQUIRE_CROSSCHECKS): a missing package fails"
    return "cross-checks: optional (a missing Quantus/PyOD/anomalib skips; CI requires them)"
