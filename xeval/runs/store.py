"""The run registry's database: an embedded SQLite file (standard library ``sqlite3``).

Where it is
-----------
:func:`registry_path` resolves, first match wins: the ``--registry PATH`` option (the
``registry`` argument), the environment variable ``XEVAL_REGISTRY``, else
``runs.sqlite`` in the xeval cache folder (``$XEVAL_CACHE``, else ``~/.cache/xeval``).
The value ``none`` or ``off`` (any case) of the option or of the variable disables the
registry: nothing is recorded (write ``./none`` for a file of that name).

How it is kept consistent
-------------------------
- WAL journal mode (readers never block the writer, concurrent runs do not corrupt it),
  ``busy_timeout`` (a writer waits up to :data:`BUSY_TIMEOUT_S` for another one),
  foreign keys on (``results`` and ``per_image`` rows belong to a run and go with it).
- One run is inserted in one transaction (``BEGIN IMMEDIATE ... COMMIT``): a process
  killed half way leaves no rows of that run (SQLite rolls the journal back on the next
  open).
- The schema has a version (table ``schema_version``); a registry written by a newer
  xeval is refused with a message saying so, an older one is migrated in place
  (:data:`MIGRATIONS`, one step per version).

Schema (version 1)
------------------
``runs``: one row per recorded run: ``id`` (see :func:`new_run_id`), ``recorded``,
``started``, ``finished`` (ISO 8601 UTC), ``command`` (run / demo / score), ``argv``
(JSON list), ``task`` (image / video / score), ``config_name``, ``config_hash``,
``config_source``, ``seed``, ``dataset_name``, ``dataset_fingerprint``,
``dataset_fingerprint_kind``, ``detectors``, ``explainers``, ``categories`` (JSON
lists), ``duration_s``, ``xeval_version``, ``run_dir`` (as given), ``run_dir_resolved``
(absolute, symlinks resolved), ``manifest`` (the run's manifest as JSON).

``results``: ``run_id`` and the columns of ``results.csv``
(:data:`xeval.results.RESULT_COLUMNS`).

``per_image``: ``run_id, category, detector, explainer, id, label, value``: one row per
image and per-image metric (``label`` is the metric's label, as in ``results.csv``),
what paired tests between two runs need. NaN values are not stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from xeval.errors import InputError, XevalError

SCHEMA_VERSION = 1
"""The schema version this xeval writes (see :data:`MIGRATIONS`)."""

BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for another writer's transaction before giving up."""

REGISTRY_ENV = "XEVAL_REGISTRY"
"""Environment variable: the registry file, or ``off``/``none`` to disable recording."""

DISABLED_VALUES = frozenset({"none", "off"})
"""Values of ``--registry`` / ``$XEVAL_REGISTRY`` (any case) that disable the registry."""

REGISTRY_FILE = "runs.sqlite"

RESULT_FIELDS = (
    "detector",
    "explainer",
    "dataset",
    "category",
    "protocol",
    "metric",
    "label",
    "family",
    "params",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "higher_is_better",
    "control",
    "headline",
    "threshold",
    "note",
)
"""The columns of ``results.csv`` kept in the ``results`` table (in this order)."""

RUN_FIELDS = (
    "id",
    "recorded",
    "started",
    "finished",
    "command",
    "argv",
    "task",
    "config_name",
    "config_hash",
    "config_source",
    "seed",
    "dataset_name",
    "dataset_fingerprint",
    "dataset_fingerprint_kind",
    "detectors",
    "explainers",
    "categories",
    "duration_s",
    "xeval_version",
    "run_dir",
    "run_dir_resolved",
    "manifest",
)
"""The columns of the ``runs`` table (in this order)."""

JSON_RUN_FIELDS = ("argv", "detectors", "explainers", "categories", "manifest")
"""Columns of ``runs`` holding JSON text."""

PER_IMAGE_FIELDS = ("category", "detector", "explainer", "id", "label", "value")

