"""Evaluate a gate spec on a finished run: which rows each gate checks, and the checks.

Rows
----
A gate selects rows of the run's ``results.csv``: the rows of its metric (the ``label``
it names, or the single label of the registered ``metric`` name it names), filtered by
``where`` and by ``category`` (:mod:`xeval.gates.spec`). Every selected row must pass:
each (gate, row) is one :class:`GateCase` (one JUnit test case), named from the gate and
the row's detector / explainer / category. A gate with ``verdict`` skips the rows of
the trivial controls (they have no verdict). Everything that does not resolve against
the run is an error (exit code 2), never a silent pass: an unknown metric, ``where``
value or category (the message lists the run's valid ones), an ambiguous metric name,
a ``where`` that matches no row, a verdict for a metric with no verdicts.

Checks (:data:`CHECKS`, one function per spec key)
--------------------------------------------------
``min`` / ``max``
    ``value >= min`` / ``value <= max`` (inclusive, exact comparison of the numbers as
    read from ``results.csv`` and the spec).
``verdict``
    The row of ``verdicts.csv`` for the detector, explainer and metric label against all
    controls (image runs: control ``"all controls"``; video runs: the single row) must
    equal the required verdict; the message lists the per-control verdicts with their
    mean paired difference and 95% CI (image runs) or the closest control and the
    smallest z (video runs).
``max_drop``
    Against the ``--baseline`` run's row with the same detector, explainer, category and
    metric label: the worsening ``baseline - value`` (higher-is-better metrics) or
    ``value - baseline`` (lower-is-better metrics: a "drop" is an increase) must be at
    most ``max_drop``, up to :data:`DROP_TOLERANCE` for the rounding of the subtraction
    (``0.91 - 0.90`` is ``0.010000000000000009`` in floating point). A row missing in the
    baseline, or a metric whose direction differs between the runs, is an error. Runs
    with a different config hash or dataset fingerprint may be compared; the report
    carries a note saying so.

A NaN value (measured or baseline) fails every check that needs it: undefined is not a
pass; the message says the value is undefined and gives the row's ``note``.

Outcome: a case passes when all its checks pass; a failing case of a ``severity: warn``
gate is a warning. :attr:`GateReport.exit_code` is 0 when no ``severity: error`` case
fails, else 1 (invalid input raises instead: exit code 2 from the command).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from xeval.errors import ConfigError, InputError
from xeval.gates.runfolder import RunFolder
from xeval.gates.spec import Gate, GateSpec

__all__ = [
    "CHECKS",
    "DROP_TOLERANCE",
    "Check",
    "GateCase",
    "GateReport",
    "ci_text",
    "evaluate_spec",
    "fmt",
    "resolve_label",
    "select_rows",
]

#: Absolute slack on the ``max_drop`` comparison, for the rounding of ``baseline - value``.
DROP_TOLERANCE = 1e-12

ALL_CONTROLS = "all controls"  # xeval.engine.verdicts.ALL (not imported: keep this light)


@dataclass(frozen=True)
class Check:
    """The outcome of one check of one row: ``kind`` is the spec key (``min``, ``max``,
    ``verdict``, ``max_drop``), ``measured`` and ``bound`` are short texts for the
    summary table, ``message`` says what was compared and why it passed or failed."""

    kind: str
    passed: bool
    measured: str
    bound: str
    message: str


@dataclass(frozen=True)
class GateCase:
    """One gate applied to one row of ``results.csv``."""

    gate: Gate
    label: str
    detector: str
    explainer: str
    category: str
    dataset: str
    protocol: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def status(self) -> str:
        """``"pass"``, ``"fail"`` (an error-severity gate failed) or ``"warn"`` (a
        warn-severity gate failed)."""
        if self.passed:
            return "pass"
        return "warn" if self.gate.severity == "warn" else "fail"

    @property
    def row(self) -> str:
        return f"{self.detector} / {self.explainer} / {self.category}"

    @property
    def test_name(self) -> str:
        return f"{self.gate.name} [{self.row}]"

    @property
    def ci_text(self) -> str:
        return ci_text(self.ci_low, self.ci_high)

    @property
    def message(self) -> str:
        """``label = value (CI, n): check; check`` with the failed checks first."""
        ordered = sorted(self.checks, key=lambda c: c.passed)
        head = f"{self.label} = {fmt(self.value)} ({self.ci_text}, n={self.n})"
        return f"{head}: " + "; ".join(c.message for c in ordered)


@dataclass
class GateReport:
    """Every case of a spec on a run, plus notes (e.g. the baseline was configured
    differently)."""

    spec: GateSpec
    run: RunFolder
    baseline: RunFolder | None
    cases: list[GateCase]
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)

    @property
    def exit_code(self) -> int:
        """0 when no error-severity case fails, else 1."""
        return 1 if self.count("fail") else 0


# ------------------------------------------------------------------------- formatting
def fmt(v: float, other: float | None = None) -> str:
    """A number for messages: 6 significant digits, or the exact shortest form when it
    would look equal to ``other`` while differing from it; ``NaN`` for NaN."""
    if v is None or math.isnan(v):
        return "NaN"
    s = f"{v:.6g}"
    if other is not None and not math.isnan(other) and v != other and s == f"{other:.6g}":
        return repr(float(v))
    return s


def ci_text(low: float, high: float) -> str:
    """``95% CI [low, high]``, or ``no CI`` when either end is NaN."""
    if math.isnan(low) or math.isnan(high):
        return "no CI"
    return f"95% CI [{fmt(low)}, {fmt(high)}]"


def _undefined(row, what: str = "value") -> str:
    note = str(row.get("note", "") or "").strip()
    return f"the {what} is undefined (NaN{': ' + note if note else ''}); undefined is not a pass"


# ---------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class _Context:
    run: RunFolder
    baseline: RunFolder | None
    label: str


def _check_min(gate: Gate, row, ctx: _Context) -> Check:
    v, b = float(row["value"]), gate.min
    bound = f"≥ {fmt(b, v)}"
    if math.isnan(v):
        return Check("min", False, "NaN", bound, f"min {fmt(b)}: {_undefined(row)}")
    ok = v >= b
    rel = ">=" if ok else "<"
    return Check("min", ok, fmt(v, b), bound, f"{fmt(v, b)} {rel} min {fmt(b, v)}")


def _check_max(gate: Gate, row, ctx: _Context) -> Check:
    v, b = float(row["value"]), gate.max
    bound = f"≤ {fmt(b, v)}"
    if math.isnan(v):
        return Check("max", False, "NaN", bound, f"max {fmt(b)}: {_undefined(row)}")
    ok = v <= b
    rel = "<=" if ok else ">"
    return Check("max", ok, fmt(v, b), bound, f"{fmt(v, b)} {rel} max {fmt(b, v)}")


def _num(s) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return math.nan


def _check_verdict(gate: Gate, row, ctx: _Context) -> Check:
    v = ctx.run.verdicts()
    det, expl = row["detector"], row["explainer"]
    with_metric = v[v["metric"] == ctx.label]
    if with_metric.empty:
        have = sorted(v["metric"].unique())
        raise ConfigError(
            f"{gate.label}.verdict: metric {ctx.label!r} has no verdicts in "
            f"{ctx.run.option} {ctx.run.path} (verdicts.csv); metrics with verdicts: {have}"
        )
    sub = with_metric[(with_metric["detector"] == det) & (with_metric["explainer"] == expl)]
    if "control" in sub.columns:  # image runs: one row per control + "all controls"
        overall = sub[sub["control"] == ALL_CONTROLS]
        per = sub[sub["control"] != ALL_CONTROLS]
        detail = "; ".join(
            f"{r.control}: {r.verdict} (mean diff {fmt(_num(r.mean_diff))}, "
            f"{ci_text(_num(r.ci_low), _num(r.ci_high))}, n={r.n})"
            for r in per.itertuples()
        )
    else:  # video runs: one row against every control
        overall = sub
        detail = "; ".join(
            f"closest control {r.best_control or 'none'} ({fmt(_num(r.best_control_value))}), "
            f"smallest z {fmt(_num(r.min_z))}"
            for r in sub.itertuples()
            if hasattr(r, "best_control")
        )
    if overall.empty:
        have = sorted(f"{d} / {e}" for d, e in with_metric[["detector", "explainer"]].values)
        raise ConfigError(
            f"{gate.label}.verdict: no verdict for detector {det!r}, explainer {expl!r}, "
            f"metric {ctx.label!r} in {ctx.run.option} {ctx.run.path} (verdicts.csv); rows "
            f"with verdicts: {sorted(set(have))}"
        )
    got = str(overall["verdict"].iloc[0])
    ok = got == gate.verdict
    msg = f"verdict against all controls {got!r}, required {gate.verdict!r}"
    if detail:
        msg += f" ({detail})"
    return Check("verdict", ok, got, f"verdict {gate.verdict}", msg)


def _baseline_row(gate: Gate, row, ctx: _Context):
    b = ctx.baseline
    assert b is not None  # checked by evaluate_spec
    res = b.results
    cand = res[
        (res["label"] == ctx.label)
        & (res["detector"] == row["detector"])
        & (res["explainer"] == row["explainer"])
        & (res["category"] == row["category"])
    ]
    if len(cand) > 1:
        cand = cand[(cand["dataset"] == row["dataset"]) & (cand["protocol"] == row["protocol"])]
    if len(cand) != 1:
        have = res[res["label"] == ctx.label]
        rows = sorted({f"{r.detector} / {r.explainer} / {r.category}" for r in have.itertuples()})
        raise InputError(
            f"{gate.label}.max_drop: {b.option} {b.path} has no row for metric "
            f"{ctx.label!r}, {row['detector']} / {row['explainer']} / {row['category']} "
            f"(detector / explainer / category); its rows of that metric: "
            f"{rows or 'none'}"
        )
    base = cand.iloc[0]
    if bool(base["higher_is_better"]) != bool(row["higher_is_better"]):
        raise InputError(
            f"{gate.label}.max_drop: metric {ctx.label!r} is "
            f"{'higher' if row['higher_is_better'] else 'lower'}-is-better in "
            f"{ctx.run.option} {ctx.run.path} but not in {b.option} {b.path}: "
            "the runs cannot be compared on it"
        )
    return base


def _check_max_drop(gate: Gate, row, ctx: _Context) -> Check:
    base = _baseline_row(gate, row, ctx)
    v, b, limit = float(row["value"]), float(base["value"]), gate.max_drop
    hib = bool(row["higher_is_better"])
    word = "drop" if hib else "increase (lower is better)"
    bound = f"{'drop' if hib else 'increase'} ≤ {fmt(limit)} vs baseline {fmt(b)}"
    if math.isnan(v) or math.isnan(b):
        what = "value" if math.isnan(v) else "baseline value"
        reason = _undefined(row if math.isnan(v) else base, what)
        return Check("max_drop", False, fmt(v), bound, f"max_drop {fmt(limit)}: {reason}")
    worse = (b - v) if hib else (v - b)
    ok = worse <= limit + DROP_TOLERANCE
    rel = "<=" if ok else ">"
    ci = ci_text(float(base["ci_low"]), float(base["ci_high"]))
    msg = (
        f"{word} {fmt(worse, limit)} from baseline {fmt(b)} ({ci}, n={int(base['n'])}) "
        f"{rel} max_drop {fmt(limit, worse)}"
    )
    return Check("max_drop", ok, fmt(v), bound, msg)


#: Spec key -> check function ``(gate, row, context) -> Check``; applied in this order
#: for every key the gate gives.
CHECKS: dict[str, Callable[[Gate, object, _Context], Check]] = {
    "min": _check_min,
    "max": _check_max,
    "verdict": _check_verdict,
    "max_drop": _check_max_drop,
}


# ---------------------------------------------------------------------------- rows
def resolve_label(gate: Gate, run: RunFolder) -> str:
    """The ``results.csv`` label a gate's ``metric`` names (see the module docstring)."""
    res = run.results
    labels = sorted(res["label"].unique())
    if gate.metric in labels:
        return gate.metric
    named = sorted(res.loc[res["metric"] == gate.metric, "label"].unique())
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ConfigError(
            f"{gate.label}.metric: {gate.metric!r} is ambiguous in {run.option} {run.path}: "
            f"it has the labels {named}; write one of them"
        )
    raise ConfigError(
        f"{gate.label}.metric: unknown metric {gate.metric!r} in {run.option} {run.path} "
        f"results.csv; valid metrics (labels): {labels}"
    )


