"""Bounded input: a manifest that would expand without limit, or that holds a number no run
can honour, is refused by ``validate`` at once, naming the limit and how to raise it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ALIAS_BOMB = """
version: 2
name: laughs
vars:
  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
targets: []
"""


def _write(tmp_path: Path, text: str, name: str = "m.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_billion_laughs_is_refused_naming_the_limit(cli, tmp_path):
    # 9**9 = 387 million strings once expanded; refused before anything is copied
    outcome = cli("validate", _write(tmp_path, ALIAS_BOMB))
    outcome.assert_clean_failure(2, "past 100,000 values", "CARAMBA_MAX_MANIFEST_NODES")


def test_the_value_limit_can_be_raised_deliberately(cli, tmp_path, monkeypatch):
    # four levels of nine: 7,381 values
    small = ALIAS_BOMB.split("  e:")[0] + "targets: []\n"
    monkeypatch.setenv("CARAMBA_MAX_MANIFEST_NODES", "5000")
    cli("validate", _write(tmp_path, small)).assert_clean_failure(2, "past 5,000 values")
    monkeypatch.setenv("CARAMBA_MAX_MANIFEST_NODES", "10000")
    assert cli("validate", _write(tmp_path, small)).code == 0


def test_variables_that_copy_each_other_are_bounded(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CARAMBA_MAX_MANIFEST_NODES", "20000")
    levels = ["  v0: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    levels += [f"  v{i}: [{', '.join([repr('${v' + str(i - 1) + '}')] * 10)}]" for i in range(1, 8)]
    text = "version: 2\nname: vars\nvars:\n" + "\n".join(levels) + "\ntargets: []\n"
    outcome = cli("validate", _write(tmp_path, text))
    outcome.assert_clean_failure(2, "vars.v4", "variable '${v3}' expands the manifest past 20,000 values")


def test_text_interpolation_cannot_grow_without_bound(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CARAMBA_MAX_MANIFEST_BYTES", "100000")
    levels = ['  s0: "' + "x" * 64 + '"']
    levels += [f'  s{i}: "' + ("${s" + str(i - 1) + "}") * 16 + '"' for i in range(1, 6)]
    text = "version: 2\nname: text\nvars:\n" + "\n".join(levels) + "\nnotes: ${s5}\ntargets: []\n"
    outcome = cli("validate", _write(tmp_path, text))
    outcome.assert_clean_failure(2, "characters (limit 100,000)", "CARAMBA_MAX_MANIFEST_BYTES")


def test_a_huge_repeat_is_refused_at_its_line(cli, manifest):
    text = manifest.read_text().replace(
        "ref: system.mlp_classifier\n      config: {d_in: 64, d_hidden: 32, n_layers: 2, n_classes: 10}",
        "ref: system.toy\n      config: {d_in: 64, model: {type: StackedTopology, repeat: 100000000, layers: "
        "[{type: LinearLayer, d_in: 64, d_out: 64}]}}")
    manifest.write_text(text)
    outcome = cli("validate", manifest)
    outcome.assert_clean_failure(2, "repeat: 100000000 expands the manifest past 100,000 values",
                                 "targets[0].system.config.model.repeat")


def test_an_oversized_file_is_refused_before_it_is_read(cli, manifest, mlp_text, monkeypatch):
    monkeypatch.setenv("CARAMBA_MAX_MANIFEST_BYTES", "200")
    outcome = cli("validate", manifest)
    outcome.assert_clean_failure(2, f"the file is {len(mlp_text):,} bytes; a manifest may be 200 at most")


@pytest.mark.parametrize(("override", "shown"), [
    ("targets[0].runs[0].train.lr=.inf", "inf is not a finite number"),
    ("targets[0].runs[0].train.lr=-1e400", "-inf is not a finite number"),
    ("targets[0].runs[0].train.lr=.nan", "nan is not a finite number"),
    ("targets[0].runs[0].steps=1" + "0" * 400, "the integer 100000000000... does not fit in 64 bits"),
])
def test_impossible_numbers_are_refused_wherever_they_appear(cli, manifest, override, shown):
    outcome = cli("validate", manifest, "-s", override)
    outcome.assert_clean_failure(2, override.split("=")[0], shown)


def test_a_model_too_big_for_memory_is_refused_with_the_estimate(cli, manifest, monkeypatch):
    monkeypatch.setenv("CARAMBA_MEMORY_BYTES", str(2**30))
    # 64*100000 + 100000 + 100000*100000 + 100000 + 100000*10 + 10 parameters
    outcome = cli("validate", manifest, "-s", "targets[0].system.config.d_hidden=100000")
    outcome.assert_clean_failure(2, "targets[0].system", "10,007,600,010 parameters need 37.3 GiB as fp32 weights",
                                 "about 149.1 GiB to train", "the memory budget is 1.0 GiB")


def test_the_dry_run_plan_shows_the_training_memory(cli, manifest):
    outcome = cli("run", manifest, "--dry-run", "--json")
    assert outcome.code == 0
    target = json.loads(outcome.out)["targets"][0]
    assert target["training_bytes"] == 16 * target["parameters"]


def test_a_byte_order_mark_is_accepted_in_json_as_in_yaml(cli, tmp_path):
    text = "\ufeff" + json.dumps({"version": 2, "name": "bom", "targets": []})
    assert cli("validate", _write(tmp_path, text, "m.json")).code == 0
    assert cli("validate", _write(tmp_path, "\ufeffversion: 2\nname: bom\ntargets: []\n")).code == 0
