"""Topologies against hand-written compositions of the very same child modules."""

from __future__ import annotations

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.errors import CarambaError
from caramba.graph import NodeConfig, Shape
from caramba.testing import TopologyConformance

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])


def lin(d_in, d_out):
    return {"type": "LinearLayer", "d_in": d_in, "d_out": d_out}


def build(config):
    torch.manual_seed(0)
    return RT.build(RT.parse(NodeConfig, config), "top").double()


def x_(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def test_stacked_sequential_and_nested_apply_children_in_order():
    for name in ("StackedTopology", "SequentialTopology", "NestedTopology"):
        m = build({"type": name, "layers": [lin(4, 6), {"type": "RMSNormLayer", "d_model": 6}, lin(6, 3)]})
        x = x_(2, 5, 4)
        a, n, b = m.layers
        torch.testing.assert_close(m(x), b(n(a(x))))


def test_repeat_builds_independent_copies_in_order():
    m = build({"type": "NestedTopology", "repeat": 3, "layers": [lin(4, 4)]})
    assert len(m.layers) == 3
    assert not torch.equal(m.layers[0].linear.weight, m.layers[1].linear.weight)
    x = x_(2, 4)
    torch.testing.assert_close(m(x), m.layers[2](m.layers[1](m.layers[0](x))))


def test_residual_adds_the_input_around_the_whole_chain():
    m = build({"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": 4}, lin(4, 4)]})
    x = x_(2, 3, 4)
    torch.testing.assert_close(m(x), x + m.layers[1](m.layers[0](x)))


def test_parallel_stacks_on_a_new_last_dim():
    m = build({"type": "ParallelTopology", "layers": [lin(4, 3), lin(4, 3)]})
    x = x_(2, 5, 4)
    y = m(x)
    assert y.shape == (2, 5, 3, 2)
    torch.testing.assert_close(y[..., 0], m.layers[0](x))
    torch.testing.assert_close(y[..., 1], m.layers[1](x))


def test_branching_concatenates_features():
    m = build({"type": "BranchingTopology", "layers": [lin(4, 3), lin(4, 5)]})
    x = x_(2, 5, 4)
    torch.testing.assert_close(m(x), torch.cat((m.layers[0](x), m.layers[1](x)), dim=-1))


def test_cyclic_applies_the_same_body_k_times():
    m = build({"type": "CyclicTopology", "iterations": 3,
               "layers": [lin(4, 4), {"type": "RMSNormLayer", "d_model": 4}]})
    a, n = m.layers
    x = x_(2, 4)
    torch.testing.assert_close(m(x), n(a(n(a(n(a(x)))))))
    assert sum(p.numel() for p in m.parameters()) == 4 * 4 + 4 + 4  # shared: one body's weights


def test_recurrent_feeds_the_last_output_position_into_the_next_call():
    m = build({"type": "RecurrentTopology", "layers": [lin(4, 4)]})
    f = m.layers[0]
    x1, x2 = x_(2, 3, 4), x_(2, 2, 4)
    ctx = caramba.Context()
    y1 = m(x1, ctx)
    torch.testing.assert_close(y1, f(x1))  # no state at first
    y2 = m(x2, ctx)
    torch.testing.assert_close(y2, f(x2 + y1[:, -1:]))
    torch.testing.assert_close(ctx.state["top"], y2[:, -1:])
    assert not ctx.state["top"].requires_grad
    torch.testing.assert_close(m(x2, caramba.Context()), f(x2))  # a fresh context starts over
    with pytest.raises(CarambaError, match="recurrent state"):
        m(x_(3, 2, 4), ctx)


def infer(config, shape):
    problems = []
    out = caramba.Scope(lambda *a: problems.append(a)).infer(RT.parse(NodeConfig, config), Shape(*shape))
    return out, problems


def test_shape_inference_of_each_topology():
    assert infer({"type": "ParallelTopology", "layers": [lin(4, 3), lin(4, 3), lin(4, 3)]}, ("B", 4))[0] == (
        "B", 3, 3)
    assert infer({"type": "BranchingTopology", "layers": [lin(4, 3), lin(4, 5)]}, ("B", "T", 4))[0] == ("B", "T", 8)
    assert infer({"type": "StackedTopology", "layers": [lin(4, 3), lin(3, 7)]}, ("B", 4))[0] == ("B", 7)


@pytest.mark.parametrize("config,field", [
    ({"type": "ResidualTopology", "layers": [lin(4, 3)]}, ("layers",)),
    ({"type": "CyclicTopology", "iterations": 2, "layers": [lin(4, 3)]}, ("layers",)),
    ({"type": "RecurrentTopology", "layers": [lin(4, 5)]}, ("layers",)),
    ({"type": "ParallelTopology", "layers": [lin(4, 3), lin(4, 2)]}, ("layers",)),
    ({"type": "StackedTopology", "layers": [{"type": "BranchingTopology", "layers": [lin(4, 3), lin(4, 3)]},
                                            lin(5, 2)]}, ("layers", 1, "d_in")),
])
def test_shape_errors_name_the_field(config, field):
    _, problems = infer(config, ("B", 4))
    assert problems and problems[0][0] == field, problems


class TestStackedConformance(TopologyConformance):
    plugins = [layers_plugin]
    spec_module = "caramba_layers.specs.topologies"
    config = {"type": "StackedTopology", "layers": [lin(8, 8), {"type": "RMSNormLayer", "d_model": 8}]}


class TestResidualConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": 8},
                                                     {"type": "AttentionLayer", "d_model": 8, "n_heads": 2}]}


class TestParallelConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "ParallelTopology", "layers": [lin(8, 4), lin(8, 4)]}


class TestBranchingConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "BranchingTopology", "repeat": 2, "layers": [lin(8, 4), lin(8, 2)]}


class TestCyclicConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "CyclicTopology", "iterations": 3, "layers": [lin(8, 8)]}


class TestRecurrentConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "RecurrentTopology", "layers": [lin(8, 8)]}


class TestNestedConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "NestedTopology", "repeat": 2, "layers": [lin(8, 8)]}


class TestSequentialConformance(TopologyConformance):
    plugins = [layers_plugin]
    config = {"type": "SequentialTopology", "layers": [lin(8, 8)]}
