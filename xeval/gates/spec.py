"""The gate spec: a YAML file that lists acceptance gates, parsed and checked.

A spec is a mapping with one key, ``gates``: a non-empty list of gates. Each gate is a
mapping with these keys (:data:`GATE_KEYS`; any other key is an error naming it):

``name`` (required)
    Unique within the spec; shown in the summary and as the JUnit test name.
``metric`` (required)
    A metric of the run's ``results.csv``: its ``label`` (``"aupro@0.3"``) or its
    registered ``metric`` name where that name has a single label in the run.
``where`` (optional, default: every row of the metric)
    Filters on ``results.csv`` columns (:data:`WHERE_COLUMNS`): ``{column: value}`` or
    ``{column: [value, ...]}`` (any of the values). Values are strings, except
    ``control`` (true / false: the trivial control explainers or the real ones).
``category`` (optional)
    ``mean`` (the rows of the unweighted mean over categories), a category name, or
    ``all`` (every category, not the mean: each must pass). Absent: ``mean`` where the
    run has mean rows for the metric, else every category (video runs have a single
    category ``all`` and no mean rows).
``min`` / ``max``
    Bounds on the measured value, inclusive (``value >= min``, ``value <= max``).
``verdict``
    The verdict required against every control (``verdicts.csv``), one of
    :data:`VERDICT_WORDS`. Verdicts pool every category, so a verdict gate takes no
    ``category`` key.
``max_drop``
    The largest allowed worsening against the ``--baseline`` run's matching row,
    direction-aware (for a lower-is-better metric the worsening is an increase).
``severity``
    ``error`` (default: a failure makes the exit code 1) or ``warn`` (reported, not
    counted).

A gate needs at least one check (``min``, ``max``, ``verdict`` or ``max_drop``). Numbers
are YAML numbers (not strings, not booleans) and finite; ``min <= max``; ``max_drop >= 0``.

The file is read with ``yaml.safe_load`` only, at most :data:`MAX_SPEC_BYTES` bytes,
and the parsed document is bounded in size and depth (aliases expanded) by
:func:`xeval.protocols.config._check_document`, so an alias "bomb" is refused. Every
problem is a :class:`~xeval.errors.ConfigError` naming the gate and key, the value and
what was expected. What depends on the run (the metric, the ``where`` values, the
category) is checked against the run by :mod:`xeval.gates.evaluate`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xeval.errors import ConfigError

__all__ = [
    "CHECK_KEYS",
    "GATE_KEYS",
    "MAX_SPEC_BYTES",
    "SEVERITIES",
    "VERDICT_WORDS",
    "WHERE_COLUMNS",
    "Gate",
    "GateSpec",
    "find_spec",
    "load_spec",
    "parse_spec",
]

#: Keys a gate may have.
GATE_KEYS = ("name", "metric", "where", "category", "min", "max", "verdict", "max_drop", "severity")
#: The keys that check something; a gate needs at least one.
CHECK_KEYS = ("min", "max", "verdict", "max_drop")
#: ``severity`` values: ``error`` fails the exit code, ``warn`` is reported only.
SEVERITIES = ("error", "warn")
#: ``results.csv`` columns a ``where`` may filter on (the metric and the category have
#: their own keys).
WHERE_COLUMNS = ("detector", "explainer", "dataset", "protocol", "control")
#: Every verdict ``verdicts.csv`` can hold: image runs (:mod:`xeval.engine.verdicts`:
#: against controls, or against a threshold for sanity metrics) and video runs
#: (:func:`xeval.reports.video.video_verdicts`).
VERDICT_WORDS = (
    "beats",
    "ties",
    "loses",
    "insufficient evidence",
    "undefined",
    "no control",
    "passes",
    "fails",
    "inconclusive",
)
#: Largest spec file read (bytes).
MAX_SPEC_BYTES = 1_000_000


@dataclass(frozen=True)
class Gate:
    """One gate of a spec, checked for its types (not yet against a run).

    ``where`` is a tuple of ``(column, allowed values)``; ``category`` is ``None`` when
    the spec does not give one (see the module docstring for the default); ``index`` is
    the gate's position in the spec (for messages)."""

    name: str
    metric: str
    where: tuple[tuple[str, tuple], ...] = ()
    category: str | None = None
    min: float | None = None
    max: float | None = None
    verdict: str | None = None
    max_drop: float | None = None
    severity: str = "error"
    index: int = 0

    @property
    def where_text(self) -> str:
        """``where`` as the spec wrote it, for messages (``detector=a, explainer=b|c``)."""
        return ", ".join(f"{c}={'|'.join(map(str, v))}" for c, v in self.where) or "(all rows)"

    @property
    def label(self) -> str:
        """``gates[i] ('name')``: how messages name this gate."""
        return f"gates[{self.index}] ({self.name!r})"


