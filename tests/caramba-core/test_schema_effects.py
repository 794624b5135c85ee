"""Every key the manifest schema accepts has an effect, or is accepted with a note that says it is ignored.

Silently ignored configuration was the original caramba's central bug. The walk below finds each
field of each schema struct read somewhere in the packages (outside the schema itself); the few
that are not are named here with what happens instead, and the tests after it show that.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import caramba
from caramba.manifest import _schema as schema
from caramba.testing import toy

ROOT = Path(__file__).resolve().parents[2]
SOURCES = "\n".join(p.read_text() for p in ROOT.glob("caramba-*/src/**/*.py")
                    if p.name != "schema.py" and "template" not in p.parts)
STRUCTS = [schema.ManifestSpec, schema.Defaults, schema.DataDefaults, schema.LoggingDefaults,
           schema.RuntimeDefaults, schema.ComputeDefaults, schema.ExperimentTarget, schema.ProcessTarget,
           schema.RunSpec, schema.BenchmarkSpec, schema.ComponentSpec]
#: Fields with one allowed value: nothing to read, and any other value is an error.
ONE_VALUE = {("ManifestSpec", "version"), ("ExperimentTarget", "backend"), ("ComputeDefaults", "type"),
             ("ExperimentTarget", "type"), ("ProcessTarget", "type")}
#: Read from the raw manifest before decoding: requirements are checked before anything else
#: (tests/caramba-core/malformed/requires_missing_distribution.yml).
RAW = {("ManifestSpec", "requires")}
#: Holds only one-value fields.
ONE_VALUE |= {("Defaults", "compute")}
#: Accepted with a note naming them as ignored (tests below).
NOTED = {("DataDefaults", "tokenizer"), ("DataDefaults", "val_frac")}


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
def test_every_schema_field_is_read_somewhere_or_named_here(struct):
    for field in msgspec.structs.fields(struct):
        key = (struct.__name__, field.name)
        if key in ONE_VALUE or key in NOTED or key in RAW:
            continue
        assert re.search(rf"\.{field.name}\b", SOURCES), f"{struct.__name__}.{field.name} is accepted but never read"


def load(text: str) -> caramba.Manifest:
    return caramba.Runtime(autoload=False, plugins=[toy]).load_manifest_text(text, filename="m.yml")


TOY = """version: 2
{defaults}
targets:
  - name: quick
    task: {task}
    data: {{ref: dataset.toy_regression, config: {{d_in: 4}}}}
    system: {{ref: system.toy, config: {{d_in: 4, model: {{type: ToyLinear, d_in: 4, d_out: 1}}}}}}
    objective: objective.toy_mse
    trainer: trainer.toy
    runs: [{{id: r, steps: 1, expected: {expected}, train: {{lr: 0.1}}}}]
"""


def toy_manifest(defaults: str = "", task: str = "task.language_modeling", expected: str = "{}") -> str:
    return TOY.format(defaults=defaults, task=task, expected=expected)


def test_the_original_data_defaults_are_accepted_with_one_note_each():
    manifest = load(toy_manifest("defaults: {data: {tokenizer: tiktoken, val_frac: 0.05}}"))
    assert [(n.path, n.message.split(":")[0]) for n in manifest.notes] == [
        ("defaults.data.tokenizer", "ignored"), ("defaults.data.val_frac", "ignored")]
    assert load(toy_manifest()).notes == []


def test_a_tokenizer_the_original_did_not_have_is_an_error():
    with pytest.raises(caramba.ManifestError) as info:
        load(toy_manifest("defaults: {data: {tokenizer: bogus_tok}}"))
    [problem] = info.value.problems
    assert problem.path == "defaults.data.tokenizer" and "got 'bogus_tok'" in problem.message


def test_best_effort_is_accepted_with_a_note_and_an_unknown_instrument_is_an_error():
    manifest = load(toy_manifest("defaults: {runtime: {best_effort: true}}"))
    assert [n.path for n in manifest.notes] == ["defaults.runtime.best_effort"]
    with pytest.raises(caramba.ManifestError, match="expected one of 'rich', 'jsonl', 'hdf5'"):
        load(toy_manifest("defaults: {logging: {instrument: printf}}"))


def test_task_is_one_of_the_original_labels():
    with pytest.raises(caramba.ManifestError) as info:
        load(toy_manifest(task="task.languge_modeling"))
    [problem] = info.value.problems
    assert (problem.path, problem.hint) == ("targets[0].task", "did you mean 'task.language_modeling'?")


def test_expected_must_agree_with_the_runs_train_block():
    assert load(toy_manifest(expected="{lr: 0.1}")).target().runs[0].expected == {"lr": 0.1}
    with pytest.raises(caramba.ManifestError) as info:
        load(toy_manifest(expected="{lr: 0.5}"))
    assert [p.message for p in info.value.problems] == ["the run expects lr: 0.5 but its train: gives 0.1"]


def test_instrument_adds_its_sink(tmp_path):
    from caramba import RunSession

    rt = caramba.Runtime(plugins=[toy])
    manifest = rt.load_manifest_text(toy_manifest("defaults: {logging: {instrument: hdf5}}"), filename="m.yml")
    target = manifest.target()
    session = RunSession(rt, manifest, target, tmp_path, None, run=target.runs[0], run_dir=tmp_path)
    session.open_sinks()
    try:
        assert [type(s).__name__ for s in session.sinks] == ["JsonlSink", "HDF5Sink"]
    finally:
        session.close_sinks()
