"""ExampleTopology: conformance, the residual formula, validation of its body."""

from __future__ import annotations

import pytest
import torch

from caramba import Context, ManifestError, NodeConfig
from caramba.testing import TopologyConformance, toy

from caramba_plugin_example import plugin

BODY = [
    {"type": "ToyLinear", "d_in": 8, "d_out": 4},
    {"type": "ToyLinear", "d_in": 4, "d_out": 8},
]


class TestConformance(TopologyConformance):
    plugins = [plugin, toy]  # the children are caramba-core's toy layers
    spec_module = "caramba_plugin_example.plugin"
    config = {"type": "ExampleTopology", "alpha_init": 0.5, "layers": BODY}
    input_shape = (2, 5, 8)


def build(runtime, **fields):
    torch.manual_seed(0)
    return runtime.build(runtime.parse(NodeConfig, {"type": "ExampleTopology", "layers": BODY, **fields}), "block")


def test_output_is_input_plus_alpha_times_the_children_in_order(runtime):
    block = build(runtime, alpha_init=0.5)
    x = torch.randn(2, 5, 8)
    first, second = block.layers
    expected = x + 0.5 * second.linear(first.linear(x))
    torch.testing.assert_close(block(x, Context()), expected)


def test_zero_alpha_starts_as_the_identity_and_still_learns_alpha(runtime):
    block = build(runtime)  # alpha_init defaults to 0
    x = torch.randn(3, 8)
    y = block(x, None)
    torch.testing.assert_close(y, x)
    y.square().sum().backward()
    assert block.alpha.grad is not None and block.alpha.grad.abs().item() > 0


def test_children_keep_manifest_paths(runtime):
    block = build(runtime)
    assert [layer.node_path for layer in block.layers] == ["block.layers.0", "block.layers.1"]


def test_parameter_count_adds_alpha_to_the_children():
    config = plugin.ExampleTopologyConfig(type="ExampleTopology", layers=[])
    assert config.num_params() == 1


def test_a_body_that_changes_the_width_is_reported_at_layers(runtime, toy_manifest):
    model = {"type": "ExampleTopology", "layers": [{"type": "ToyLinear", "d_in": 4, "d_out": 1}]}
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(toy_manifest(model))
    [problem] = err.value.problems
    assert problem.path == "targets[0].system.config.model.layers"
    assert "maps (B, 4) to (B, 1)" in problem.message


def test_a_problem_inside_the_body_is_reported_once_at_the_child(runtime, toy_manifest):
    model = {"type": "ExampleTopology", "layers": [{"type": "ToyLinear", "d_in": 3, "d_out": 4}]}
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(toy_manifest(model))
    assert [p.path for p in err.value.problems] == ["targets[0].system.config.model.layers[0].d_in"]