def select_rows(gate: Gate, run: RunFolder, label: str) -> pd.DataFrame:
    """The rows of ``results.csv`` a gate checks (see the module docstring)."""
    res = run.results
    sub = res[res["label"] == label]
    for col, values in gate.where:
        known = set(res[col].tolist())
        unknown = [v for v in values if v not in known]
        if unknown:
            raise ConfigError(
                f"{gate.label}.where.{col}: unknown {col} {unknown[0]!r} in {run.option} "
                f"{run.path} results.csv; valid: {sorted(known, key=str)}"
            )
        sub = sub[sub[col].isin(values)]
    cats = [c for c in dict.fromkeys(res.loc[res["label"] == label, "category"]) if c != "mean"]
    has_mean = bool((res.loc[res["label"] == label, "category"] == "mean").any())
    valid = list(dict.fromkeys((["mean"] if has_mean else []) + ["all", *sorted(cats)]))
    cat = gate.category
    if cat is None:
        cat = "mean" if has_mean else "all"
    elif cat not in valid:
        raise ConfigError(
            f"{gate.label}.category: unknown category {cat!r} for metric {label!r} in "
            f"{run.option} {run.path} results.csv; valid: {valid}"
        )
    if cat == "all":
        sub = sub[sub["category"] != "mean"]
    else:
        sub = sub[sub["category"] == cat]
    if gate.verdict is not None and not sub.empty:
        real = sub[~sub["control"].astype(bool)]
        if real.empty:
            ctrl = sorted(sub["explainer"].unique())
            raise ConfigError(
                f"{gate.label}: 'verdict' but where ({gate.where_text}) matches only the "
                f"trivial controls {ctrl}, which have no verdict"
            )
        sub = real
    if sub.empty:
        have = res[res["label"] == label]
        rows = sorted({f"{r.detector} / {r.explainer} / {r.category}" for r in have.itertuples()})
        raise ConfigError(
            f"{gate.label}: where ({gate.where_text}) and category {cat!r} match no row of "
            f"metric {label!r} in {run.option} {run.path} results.csv (a gate that checks "
            f"nothing would pass silently); rows of that metric (detector / explainer / "
            f"category): {rows}"
        )
    return sub


