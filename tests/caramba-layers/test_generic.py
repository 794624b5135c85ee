"""system.generic, system.mlp_classifier and system.gcn: batches in, named outputs out."""

from __future__ import annotations

import pytest
import torch

from caramba.errors import CarambaError, ManifestError
from caramba.graph import Builder, Context
from caramba.manifest import Scope
from caramba.plugins import Runtime
from caramba_layers import plugin
from caramba_layers.modules.graph import normalized_adjacency

RT = Runtime(autoload=False, plugins=[plugin])


def system(name: str, config: dict, seed: int = 0):
    entry = RT.get("system", name)
    cfg = RT.parse(entry.config, config)
    torch.manual_seed(seed)
    return cfg, entry.load()(cfg, builder=Builder(RT)).double()


def problems(cfg) -> list:
    found: list = []
    cfg.check(Scope(lambda *a: found.append(a), ("system", "config")))
    return found


GRAPH = {"type": "GraphTopology", "inputs": ["x", "adj"], "nodes": [
    {"id": "conv", "op": {"type": "GraphConvLayer", "in_features": 4, "out_features": 8}, "in": ["x", "adj"],
     "out": "h"},
    {"id": "act", "op": {"type": "DenseLayer", "d_in": 8, "d_out": 3}, "in": "h", "out": "y"},
]}


def test_generic_system_applies_its_graph_to_the_input_key_with_adj_in_extras():
    cfg, sys_ = system("system.generic", {"model": GRAPH, "input_shape": ["N", 4], "input_key": "feats",
                                          "output_key": "scores"})
    assert problems(cfg) == []
    x, adj = torch.randn(5, 4, dtype=torch.float64), (torch.rand(5, 5) < 0.5).double()
    out = sys_({"feats": x, "adj": adj, "targets": torch.zeros(5)})
    conv, dense = sys_.model.layers
    assert conv.node_path == "model.layers.0"
    expected = dense(conv(x, Context(extras={"adj": adj})), None)
    assert list(out) == ["scores"]
    torch.testing.assert_close(out["scores"], expected)
    with pytest.raises(CarambaError, match=r"batch\['feats'\]"):
        sys_({"inputs": x, "adj": adj})


def test_generic_system_check_reports_shape_errors_under_model():
    with pytest.raises(ManifestError) as err:
        RT.parse(RT.get("system", "system.generic").config, {"model": GRAPH, "input_shape": ["N", 5]})
    assert err.value.problems[0].path == "model.nodes[0].op.in_features"
    cfg = RT.parse(RT.get("system", "system.generic").config, {"model": GRAPH, "input_shape": [7, 4]})
    assert cfg.num_params() == 4 * 8 + 8 + 8 * 3 + 3 and cfg.kv_elements_per_token() == 0
    with pytest.raises(ManifestError, match="input_shape"):
        RT.parse(RT.get("system", "system.generic").config, {"model": GRAPH})


def test_generic_system_lora_block_leaves_only_adapters_trainable():
    model = {"type": "GraphTopology", "nodes": [
        {"id": "a", "op": {"type": "DenseLayer", "d_in": 4, "d_out": 4}, "in": "x", "out": "h"},
        {"id": "b", "op": {"type": "DenseLayer", "d_in": 4, "d_out": 2}, "in": "h", "out": "y"}]}
    _, sys_ = system("system.generic", {"model": model, "input_shape": ["B", 4],
                                        "lora": {"targets": ["layers.1.linear"], "r": 2}})
    assert sys_.lora_modules == ["model.layers.1.linear"]
    assert [n for n, p in sys_.named_parameters() if p.requires_grad] == [
        "model.layers.1.linear.lora_A", "model.layers.1.linear.lora_B"]


def test_mlp_classifier_is_dense_relu_layers_then_a_linear_head():
    cfg, sys_ = system("system.mlp_classifier", {"d_in": 5, "d_hidden": 6, "n_layers": 2, "n_classes": 3,
                                                 "dropout": 0.1})
    sys_.eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    h = x
    for layer in sys_.layers:
        h = torch.relu(h @ layer.linear.weight.T + layer.linear.bias)
    torch.testing.assert_close(sys_({"inputs": x})["logits"], h @ sys_.head.weight.T + sys_.head.bias)
    assert cfg.num_params() == sum(p.numel() for p in sys_.parameters())


def test_gcn_system_is_two_normalised_graph_convolutions_with_relu():
    cfg, sys_ = system("system.gcn", {"d_in": 4, "d_hidden": 6, "n_classes": 3, "dropout": 0.5})
    sys_.eval()
    x, adj = torch.randn(5, 4, dtype=torch.float64), (torch.rand(5, 5) < 0.5).double()
    adj = ((adj + adj.T) > 0).double()
    a = normalized_adjacency(adj)
    l0, l1 = sys_.layers
    h = torch.relu(a @ x @ l0.weight.T + l0.bias)
    torch.testing.assert_close(sys_({"inputs": x, "adj": adj})["logits"], a @ h @ l1.weight.T + l1.bias)
    assert cfg.num_params() == sum(p.numel() for p in sys_.parameters())
    sys_.train()
    out = sys_({"inputs": x, "adj": adj})["logits"]
    out.sum().backward()
    assert all(p.grad is not None for p in sys_.parameters())
