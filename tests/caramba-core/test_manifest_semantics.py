"""Parse, ${vars}, overrides and lowering: what a valid manifest means."""

from __future__ import annotations

import math

import pytest

import caramba
from caramba.manifest._source import load_text, to_plain


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001), ("1E3", 1000.0), ("-2.5", -2.5), (".5", 0.5), ("+7", 7), ("0o17", 15), ("0x1F", 31),
        ("true", True), ("False", False), ("yes", "yes"), ("on", "on"), ("no", "no"), ("~", None), ("null", None),
        ("'1e-3'", "1e-3"), ('"true"', "true"), ("1_000", "1_000"), ("012", 12), ("2001-12-14", "2001-12-14"),
        ("1:30", "1:30"), (".inf", math.inf), ("-.inf", -math.inf),
    ],
)
def test_yaml_scalars_follow_the_yaml_1_2_core_schema(text, value):
    assert to_plain(load_text(f"v: {text}"))["v"] == value


def test_yaml_nan_and_keys_stay_as_written():
    data = to_plain(load_text(".nan: 1\nnull: 2\n1: 3\nx: .nan\n"))
    assert list(data) == [".nan", "null", "1", "x"]
    assert math.isnan(data["x"])


def test_anchors_aliases_and_merge_keys_work_and_explicit_keys_win():
    data = to_plain(load_text("base: &b {d: 1, e: 2}\nuse: {<<: *b, e: 3}\nsame: *b\n"))
    assert data["use"] == {"e": 3, "d": 1}
    assert data["same"] == {"d": 1, "e": 2}


def test_whole_placeholders_keep_their_type_and_embedded_ones_interpolate(rt):
    m = rt.load_manifest_text(MANIFEST.replace("name: toy", "name: toy-${d}-${flag}-${ratio}-$${literal}"))
    assert m.name == "toy-4-true-0.5-${literal}"
    model = m.target().system.config.model
    assert model.d_in == 4 and isinstance(model.d_in, int)


def test_variables_may_use_variables_and_each_use_is_a_copy(rt):
    text = MANIFEST.replace("vars:\n", "vars:\n  layer: {type: ToyLinear, d_in: '${d}', d_out: '${d}'}\n")
    text = text.replace("model: {type: ToyLinear, d_in: '${d}', d_out: 1}",
                        "model: {type: ToySequential, layers: ['${layer}', '${layer}', "
                        "{type: ToyLinear, d_in: '${d}', d_out: 1}]}")
    m = rt.load_manifest_text(text, overrides=["vars.d=6"])
    layers = m.target().system.config.model.layers
    assert [(x.d_in, x.d_out) for x in layers] == [(6, 6), (6, 6), (6, 1)]
    assert layers[0] is not layers[1]


def test_override_sets_creates_and_indexes_by_name(rt):
    m = rt.load_manifest_text(MANIFEST, overrides=[
        "targets.quick.runs.r.steps=7",          # a list item by its id
        "targets[0].runs[0].train.lr=1e-3",       # a missing mapping is created
        "defaults.logging.sinks=[jsonl]",         # a YAML flow value
        "targets.quick.description=${d} wide",    # a value may use vars
    ])
    run = m.target().runs[0]
    assert (run.steps, run.train.lr) == (7, 0.001)
    assert m.spec.defaults.logging.sinks == ["jsonl"]
    assert m.target().description == "4 wide"
    assert m.overrides[0] == "targets.quick.runs.r.steps=7"


def test_seed_lists_become_one_run_per_seed(rt):
    m = rt.load_manifest_text(MANIFEST.replace("steps: 2", "steps: 2\n        seed: [3, 5]\n        exp: e"))
    assert [(r.id, r.seed, r.exp) for r in m.target().runs] == [("r__s3", 3, "e__s3"), ("r__s5", 5, "e__s5")]


def test_repeat_expands_into_independent_copies(rt):
    text = MANIFEST.replace("model: {type: ToyLinear, d_in: '${d}', d_out: 1}",
                            "model: {type: ToySequential, repeat: 3, layers: [{type: ToyLinear, d_in: 4, d_out: 4}]}")
    m = rt.load_manifest_text(text)
    model = m.target().system.config.model
    assert model.repeat == 1 and len(model.layers) == 3
    assert model.num_params() == 3 * (4 * 4 + 4)
    # copies are checked one after another: a 4 -> 5 layer cannot follow itself (reported once:
    # after a mismatch the shape is unknown, so the next copy does not repeat the complaint)
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text(text.replace("d_in: 4, d_out: 4", "d_in: 4, d_out: 5"))
    assert [p.path for p in info.value.problems] == ["targets[0].system.config.model.layers[1].d_in"]


def test_resolved_manifest_is_plain_data_after_lowering(rt):
    m = rt.load_manifest_text(MANIFEST)
    assert "vars" not in m.resolved
    assert m.resolved["targets"][0]["objective"] == {"ref": "objective.toy_mse"}
    assert type(m.resolved["targets"]) is list


def test_aliases_resolve_to_registered_names(rt):
    text = MANIFEST.replace("model: {type: ToyLinear, d_in: '${d}', d_out: 1}",
                            "model: {type: ToySequential, layers: [{type: HeadsLayer, d_model: 4, n_heads: 2}, "
                            "{type: ToyLinear, d_in: 4, d_out: 1}]}")
    layers = rt.load_manifest_text(text).target().system.config.model.layers
    assert layers[0].type == "Heads"


def test_target_selection_by_name_alias_and_prefix(rt):
    m = rt.load_manifest_text(MANIFEST + "entrypoints:\n  fast: quick\n")
    assert m.target("fast").name == m.target("target:quick").name == m.target().name == "quick"


MANIFEST = """\
version: 2
name: toy
vars:
  d: 4
  flag: true
  ratio: 0.5
targets:
  - name: quick
    data: dataset.toy_regression
    system:
      ref: system.toy
      config:
        d_in: ${d}
        model: {type: ToyLinear, d_in: '${d}', d_out: 1}
    objective: objective.toy_mse
    trainer: trainer.toy
    runs:
      - id: r
        steps: 2
"""


@pytest.mark.parametrize("suffix", ["yml", "json"])
def test_absurdly_deep_nesting_is_a_manifest_error_not_a_recursion_error(rt, suffix):
    deep = "[" * 5000 + "]" * 5000
    text = f'{{"version": 2, "notes": {deep}}}' if suffix == "json" else f"version: 2\nnotes: {deep}\n"
    with pytest.raises(caramba.ManifestError, match="nested too deeply"):
        rt.load_manifest_text(text, filename=f"deep.{suffix}")
