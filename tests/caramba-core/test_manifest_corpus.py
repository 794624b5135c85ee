"""A corpus of malformed manifests: each names the exact report it must produce.

Every ``malformed/*.yml`` starts with its expectations, one report line each::

    # override: targets.quick.runs.0.steps=many        (optional, passed as -s)
    # expect: 28:15  targets[0]...d_out  message  (hint)

A location written as ``LINE:COL`` is in the file itself (``{file}`` in a hint stands for
its path). The report must hold exactly these lines, in this order: every problem is
found, none is invented, and one mistake does not cascade into others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import caramba

HERE = Path(__file__).parent
CORPUS = sorted(p for p in (HERE / "malformed").glob("*.yml") if not p.name.startswith("_"))


def expectations(path: Path, shown: str) -> tuple[list[str], list[str]]:
    overrides, expected = [], []
    for line in path.read_text().splitlines():
        if line.startswith("# override:"):
            overrides.append(line.split(":", 1)[1].strip())
        elif line.startswith("# expect:"):
            text = line.split(":", 1)[1].strip().replace("{file}", shown)
            expected.append(f"{shown}:{text}" if text[0].isdigit() else text)
    return overrides, expected


def report(rt: caramba.Runtime, path: str, overrides: list[str]) -> list[str]:
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest(path, overrides=overrides)
    assert info.value.exit_code == 2
    return [str(p) for p in info.value.problems]


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 30


def test_base_of_the_corpus_is_valid(rt, monkeypatch):
    monkeypatch.chdir(HERE)
    manifest = rt.load_manifest("malformed/_base.yml")
    assert manifest.target().name == "quick"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_malformed_manifest_reports_exact_location_path_and_hint(rt, monkeypatch, path: Path):
    monkeypatch.chdir(HERE)
    shown = f"malformed/{path.name}"
    overrides, expected = expectations(path, shown)
    assert expected, f"{path.name} declares no '# expect:' lines"
    assert report(rt, shown, overrides) == expected


def test_report_text_is_one_line_per_problem(rt, monkeypatch):
    monkeypatch.chdir(HERE)
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest("malformed/three_problems_in_one_report.yml")
    lines = str(info.value).splitlines()
    assert lines[0] == "malformed/three_problems_in_one_report.yml: 3 problems"
    assert lines[1] == "  malformed/three_problems_in_one_report.yml:6:8  notes  expected a string, got a list"


# --- JSON manifests keep positions too ---------------------------------------------------

GOOD_JSON = {
    "version": 2,
    "targets": [{
        "name": "quick",
        "data": "dataset.toy_regression",
        "system": {"ref": "system.toy", "config": {"d_in": 4, "model": {"type": "ToyLinear", "d_in": 4, "d_out": 1}}},
        "objective": "objective.toy_mse",
        "trainer": "trainer.toy",
        "runs": [{"id": "r", "steps": 1}],
    }],
}


def _json_text(**changes: object) -> str:
    doc = json.loads(json.dumps(GOOD_JSON))
    doc["targets"][0]["system"]["config"]["model"].update(changes)
    return json.dumps(doc, indent=2)


def test_json_manifest_loads(rt):
    manifest = rt.load_manifest_text(json.dumps(GOOD_JSON), filename="m.json")
    assert manifest.target().system.config.model.d_out == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"version": 2,\n  "name": "x",,\n}',
                     ["m.json:2:15  <root>  JSON syntax error: Expecting property name enclosed in double quotes"],
                     id="syntax"),
        pytest.param('{"version": 2,\n "name": "a",\n "name": "b"}',
                     ["m.json:3:2  name  duplicate key 'name'  (first defined at m.json:2:10; keep one)"],
                     id="duplicate-key"),
        pytest.param(_json_text(d_outt=2), ["m.json:15:13  targets[0].system.config.model.d_outt  unknown field "
                                            "'d_outt' for ToyLinear  (did you mean 'd_out'?)"], id="unknown-field"),
        pytest.param(_json_text(d_in=5), ["m.json:13:21  targets[0].system.config.model.d_in  input width is 4 but "
                                          "d_in is 5  (set d_in: 4, or change the layer before it to output 5)"],
                     id="width-mismatch"),
    ],
)
def test_malformed_json_manifest_reports_line_and_column(rt, text: str, expected: list[str]):
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text, filename="m.json")
    assert [str(p) for p in info.value.problems] == expected
