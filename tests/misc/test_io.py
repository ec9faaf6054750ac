"""Atomic writes and safe paths."""

from __future__ import annotations

import os
import stat

import pytest

from xeval._io import atomic_write_text, safe_join
from xeval.errors import InputError


def test_atomic_write_leaves_no_temporary_and_normal_mode(tmp_path):
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert p.read_text() == "hello"
    assert [x.name for x in p.parent.iterdir()] == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_safe_join_refuses_escape(tmp_path):
    assert safe_join(tmp_path, "a", "b.txt") == (tmp_path / "a" / "b.txt").resolve()
    with pytest.raises(InputError, match="escapes"):
        safe_join(tmp_path, "..", "x")