_SCHEMA_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    recorded TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    command TEXT NOT NULL,
    argv TEXT,
    task TEXT,
    config_name TEXT,
    config_hash TEXT,
    config_source TEXT,
    seed INTEGER,
    dataset_name TEXT,
    dataset_fingerprint TEXT,
    dataset_fingerprint_kind TEXT,
    detectors TEXT,
    explainers TEXT,
    categories TEXT,
    duration_s REAL,
    xeval_version TEXT,
    run_dir TEXT,
    run_dir_resolved TEXT,
    manifest TEXT
);
CREATE INDEX runs_finished ON runs (finished);
CREATE INDEX runs_run_dir ON runs (run_dir_resolved);
-- value columns have no declared type (BLOB affinity): a REAL column would store a
-- whole-number float as an integer and lose the sign of -0.0
CREATE TABLE results (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    detector TEXT, explainer TEXT, dataset TEXT, category TEXT, protocol TEXT,
    metric TEXT, label TEXT, family TEXT, params TEXT,
    value, ci_low, ci_high, n INTEGER,
    higher_is_better INTEGER, control INTEGER, headline INTEGER,
    threshold, note TEXT
);
CREATE INDEX results_run ON results (run_id);
CREATE TABLE per_image (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    category TEXT NOT NULL, detector TEXT NOT NULL, explainer TEXT NOT NULL,
    id TEXT NOT NULL, label TEXT NOT NULL, value NOT NULL
);
CREATE INDEX per_image_run ON per_image (run_id, label);
"""

MIGRATIONS: dict[int, str] = {}
"""``version -> SQL`` bringing a registry of schema ``version`` to ``version + 1`` (none
yet: version 1 is the first). :func:`connect` applies them in order, in the transaction
that checks the version."""


class RegistryError(XevalError):
    """The run registry cannot be opened or read (missing, corrupt, newer schema,
    locked), or a run reference does not name exactly one run."""


# ---------------------------------------------------------------------------- location
def default_registry_path() -> Path:
    """``runs.sqlite`` in the xeval cache folder: ``$XEVAL_CACHE``, else
    ``~/.cache/xeval`` (the rule of :func:`xeval.data.textures.default_cache_dir`,
    repeated here so that ``xeval runs`` does not import the dataset code)."""
    env = os.environ.get("XEVAL_CACHE")
    cache = Path(env).expanduser() if env else Path.home() / ".cache" / "xeval"
    return cache / REGISTRY_FILE


def is_disabled(value: str | os.PathLike | None) -> bool:
    """Whether ``value`` (of ``--registry`` or ``$XEVAL_REGISTRY``) disables the registry."""
    return isinstance(value, str) and value.strip().lower() in DISABLED_VALUES


def registry_path(registry: str | os.PathLike | None = None) -> Path | None:
    """The registry file: ``registry`` (the ``--registry`` option) if given, else
    ``$XEVAL_REGISTRY`` if set and not empty, else :func:`default_registry_path`;
    ``None`` when the chosen value is ``none``/``off`` (recording disabled)."""
    if registry is None:
        registry = os.environ.get(REGISTRY_ENV) or None
    if registry is None:
        return default_registry_path()
    if is_disabled(registry):
        return None
    text = os.fspath(registry)
    if not text.strip():
        raise InputError(
            f"--registry {text!r} is empty (expected a file path, or 'none' to disable the "
            "run registry)"
        )
    return Path(text).expanduser()


def disabled_reason(registry: str | os.PathLike | None = None) -> str:
    """Which setting disabled the registry, for messages."""
    if registry is not None:
        return f"--registry {registry}"
    return f"{REGISTRY_ENV}={os.environ.get(REGISTRY_ENV)}"


def add_registry_argument(parser) -> None:
    """Add ``--registry PATH`` to an argparse ``parser`` (``xeval run/demo/score/runs/
    compare``): the registry file; ``none``/``off`` disables recording (default: see
    :func:`registry_path`)."""
    parser.add_argument(
        "--registry",
        default=None,
        metavar="PATH",
        help=f"run registry file (SQLite; default ${REGISTRY_ENV}, else {REGISTRY_FILE} in "
        "the xeval cache folder $XEVAL_CACHE or ~/.cache/xeval); 'none' disables recording",
    )


# ---------------------------------------------------------------------------- ids
def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(ts: datetime) -> str:
    """``2026-12-01T16:18:11Z`` (UTC, seconds)."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx``: the UTC time of recording, then 6 random hex digits
    (24 bits from :mod:`secrets`). Ids sort by time; the random part keeps runs of the
    same second apart (a clash is caught by the primary key and a new id drawn). A run
    can be named by any unique prefix of its id, or of its random part."""
    now = now or utc_now()
    return f"{now.astimezone(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------- connect
def _open(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _describe(path: Path, exc: sqlite3.Error) -> str:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return (
            f"run registry {path} is not a readable SQLite database ({text}); move it away "
            f"(a new one is created on the next run) or choose another with --registry or "
            f"{REGISTRY_ENV}"
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return (
            f"run registry {path} is locked by another process for more than "
            f"{BUSY_TIMEOUT_S:g} s ({text})"
        )
    return f"run registry {path}: {text}"


def _version(conn: sqlite3.Connection) -> int | None:
    """The schema version, or ``None`` for a registry without tables (a new file)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in names:
        if names:
            raise sqlite3.DatabaseError(
                f"not a run registry: it has tables {sorted(names)} but no schema_version"
            )
        return None
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("not a run registry: its schema_version table is empty")
    return int(row[0])