def _comparability(run: RunFolder, baseline: RunFolder) -> list[str]:
    notes = []
    for attr, what, meaning in (
        ("config_hash", "config hash", "the runs were configured differently"),
        ("dataset_fingerprint", "dataset fingerprint", "the runs saw different data"),
    ):
        a, b = getattr(run, attr), getattr(baseline, attr)
        if "unknown" in (a, b):
            notes.append(
                f"the {what} is not recorded (this run: {a}, baseline {baseline.path}: {b}): "
                "the regression checks cannot tell whether the runs are comparable"
            )
        elif a != b:
            notes.append(
                f"the baseline {baseline.path} has {what} {b}, this run {a}: {meaning}; "
                "the regression checks compare them anyway"
            )
    return notes


def evaluate_spec(
    spec: GateSpec, run: RunFolder, *, baseline: RunFolder | None = None
) -> GateReport:
    """Every gate of ``spec`` on ``run`` (and ``baseline`` for ``max_drop``).

    Raises
    ------
    ConfigError, InputError
        A gate does not resolve against the run (see the module docstring), a gate has
        ``max_drop`` and no ``baseline`` is given, or the baseline lacks a needed row.
    """
    need = spec.needs_baseline
    if need and baseline is None:
        raise InputError(
            f"--baseline is required: gate(s) {need} of {spec.source} check max_drop "
            "against an accepted run (give it with --baseline RUN_DIR)"
        )
    cases: list[GateCase] = []
    for gate in spec.gates:
        label = resolve_label(gate, run)
        ctx = _Context(run=run, baseline=baseline, label=label)
        rows = select_rows(gate, run, label)
        for _, row in rows.iterrows():
            checks = tuple(
                fn(gate, row, ctx) for key, fn in CHECKS.items() if getattr(gate, key) is not None
            )
            cases.append(
                GateCase(
                    gate=gate,
                    label=label,
                    detector=str(row["detector"]),
                    explainer=str(row["explainer"]),
                    category=str(row["category"]),
                    dataset=str(row["dataset"]),
                    protocol=str(row["protocol"]),
                    value=float(row["value"]),
                    ci_low=float(row["ci_low"]),
                    ci_high=float(row["ci_high"]),
                    n=int(row["n"]),
                    checks=checks,
                )
            )
    notes = _comparability(run, baseline) if baseline is not None else []
    return GateReport(spec=spec, run=run, baseline=baseline, cases=cases, notes=notes)
