"""Shared fixtures: where the reference fixtures live, a tiny MVTec tree, a private run
registry for the whole session; the run header says whether the optional cross-check
packages are required (see `_crosscheck.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _private_run_registry(tmp_path_factory):
    """Runs recorded by the tests (``xeval demo`` / ``run`` / ``score`` through the CLI)
    go to a registry in the session's temporary folder, never into the user's cache
    (``$XEVAL_REGISTRY``, inherited by child processes)."""
    path = tmp_path_factory.mktemp("run_registry") / "runs.sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XEVAL_REGISTRY", str(path))
        yield path


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