@dataclass(frozen=True)
class GateSpec:
    """A parsed spec: its gates in order and where it was read from."""

    gates: tuple[Gate, ...]
    source: str = "<spec>"

    @property
    def needs_baseline(self) -> list[str]:
        """Names of the gates with ``max_drop`` (they need ``--baseline``)."""
        return [g.name for g in self.gates if g.max_drop is not None]


# ----------------------------------------------------------------------------- reading
def find_spec(value: str | Path) -> Path:
    """The spec file ``value`` names: a path (anything that exists, contains a path
    separator or ends in ``.yaml``/``.yml``), else the name of a built-in spec in
    ``reports/gates/`` (shipped in the wheel): ``demo`` is ``reports/gates/demo.yaml``.

    Raises
    ------
    ConfigError
        A bare name that is no built-in spec; the message lists the built-in ones.
    """
    text = str(value)
    p = Path(text)
    if (
        p.exists()
        or any(sep in text for sep in ("/", "\\"))
        or p.suffix.lower()
        in (
            ".yaml",
            ".yml",
        )
    ):
        return p
    from xeval.assets import asset_dir

    folder = asset_dir("reports") / "gates"
    if (folder / f"{text}.yaml").is_file():
        return folder / f"{text}.yaml"
    known = sorted(x.stem for x in folder.glob("*.yaml")) if folder.is_dir() else []
    raise ConfigError(
        f"gate spec {text!r}: no such file, and not the name of a built-in spec "
        f"(built-in specs in {folder}: {known})"
    )


def load_spec(path: str | Path) -> GateSpec:
    """Read and check a spec file (see the module docstring).

    Raises
    ------
    ConfigError
        The file is missing, not a regular file, larger than :data:`MAX_SPEC_BYTES`,
        not UTF-8, not valid YAML, too large once aliases are expanded, or not a valid
        spec; the message names the file, the gate and the key.
    """
    import yaml

    from xeval._io import os_reason
    from xeval.protocols.config import _check_document

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"gate spec {p}: file not found")
    if not p.is_file():
        raise ConfigError(f"gate spec {p}: not a regular file (expected a YAML file)")
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"gate spec {p}: cannot read the file ({os_reason(exc)})") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise ConfigError(
            f"gate spec {p}: larger than {MAX_SPEC_BYTES} bytes (expected a short YAML file)"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"gate spec {p}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected YAML"
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except RecursionError as exc:
        raise ConfigError(f"gate spec {p}: not valid YAML (nested too deeply)") from exc
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        raise ConfigError(f"gate spec {p}: not valid YAML ({type(exc).__name__}: {exc})") from exc
    _check_document(raw, f"gate spec {p}")
    return parse_spec(raw, source=str(p))


def parse_spec(raw: object, *, source: str = "<spec>") -> GateSpec:
    """Check a parsed YAML document (``yaml.safe_load``'s result) and return the
    :class:`GateSpec`; :class:`~xeval.errors.ConfigError` on the first problem."""
    where = f"gate spec {source}"
    if not isinstance(raw, Mapping):
        got = "an empty file" if raw is None else f"{type(raw).__name__} {raw!r:.60}"
        raise ConfigError(f"{where}: expected a mapping with a 'gates' list, got {got}")
    extra = sorted(set(raw) - {"gates"})
    if extra:
        raise ConfigError(f"{where}: unknown top-level key(s) {extra}; a spec has one key: 'gates'")
    if "gates" not in raw:
        raise ConfigError(f"{where}: no 'gates' key (expected 'gates:' with a list of gates)")
    items = raw["gates"]
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f"{where}: 'gates' must be a non-empty list of gates, got {items!r:.60} "
            "(a spec that checks nothing would pass silently)"
        )
    gates = tuple(_parse_gate(g, i, where) for i, g in enumerate(items))
    seen: dict[str, int] = {}
    for g in gates:
        if g.name in seen:
            raise ConfigError(
                f"{where}: gates[{g.index}].name {g.name!r} is also the name of "
                f"gates[{seen[g.name]}] (gate names must be unique: they name the JUnit tests)"
            )
        seen[g.name] = g.index
    return GateSpec(gates=gates, source=source)


