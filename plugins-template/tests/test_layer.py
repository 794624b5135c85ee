"""ExampleLayer: conformance, math against a float64 reference, validation, training."""

from __future__ import annotations

import json

import pytest
import torch

from caramba import Context, ManifestError, NodeConfig
from caramba import run_target
from caramba.testing import LayerConformance

from caramba_plugin_example import plugin


class TestConformance(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_plugin_example.plugin"
    config = {"type": "ExampleLayer", "d_in": 8, "d_out": 6, "rank": 3}
    input_shape = (2, 5, 8)


def build(runtime, **fields):
    torch.manual_seed(0)
    return runtime.build(runtime.parse(NodeConfig, {"type": "ExampleLayer", **fields}), "layer")


def test_output_matches_float64_product_of_the_factors(runtime):
    layer = build(runtime, d_in=8, d_out=6, rank=3)
    with torch.no_grad():
        layer.bias.normal_()  # a zero bias would hide a missing addition
    x = torch.randn(2, 5, 8)
    expected = x.double() @ layer.down.double().t() @ layer.up.double().t() + layer.bias.double()
    torch.testing.assert_close(layer(x, Context()).double(), expected, rtol=1e-5, atol=1e-6)


def test_weight_has_the_configured_rank(runtime):
    layer = build(runtime, d_in=8, d_out=6, rank=2, bias=False)
    dense = (layer.up.double() @ layer.down.double()).detach()  # the (d_out, d_in) map they stand for
    assert torch.linalg.matrix_rank(dense).item() == 2
    assert layer(torch.eye(8), None).shape == (8, 6)  # ctx may be None


def test_parameter_count_is_rank_times_both_widths_plus_bias():
    config = plugin.ExampleLayerConfig(type="ExampleLayer", d_in=10, d_out=7, rank=3)
    assert config.num_params() == 3 * (10 + 7) + 7


def test_rank_above_either_width_is_reported_at_the_rank_field(runtime, toy_manifest):
    text = toy_manifest({"type": "ExampleLayer", "d_in": 4, "d_out": 1, "rank": 3})
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(text)
    [problem] = err.value.problems
    assert problem.path == "targets[0].system.config.model.rank"
    assert "rank 3 is larger than min(d_in, d_out) = 1" in problem.message
    assert problem.hint == "set rank: 1 or less"


def test_input_width_mismatch_is_reported_at_d_in(runtime, toy_manifest):
    text = toy_manifest({"type": "ExampleLayer", "d_in": 5, "d_out": 1, "rank": 1})
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(text)
    assert [p.path for p in err.value.problems] == ["targets[0].system.config.model.d_in"]


def test_non_positive_rank_is_rejected_while_decoding(runtime, toy_manifest):
    text = toy_manifest({"type": "ExampleLayer", "d_in": 4, "d_out": 1, "rank": 0})
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(text)
    assert err.value.problems[0].path == "targets[0].system.config.model.rank"


def test_trains_to_a_fraction_of_its_initial_loss_in_a_pipeline_run(runtime, toy_manifest, tmp_path):
    manifest = runtime.load_manifest_text(toy_manifest({"type": "ExampleLayer", "d_in": 4, "d_out": 1, "rank": 1}))
    report = run_target(runtime, manifest, "fit", root=tmp_path)
    lines = (tmp_path / "plugin_test" / "fit" / "runs" / "r0" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) == 40
    assert losses[-1] < 0.1 * losses[0], losses
    assert report["runs"][0]["metrics"]["loss"] == losses[-1]
