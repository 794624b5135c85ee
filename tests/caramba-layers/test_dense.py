"""DenseLayer, Conv2dLayer and RNNLayer against torch's own modules, plus conformance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from caramba.errors import ManifestError
from caramba.graph import Context, NodeConfig, Shape
from caramba.manifest import Scope
from caramba.plugins import Runtime
from caramba.testing import LayerConformance
from caramba_layers import plugin

RT = Runtime(autoload=False, plugins=[plugin])


def build(config: dict, dtype=torch.float64):
    torch.manual_seed(0)
    return RT.build(RT.parse(NodeConfig, config), "node").to(dtype)


class TestDenseLayer(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.dense"
    config = {"type": "DenseLayer", "d_in": 8, "d_out": 6, "activation": "gelu", "normalization": "rms_norm",
              "dropout": 0.1}
    input_shape = (2, 5, 8)


class TestConv2dLayer(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.dense"
    config = {"type": "Conv2dLayer", "in_channels": 4, "out_channels": 6, "kernel_size": [3, 2],
              "stride": 2, "padding": 1, "groups": 2}
    input_shape = (2, 4, 9, 7)


class TestRNNLayer(LayerConformance):
    # torch's CPU LSTM warns that oneDNN has no projection kernel and uses its reference one.
    pytestmark = [pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")]
    plugins = [plugin]
    spec_module = "caramba_layers.specs.dense"
    config = {"type": "RNNLayer", "cell_type": "lstm", "input_size": 8, "hidden_size": 6, "num_layers": 2,
              "bidirectional": True, "proj_size": 3}
    input_shape = (2, 5, 8)


def test_dense_layer_is_linear_then_layer_norm_then_activation():
    layer = build({"type": "DenseLayer", "d_in": 5, "d_out": 4, "activation": "silu",
                   "normalization": "layer_norm"})
    x = torch.randn(3, 5, dtype=torch.float64)
    h = x @ layer.linear.weight.T + layer.linear.bias
    mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
    expected = F.silu((h - mu) / torch.sqrt(var + 1e-5))
    torch.testing.assert_close(layer(x, None), expected)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_rnn_layer_returns_the_output_sequence_of_the_torch_rnn(cell):
    layer = build({"type": "RNNLayer", "cell_type": cell, "input_size": 3, "hidden_size": 4, "num_layers": 2})
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    expected, _ = layer.rnn(x)
    y = layer(x, Context())
    assert y.shape == (2, 6, 4)
    torch.testing.assert_close(y, expected)
    declared = RT.parse(NodeConfig, {"type": "RNNLayer", "cell_type": cell, "input_size": 3, "hidden_size": 4,
                                     "num_layers": 2}).num_params()
    assert declared == sum(p.numel() for p in layer.parameters())


def test_conv2d_shape_inference_matches_torch_for_same_and_dilation():
    for cfg in ({"padding": "same", "dilation": 2}, {"padding": "valid", "stride": [2, 1]}, {"padding": [2, 0]}):
        config = {"type": "Conv2dLayer", "in_channels": 2, "out_channels": 3, "kernel_size": 3, **cfg}
        node = RT.parse(NodeConfig, config)
        predicted = node.infer(Shape("B", 2, 11, 8), Scope(lambda *a: None))
        y = build(config)(torch.randn(1, 2, 11, 8, dtype=torch.float64))
        assert tuple(predicted[1:]) == tuple(y.shape[1:])


def test_bad_dense_configs_are_reported_with_their_field():
    with pytest.raises(ManifestError) as err:
        RT.parse(NodeConfig, {"type": "DenseLayer", "d_in": 4, "d_out": 2, "activation": "tanh"})
    assert "activation" in str(err.value)
    with pytest.raises(ManifestError, match="num_layers > 1"):
        RT.parse(NodeConfig, {"type": "RNNLayer", "input_size": 4, "hidden_size": 2, "dropout": 0.5})
    problems = []
    node = RT.parse(NodeConfig, {"type": "Conv2dLayer", "in_channels": 3, "out_channels": 2, "kernel_size": 3})
    Scope(lambda *a: problems.append(a)).infer(node, Shape("B", 4, 8, 8), "model")
    assert problems and problems[0][0] == ("model", "in_channels")


@pytest.mark.parametrize("config, shape", [
    ({"type": "DenseLayer", "d_in": 3, "d_out": 2, "activation": "gelu", "normalization": "layer_norm"}, (2, 3)),
    ({"type": "Conv2dLayer", "in_channels": 2, "out_channels": 2, "kernel_size": 2}, (1, 2, 3, 3)),
    ({"type": "RNNLayer", "cell_type": "gru", "input_size": 2, "hidden_size": 3}, (1, 3, 2)),
])
def test_gradcheck(config, shape):
    layer = build(config)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, None), (x,))
