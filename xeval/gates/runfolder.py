"""A finished run folder as the gates read it: ``results.csv``, ``manifest.json`` and,
when a gate asks for verdicts, ``verdicts.csv``.

Image runs (:mod:`xeval.reports.writer`) and video runs (:mod:`xeval.reports.video`)
write the same long ``results.csv``; their ``verdicts.csv`` differ: an image run has
one row per control plus an ``"all controls"`` row per detector, explainer and metric
(:data:`xeval.engine.verdicts.VERDICT_COLUMNS`), a video run one row per detector,
explainer and metric (its verdict against every control, with the best control and the
smallest z). Anything missing or unreadable is an :class:`~xeval.errors.InputError`
naming the option, the folder and the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xeval.errors import InputError

__all__ = ["RESULT_KEY_COLUMNS", "RunFolder", "read_run"]

#: Columns of ``results.csv`` the gates need.
RESULT_KEY_COLUMNS = (
    "detector",
    "explainer",
    "dataset",
    "category",
    "protocol",
    "metric",
    "label",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "higher_is_better",
    "control",
)


@dataclass
class RunFolder:
    """A finished run: its folder, results table and manifest; ``option`` is the
    command-line option that named it (``--run`` / ``--baseline``) for messages."""

    path: Path
    results: pd.DataFrame
    manifest: dict
    option: str = "--run"
    _verdicts: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def config_hash(self) -> str:
        return str(self.manifest.get("config_hash") or "unknown")

    @property
    def dataset_fingerprint(self) -> str:
        return str(self.manifest.get("dataset_fingerprint") or "unknown")

    def verdicts(self) -> pd.DataFrame:
        """``verdicts.csv`` (read once); InputError when it is missing or unreadable."""
        if self._verdicts is None:
            path = self.path / "verdicts.csv"
            if not path.is_file():
                raise InputError(
                    f"{self.option} {self.path}: no verdicts.csv (a gate asks for a verdict; "
                    "this run wrote no verdicts)"
                )
            v = _read_csv(path, self.option, dtype=str, keep_default_na=False)
            need = {"detector", "explainer", "metric", "verdict"}
            _need_columns(v, need, path, self.option)
            self._verdicts = v
        return self._verdicts


def read_run(path: str | Path, *, option: str = "--run") -> RunFolder:
    """Read a finished run folder (see the module docstring).

    Raises
    ------
    InputError
        ``path`` is not a folder, has no ``results.csv`` or ``manifest.json`` (not a
        finished run), or one of them cannot be read or lacks a needed column.
    """
    from xeval.reports.writer import read_results_csv

    p = Path(path)
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is not a folder"
        raise InputError(f"{option} {p} {what} (expected a finished run folder)")
    for name in ("results.csv", "manifest.json"):
        if not (p / name).is_file():
            raise InputError(
                f"{option} {p}: no {name} (not a finished run folder: a finished run has "
                "results.csv and manifest.json)"
            )
    try:
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{option} {p}: cannot read manifest.json ({exc})") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"{option} {p}: manifest.json is not a JSON object")
    results_path = p / "results.csv"
    header = _read_csv(results_path, option, nrows=0)
    _need_columns(header, set(RESULT_KEY_COLUMNS), results_path, option)
    try:
        results = read_results_csv(results_path)
    except (OSError, ValueError, TypeError, KeyError, pd.errors.ParserError) as exc:
        raise InputError(f"{option} {results_path}: cannot read the results table ({exc})") from exc
    if results.empty:
        raise InputError(f"{option} {results_path}: the results table has no rows")
    return RunFolder(path=p, results=results, manifest=manifest, option=option)


def _read_csv(path: Path, option: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{option} {path}: cannot read the CSV file ({exc})") from exc


def _need_columns(df: pd.DataFrame, need: set[str], path: Path, option: str) -> None:
    missing = sorted(need - set(df.columns))
    if missing:
        raise InputError(
            f"{option} {path}: missing column(s) {missing} (found {list(df.columns)}); "
            "expected a file written by xeval"
        )