def _check_newer(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        import xeval

        raise RegistryError(
            f"run registry {path} has schema version {version}, written by a newer xeval; "
            f"this xeval ({xeval.__version__}) reads versions up to {SCHEMA_VERSION}. "
            "Upgrade xeval, or choose another registry with --registry"
        )


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Create or migrate the schema (one ``BEGIN IMMEDIATE`` transaction)."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":  # e.g. a file system without shared memory
        raise sqlite3.OperationalError(f"cannot use WAL journal mode (got {mode!r})")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn)
        if version is None:
            for statement in _statements(_SCHEMA_V1):
                conn.execute(statement)
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        else:
            _check_newer(path, version)
            while version < SCHEMA_VERSION:
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                version += 1
                conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (``executescript`` would commit the transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]


@contextlib.contextmanager
def connect(
    registry: str | os.PathLike | None = None, *, write: bool = False
) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """Open the registry (see :func:`registry_path`) and yield ``(connection, path)``.

    ``write=True`` creates the file, its folder and the schema when missing and migrates
    an older schema; otherwise a missing file is a :class:`RegistryError` and the file is
    opened read-only. A corrupt file, a newer schema or a lock held longer than
    :data:`BUSY_TIMEOUT_S` are a :class:`RegistryError` naming the file.
    """
    path = registry_path(registry)
    if path is None:
        raise RegistryError(
            f"the run registry is disabled ({disabled_reason(registry)}); give a file with "
            f"--registry PATH or set {REGISTRY_ENV} to one"
        )
    if not write and not path.is_file():
        where = "" if path.exists() else " (no run has been recorded there yet)"
        raise RegistryError(
            f"run registry {path} does not exist or is not a file{where}; runs are recorded "
            f"by xeval run/demo/score, or give another registry with --registry PATH or "
            f"{REGISTRY_ENV}"
        )
    try:
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = _open(path, readonly=not write)
    except sqlite3.Error as exc:
        raise RegistryError(_describe(path, exc)) from exc
    try:
        if write:
            _prepare(conn, path)
        else:
            version = _version(conn)
            if version is None:
                raise sqlite3.DatabaseError("not a run registry: the file has no tables")
            _check_newer(path, version)
            if version < SCHEMA_VERSION:
                raise RegistryError(
                    f"run registry {path} has the older schema version {version}; it is "
                    f"upgraded to {SCHEMA_VERSION} by the next recorded run"
                )
        yield conn, path
    except sqlite3.Error as exc:
        raise RegistryError(_describe(path, exc)) from exc
    finally:
        conn.close()


