"""The gate spec: parsing, defaults, and every invalid form named in the message."""

from __future__ import annotations

import pytest

from xeval.errors import ConfigError
from xeval.gates.spec import (
    CHECK_KEYS,
    GATE_KEYS,
    MAX_SPEC_BYTES,
    VERDICT_WORDS,
    WHERE_COLUMNS,
    Gate,
    load_spec,
    parse_spec,
)

EXAMPLE = """
gates:
  - name: native map localises
    metric: pixel_auroc
    where: {detector: patch_features, explainer: native}
    category: mean
    min: 0.90
  - name: IG beats the controls on AUPRO
    metric: aupro@0.3
    where: {explainer: integrated_gradients}
    verdict: beats
  - name: no regression
    metric: pixel_auroc
    where: {detector: patch_features, explainer: [native, saliency], control: false}
    max_drop: 0.01
    severity: warn
"""


def test_example_spec_parses(write_spec):
    spec = load_spec(write_spec(EXAMPLE))
    a, b, c = spec.gates
    assert a == Gate(
        name="native map localises",
        metric="pixel_auroc",
        where=(("detector", ("patch_features",)), ("explainer", ("native",))),
        category="mean",
        min=0.9,
        index=0,
    )
    assert (b.verdict, b.category, b.severity, b.min, b.max) == ("beats", None, "error", None, None)
    assert c.where == (
        ("detector", ("patch_features",)),
        ("explainer", ("native", "saliency")),
        ("control", (False,)),
    )
    assert (c.max_drop, c.severity) == (0.01, "warn")
    assert spec.needs_baseline == ["no regression"]
    assert spec.source.endswith("spec.yaml")


def test_integers_are_numbers_and_bom_is_accepted(write_spec):
    p = write_spec("\ufeffgates:\n  - {name: g, metric: m, min: 0, max: 1}\n")
    (g,) = load_spec(p).gates
    assert (g.min, g.max) == (0.0, 1.0) and isinstance(g.min, float)


def _gate(**kw):
    return {"name": "g", "metric": "pixel_auroc", "min": 0.5} | kw


# (document, substrings every one of which the message must contain)
INVALID = [
    ([1, 2], ["expected a mapping with a 'gates' list", "list"]),
    (None, ["empty file"]),
    ({"gate": []}, ["unknown top-level key", "'gate'", "'gates'"]),
    ({}, ["no 'gates' key"]),
    ({"gates": []}, ["non-empty list"]),
    ({"gates": {"name": "x"}}, ["non-empty list"]),
    ({"gates": ["pixel_auroc"]}, ["gates[0]", "must be a mapping"]),
    ({"gates": [_gate(minimum=0.5)]}, ["unknown key", "'minimum'", *map(repr, GATE_KEYS)]),
    ({"gates": [{"metric": "m", "min": 1}]}, ["gates[0]", "missing required key 'name'"]),
    ({"gates": [{"name": "g", "min": 1}]}, ["gates[0]", "missing required key 'metric'"]),
    ({"gates": [_gate(name=3)]}, ["gates[0].name", "non-empty string", "3"]),
    ({"gates": [_gate(metric="  ")]}, ["gates[0].metric", "non-empty string"]),
    ({"gates": [{"name": "g", "metric": "m"}]}, ["'g'", "no check", *map(repr, CHECK_KEYS)]),
    ({"gates": [_gate(min=None)]}, ["no check"]),
    ({"gates": [_gate(min="0.9")]}, ["gates[0] ('g').min", "must be a number", "'0.9'"]),
    ({"gates": [_gate(min=True)]}, ["min", "must be a number", "bool"]),
    ({"gates": [_gate(min="1e-3")]}, ["min", "1.0e-3"]),
    ({"gates": [_gate(max=[1])]}, ["max", "must be a number", "list"]),
    ({"gates": [_gate(min=0.9, max=0.1)]}, ["min 0.9 is greater than max 0.1"]),
    ({"gates": [_gate(max_drop=-0.1)]}, ["max_drop", ">= 0", "-0.1"]),
    ({"gates": [_gate(max_drop="a")]}, ["max_drop", "must be a number"]),
    ({"gates": [_gate(verdict="wins")]}, ["verdict", "'wins'", *map(repr, VERDICT_WORDS)]),
    ({"gates": [_gate(severity="fatal")]}, ["severity", "'fatal'", "'error'", "'warn'"]),
    ({"gates": [_gate(category=2023)]}, ["category", "must be a string", "2023"]),
    ({"gates": [_gate(verdict="beats", category="all")]}, ["'category'", "pools every"]),
    ({"gates": [_gate(where=["detector"])]}, ["where", "must be a mapping"]),
    ({"gates": [_gate(where={"detektor": "a"})]}, ["'detektor'", *map(repr, WHERE_COLUMNS)]),
    ({"gates": [_gate(where={"category": "a"})]}, ["'category'", "gate's 'category' key"]),
    ({"gates": [_gate(where={"label": "a"})]}, ["'label'", "gate's 'metric' key"]),
    ({"gates": [_gate(where={"detector": 1})]}, ["where.detector", "a string", "quote"]),
    ({"gates": [_gate(where={"detector": []})]}, ["where.detector", "a string"]),
    ({"gates": [_gate(where={"control": "yes"})]}, ["where.control", "true or false"]),
    (
        {"gates": [_gate(), _gate(metric="aupro")]},
        ["gates[1].name 'g'", "also the name of gates[0]", "unique"],
    ),
]


