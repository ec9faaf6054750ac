"""Finished quick demo runs (image and video), made once per test session in the
session's base temporary folder and shared by the rebuild and browser tests (which
copy them before changing anything)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

TIMINGS: dict[str, float] = {}


def demo_run(tmp_path_factory, *, video: bool = False) -> Path:
    """The folder of ``xeval demo --quick [--video]``, made on first use this session."""
    from xeval.cli import main

    name = "video-quick" if video else "demo-quick"
    out = tmp_path_factory.getbasetemp() / f"xeval-{name}"
    done = out / ".test-done"
    if not done.is_file():
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        rc = main(["demo", "--quick", *(["--video"] if video else []), "--out", str(out)])
        TIMINGS[name] = time.perf_counter() - t
        assert rc == 0, f"xeval demo --quick {'--video' if video else ''} failed"
        done.write_text("ok\n")
    return out


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a run folder (without the test marker)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".test-done"))
    return dst