# ---------------------------------------------------------------------------- write
def _sql_value(v):
    """A Python / numpy scalar as an SQLite value (NaN and None as NULL)."""
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, bool):
        return int(v)
    return v


def insert_run(
    conn: sqlite3.Connection,
    run: dict,
    results: list[tuple],
    per_image: list[tuple],
    *,
    _pause_s: float = 0.0,
    _in_transaction_marker: Path | None = None,
) -> str:
    """Insert one run (``run``: the :data:`RUN_FIELDS` but ``id``; ``results``: tuples of
    :data:`RESULT_FIELDS`; ``per_image``: tuples of :data:`PER_IMAGE_FIELDS`) in ONE
    ``BEGIN IMMEDIATE ... COMMIT`` transaction and return its new id.

    ``_pause_s`` and ``_in_transaction_marker`` are for the tests only: once the ``runs``
    row is written the marker file is created and the transaction sleeps ``_pause_s``
    seconds before the other rows (so that a test can kill the process in the middle).
    """
    values = {k: _sql_value(run.get(k)) for k in RUN_FIELDS if k != "id"}
    for k in JSON_RUN_FIELDS:
        if run.get(k) is not None:
            values[k] = json.dumps(run[k], sort_keys=True, default=str)
    cols = ", ".join(RUN_FIELDS)
    marks = ", ".join("?" * len(RUN_FIELDS))
    res_sql = (
        f"INSERT INTO results (run_id, {', '.join(RESULT_FIELDS)}) "
        f"VALUES (?, {', '.join('?' * len(RESULT_FIELDS))})"
    )
    img_sql = (
        f"INSERT INTO per_image (run_id, {', '.join(PER_IMAGE_FIELDS)}) "
        f"VALUES (?, {', '.join('?' * len(PER_IMAGE_FIELDS))})"
    )
    for _attempt in range(5):
        run_id = new_run_id()
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                conn.execute(
                    f"INSERT INTO runs ({cols}) VALUES ({marks})",
                    (run_id, *(values[k] for k in RUN_FIELDS[1:])),
                )
            except sqlite3.IntegrityError:  # the same id drawn twice in one second
                conn.execute("ROLLBACK")
                continue
            if _in_transaction_marker is not None:
                Path(_in_transaction_marker).write_text(run_id)
            if _pause_s:
                time.sleep(_pause_s)
            conn.executemany(res_sql, ((run_id, *map(_sql_value, r)) for r in results))
            conn.executemany(img_sql, ((run_id, *map(_sql_value, r)) for r in per_image))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return run_id
    raise RegistryError("could not draw a new run id after 5 attempts")  # pragma: no cover


# ---------------------------------------------------------------------------- read
def _run_row(cursor: sqlite3.Cursor, row: tuple) -> dict:
    out = {d[0]: v for d, v in zip(cursor.description, row, strict=True)}
    for k in JSON_RUN_FIELDS:
        if k in out and out[k] is not None:
            out[k] = json.loads(out[k])
    return out


def list_runs(conn: sqlite3.Connection, *, limit: int | None = None) -> list[dict]:
    """The recorded runs, newest first (``finished``, then id), without their manifests."""
    cols = ", ".join(c for c in RUN_FIELDS if c != "manifest")
    sql = f"SELECT {cols} FROM runs ORDER BY finished DESC, rowid DESC"
    params: tuple = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (int(limit),)
    cur = conn.execute(sql, params)
    return [_run_row(cur, r) for r in cur.fetchall()]


