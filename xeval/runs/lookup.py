"""Finding a run by reference: a run id, a unique prefix of one (or of its random part),
or a run folder (:func:`load_run`)."""

from __future__ import annotations

import os
from pathlib import Path

from xeval.errors import InputError
from xeval.runs import store
from xeval.runs.record import RunRecord, read_run_folder


def _looks_like_path(ref: str) -> bool:
    seps = {"/", os.sep, os.altsep} - {None}
    return any(s in ref for s in seps) or ref in (".", "..") or ref.startswith("~")


def _from_registry(conn, run_id: str) -> RunRecord:
    run = store.get_run(conn, run_id)
    return RunRecord(
        run={k: v for k, v in run.items() if k != "id"},
        results=store.load_results(conn, run_id),
        per_image=store.load_per_image(conn, run_id),
        id=run_id,
    )


def _registry_state(registry) -> str:
    """``"ok"``, ``"disabled"`` or ``"missing"``."""
    path = store.registry_path(registry)
    if path is None:
        return "disabled"
    return "ok" if path.is_file() else "missing"


def load_run(ref: str, *, registry: str | os.PathLike | None = None) -> RunRecord:
    """The run ``ref`` names, with its results and per-image values.

    ``ref`` is, in this order: an existing folder (or a path): the newest run recorded
    for that folder (its resolved path), else the folder itself read directly when it
    holds a finished run (:func:`~xeval.runs.record.read_run_folder`); a run id; a unique
    prefix of an id or of its random part. No such run, an ambiguous prefix, a missing or
    disabled registry: :class:`~xeval.runs.store.RegistryError` (close matches listed).
    """
    ref = str(ref)
    folder = Path(ref).expanduser()
    state = _registry_state(registry)
    if folder.is_dir() or _looks_like_path(ref):
        if state == "ok":
            with store.connect(registry) as (conn, _):
                ids = store.runs_in_folder(conn, folder.resolve())
                if ids:
                    return _from_registry(conn, ids[0])
        if folder.is_dir():
            try:
                return read_run_folder(folder)
            except InputError as exc:
                raise store.RegistryError(
                    f"run {ref!r}: no run recorded for this folder, and {exc}"
                ) from exc
        raise store.RegistryError(
            f"run {ref!r}: no such folder, and no run recorded for it in the registry"
        )
    if state != "ok":
        why = (
            f"the run registry is disabled ({store.disabled_reason(registry)})"
            if state == "disabled"
            else f"the run registry {store.registry_path(registry)} does not exist"
        )
        raise store.RegistryError(
            f"run {ref!r}: {why}; name a run folder instead, or give the registry with "
            f"--registry PATH"
        )
    with store.connect(registry) as (conn, path):
        ids = store.match_ids(conn, ref)
        if len(ids) == 1:
            return _from_registry(conn, ids[0])
        if len(ids) > 1:
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            raise store.RegistryError(
                f"run {ref!r} is ambiguous: it is the start of {len(ids)} run ids in {path} "
                f"({shown}); give more characters"
            )
        close = store.similar_ids(conn, ref)
        n = store.count_runs(conn)
        if close:
            hint = f"; close matches: {', '.join(close)}"
        else:
            newest = [r["id"] for r in store.list_runs(conn, limit=5)]
            hint = f"; newest: {', '.join(newest)}" if newest else ""
        raise store.RegistryError(
            f"run {ref!r}: no run id (or prefix of one) and no run folder of that name; "
            f"{n} run(s) in {path}{hint} (xeval runs lists them)"
        )