def _parse_gate(raw: object, i: int, where: str) -> Gate:
    at = f"{where}: gates[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{at} must be a mapping with 'name', 'metric' and a check, got {raw!r:.60}"
        )
    unknown = sorted(set(raw) - set(GATE_KEYS))
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {unknown}; valid keys: {list(GATE_KEYS)}")
    for key in ("name", "metric"):
        if key not in raw:
            raise ConfigError(f"{at}: missing required key {key!r}")
        v = raw[key]
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{at}.{key} must be a non-empty string, got {v!r}")
    name = raw["name"].strip()
    at = f"{where}: gates[{i}] ({name!r})"
    if not any(raw.get(k) is not None for k in CHECK_KEYS):
        raise ConfigError(
            f"{at}: no check (give at least one of {list(CHECK_KEYS)}); "
            "a gate that checks nothing would pass silently"
        )
    lo = _number(raw.get("min"), f"{at}.min")
    hi = _number(raw.get("max"), f"{at}.max")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"{at}: min {lo:g} is greater than max {hi:g} (no value can pass)")
    drop = _number(raw.get("max_drop"), f"{at}.max_drop")
    if drop is not None and drop < 0:
        raise ConfigError(f"{at}.max_drop must be >= 0 (the allowed worsening), got {drop:g}")
    verdict = raw.get("verdict")
    if verdict is not None and verdict not in VERDICT_WORDS:
        raise ConfigError(
            f"{at}.verdict: unknown verdict {verdict!r}; valid verdicts: {list(VERDICT_WORDS)}"
        )
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        raise ConfigError(f"{at}.severity must be one of {list(SEVERITIES)}, got {severity!r}")
    category = raw.get("category")
    if category is not None:
        if not isinstance(category, str) or not category:
            raise ConfigError(
                f"{at}.category must be a string ('mean', 'all' or a category name; quote "
                f"names that YAML reads as numbers), got {category!r}"
            )
        if verdict is not None:
            raise ConfigError(
                f"{at}: 'verdict' pools every category (verdicts.csv has no category "
                f"column), so the gate takes no 'category' (got {category!r}); put the "
                "category's min/max in a gate of its own"
            )
    return Gate(
        name=name,
        metric=raw["metric"].strip(),
        where=_where(raw.get("where"), f"{at}.where"),
        category=category,
        min=lo,
        max=hi,
        verdict=verdict,
        max_drop=drop,
        severity=severity,
        index=i,
    )


def _number(v: object, at: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        hint = ""
        if isinstance(v, str):
            hint = " (YAML 1.1 reads exponents without a dot, such as 1e-3, as text: write 1.0e-3)"
        raise ConfigError(f"{at} must be a number, got {type(v).__name__} {v!r}{hint}")
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(f"{at} must be a finite number, got {v!r}")
    return v


def _where(raw: object, at: str) -> tuple[tuple[str, tuple], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{at} must be a mapping of column: value, got {raw!r:.60}")
    out = []
    for col, value in raw.items():
        if col not in WHERE_COLUMNS:
            hint = {
                "category": " (use the gate's 'category' key)",
                "metric": " (use the gate's 'metric' key)",
                "label": " (use the gate's 'metric' key)",
            }.get(col, "")
            raise ConfigError(
                f"{at}: unknown column {col!r}{hint}; valid columns: {list(WHERE_COLUMNS)}"
            )
        values = value if isinstance(value, list) else [value]
        kind = bool if col == "control" else str
        what = "true or false" if kind is bool else "a string or a list of strings"
        if not values or not all(type(x) is kind for x in values):
            raise ConfigError(
                f"{at}.{col} must be {what}, got {value!r:.60} (quote names that YAML "
                "reads as numbers or booleans)"
            )
        out.append((col, tuple(dict.fromkeys(values))))
    return tuple(out)