def count_runs(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def get_run(conn: sqlite3.Connection, run_id: str) -> dict:
    """The ``runs`` row of ``run_id`` (with its manifest)."""
    cur = conn.execute(f"SELECT {', '.join(RUN_FIELDS)} FROM runs WHERE id = ?", (run_id,))
    row = cur.fetchone()
    if row is None:
        raise RegistryError(f"no run {run_id!r} in the registry")
    return _run_row(cur, row)


def runs_in_folder(conn: sqlite3.Connection, folder: Path) -> list[str]:
    """Ids of the runs recorded for the run folder ``folder`` (resolved), newest first."""
    cur = conn.execute(
        "SELECT id FROM runs WHERE run_dir_resolved = ? ORDER BY finished DESC, rowid DESC",
        (str(folder),),
    )
    return [r[0] for r in cur.fetchall()]


def match_ids(conn: sqlite3.Connection, ref: str) -> list[str]:
    """Ids equal to ``ref``, else starting with ``ref``, else whose random part (after the
    second ``-``) starts with ``ref``."""
    exact = conn.execute("SELECT id FROM runs WHERE id = ?", (ref,)).fetchall()
    if exact:
        return [exact[0][0]]
    like = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        "SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id", (like + "%",)
    ).fetchall()
    if not rows:
        rows = conn.execute(
            "SELECT id FROM runs WHERE substr(id, 17) LIKE ? ESCAPE '\\' ORDER BY id",
            (like + "%",),
        ).fetchall()
    return [r[0] for r in rows]


def similar_ids(conn: sqlite3.Connection, ref: str, *, n: int = 5) -> list[str]:
    """Up to ``n`` recorded ids closest to ``ref`` (difflib, on the whole id and on its
    random part), for error messages."""
    import difflib

    ids = [r[0] for r in conn.execute("SELECT id FROM runs ORDER BY id DESC")]
    close = difflib.get_close_matches(ref, ids, n=n, cutoff=0.5)
    tails = {i[16:]: i for i in ids}
    close += [tails[t] for t in difflib.get_close_matches(ref, list(tails), n=n, cutoff=0.5)]
    return list(dict.fromkeys(close))[:n]


def load_results(conn: sqlite3.Connection, run_id: str):
    """The run's results as a DataFrame with the columns and dtypes of ``results.csv``
    as :func:`xeval.reports.writer.read_results_csv` reads it (NULL read back as NaN)."""
    import pandas as pd

    cur = conn.execute(
        f"SELECT {', '.join(RESULT_FIELDS)} FROM results WHERE run_id = ? ORDER BY rowid",
        (run_id,),
    )
    df = pd.DataFrame(cur.fetchall(), columns=list(RESULT_FIELDS))
    for c in ("value", "ci_low", "ci_high", "threshold"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in ("n", "headline"):
        df[c] = pd.to_numeric(df[c], errors="coerce").fillna(0).astype(int)
    for c in ("higher_is_better", "control"):
        df[c] = df[c].fillna(0).astype(bool)
    return df


def load_per_image(conn: sqlite3.Connection, run_id: str, labels=None):
    """The run's per-image metric values (long: :data:`PER_IMAGE_FIELDS`), optionally
    only the metric ``labels``."""
    import pandas as pd

    sql = f"SELECT {', '.join(PER_IMAGE_FIELDS)} FROM per_image WHERE run_id = ?"
    params: list = [run_id]
    if labels is not None:
        labels = list(labels)
        sql += f" AND label IN ({', '.join('?' * len(labels))})"
        params += labels
    cur = conn.execute(sql + " ORDER BY rowid", params)
    df = pd.DataFrame(cur.fetchall(), columns=list(PER_IMAGE_FIELDS))
    df["value"] = df["value"].astype(float)
    return df


def integrity_check(conn: sqlite3.Connection) -> str:
    """``PRAGMA integrity_check`` (``"ok"`` when sound)."""
    return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