@pytest.mark.parametrize(("doc", "expected"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_invalid_spec_is_named(doc, expected):
    with pytest.raises(ConfigError) as info:
        parse_spec(doc, source="s.yaml")
    msg = str(info.value)
    assert "s.yaml" in msg
    for part in expected:
        assert part in msg, (part, msg)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gates: [unclosed", "not valid YAML"),
        ("gates:\n  - name: a\n\tmetric: b\n", "not valid YAML"),
        ("!!python/object:os.system {}\n", "not valid YAML"),  # safe_load refuses tags
        ("gates: !!set {a, b}\n", "!!set"),
        ("gates:\n  - {name: g, metric: m, min: .nan}\n", "finite"),
    ],
)
def test_malformed_yaml(write_spec, text, expected):
    with pytest.raises(ConfigError, match="gate spec .*spec.yaml") as info:
        load_spec(write_spec(text))
    assert expected in str(info.value)


def test_alias_bomb_is_refused(write_spec):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("gates: [{name: g, metric: m, min: 0, where: {detector: *i}}]")
    with pytest.raises(ConfigError, match="too large"):
        load_spec(write_spec("\n".join(lines) + "\n"))


def test_huge_file_is_refused_before_parsing(write_spec):
    p = write_spec("# " + "x" * MAX_SPEC_BYTES + "\ngates: []\n")
    with pytest.raises(ConfigError, match=f"larger than {MAX_SPEC_BYTES} bytes"):
        load_spec(p)


def test_missing_folder_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_spec(tmp_path)
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"gates: \xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_spec(p)


def test_find_spec_builtin_names_and_paths(tmp_path, monkeypatch):
    from xeval.gates.spec import find_spec

    monkeypatch.chdir(tmp_path)
    demo = find_spec("demo")
    assert demo.name == "demo.yaml" and demo.parent.name == "gates"
    spec = load_spec(demo)
    assert len(spec.gates) >= 4 and {g.severity for g in spec.gates} == {"error", "warn"}
    with pytest.raises(ConfigError, match=r"not the name of a built-in spec .*\['demo'"):
        find_spec("demox")
    # a path is a path, even when a built-in spec has its name
    assert find_spec("demo.yaml") == tmp_path.joinpath("demo.yaml").relative_to(tmp_path)
    assert find_spec("sub/demo") == tmp_path.joinpath("sub/demo").relative_to(tmp_path)
    (tmp_path / "demo").write_text("gates: []\n")
    assert find_spec("demo").resolve() == tmp_path / "demo"
