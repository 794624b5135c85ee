"""Plugin filters say what they did: ``-p no:`` takes an entry-point or a distribution name,
a filter that matches nothing is a warning, and a component a filter left out is named so
in the error about it."""

from __future__ import annotations

import json


def test_a_distribution_name_blocks_its_plugin(cli):
    outcome = cli("plugins", "--json", "-p", "no:caramba-layers")
    assert outcome.code == 0 and "warning" not in outcome.err
    status = {p["name"]: (p["status"], p["reason"]) for p in json.loads(outcome.out)["plugins"]}
    assert status["layers"] == ("blocked", "blocked by -p no:caramba-layers")
    assert status["trainers"][0] == "loaded"


def test_a_filter_that_matches_nothing_is_a_warning(cli, manifest, monkeypatch):
    outcome = cli("validate", manifest, "-p", "no:caramba-layerz")
    assert outcome.code == 0
    assert "warning: -p no:caramba-layerz matches no installed plugin" in outcome.err
    monkeypatch.setenv("CARAMBA_PLUGINS", "layers,trainers,infer,nonexistent")
    outcome = cli("validate", manifest)
    assert outcome.code == 0
    assert "warning: CARAMBA_PLUGINS=nonexistent matches no installed plugin" in outcome.err


def test_a_component_left_out_by_a_filter_names_the_filter(cli, manifest, monkeypatch):
    monkeypatch.setenv("CARAMBA_PLUGINS", "caramba-trainers")
    outcome = cli("validate", manifest)
    outcome.assert_clean_failure(2, "unknown system 'system.mlp_classifier'", "left out here: ",
                                 "infer (not in CARAMBA_PLUGINS)", "layers (not in CARAMBA_PLUGINS)")
