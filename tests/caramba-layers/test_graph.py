"""GraphConvLayer (GCN by hand, GAT from the paper's formula) and GraphTopology execution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from caramba.errors import CarambaError, ManifestError
from caramba.graph import Context, NodeConfig, Shape
from caramba.manifest import Scope
from caramba.manifest._decode import format_path
from caramba.plugins import Runtime
from caramba.testing import LayerConformance, TopologyConformance
from caramba_layers import plugin
from caramba_layers.modules.graph import normalized_adjacency

RT = Runtime(autoload=False, plugins=[plugin])

PATH3 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def build(config: dict, seed: int = 0):
    torch.manual_seed(seed)
    return RT.build(RT.parse(NodeConfig, config), "model").double()


def random_adj(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, n, generator=g) < 0.4).double()
    a.fill_diagonal_(0)
    return a


class WithAdjacency(nn.Module):
    """Runs a graph layer with a fixed adjacency in ``ctx.extras`` (the conformance input has none)."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("adj", random_adj(n).float(), persistent=False)

    def forward(self, x, ctx=None):
        ctx = ctx or Context()
        ctx.extras["adj"] = self.adj.to(x.dtype)
        return self.inner(x, ctx)


class GraphConformance(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.graph"

    def build(self, rt=None, seed=0):
        return WithAdjacency(super().build(rt, seed), self.input_shape[-2])


class TestGCNLayer(GraphConformance):
    config = {"type": "GraphConvLayer", "kind": "gcn", "in_features": 6, "out_features": 4, "dropout": 0.1}
    input_shape = (7, 6)


class TestGATLayer(GraphConformance):
    config = {"type": "GraphConvLayer", "kind": "gat", "in_features": 6, "out_features": 4, "heads": 3,
              "dropout": 0.1}
    input_shape = (2, 7, 6)


class TestGraphTopology(TopologyConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.graph"
    config = {"type": "GraphTopology", "output": "y", "nodes": [
        {"id": "head", "op": {"type": "DenseLayer", "d_in": 7, "d_out": 3}, "in": ["a", "b"], "out": "y",
         "merge": "concat"},
        {"id": "left", "op": {"type": "DenseLayer", "d_in": 6, "d_out": 4, "activation": "relu"}, "in": "x",
         "out": "a"},
        {"id": "right", "op": {"type": "DenseLayer", "d_in": 6, "d_out": 3}, "in": "x", "out": "b"},
    ]}
    input_shape = (2, 5, 6)


def test_normalised_adjacency_of_a_three_node_path_by_hand():
    # Â = A + I has degrees (2, 3, 2); entry (i, j) is Â_ij / sqrt(d_i d_j).
    r6 = 1 / math.sqrt(6)
    expected = torch.tensor([[1 / 2, r6, 0], [r6, 1 / 3, r6], [0, r6, 1 / 2]], dtype=torch.float64)
    torch.testing.assert_close(normalized_adjacency(PATH3), expected)
    with_loops = PATH3 + torch.eye(3, dtype=torch.float64)  # existing self loops are not doubled
    torch.testing.assert_close(normalized_adjacency(with_loops), expected)


def test_gcn_equals_the_normalised_adjacency_product():
    layer = build({"type": "GraphConvLayer", "kind": "gcn", "in_features": 2, "out_features": 2})
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, -1.0]]))
        layer.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    xw = torch.tensor([[1.0, -1.0], [3.0, -1.0], [5.0, -1.0]], dtype=torch.float64)  # x W^T by hand
    r6 = 1 / math.sqrt(6)
    a = torch.tensor([[1 / 2, r6, 0], [r6, 1 / 3, r6], [0, r6, 1 / 2]], dtype=torch.float64)
    y = layer(x, Context(extras={"adj": PATH3}))
    torch.testing.assert_close(y, a @ xw + torch.tensor([0.5, 0.0], dtype=torch.float64))
    batched = layer(torch.stack([x, 2 * x]), Context(extras={"adj": PATH3}))
    torch.testing.assert_close(batched[1], 2 * (a @ xw) + torch.tensor([0.5, 0.0], dtype=torch.float64))


def gat_reference(layer, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
    """Veličković et al. eq. 1-5 node by node in float64."""
    cfg = layer.config
    n, heads, f = x.shape[0], cfg.heads, cfg.out_features
    w = layer.weight.double().reshape(heads, f, -1)
    outs = []
    for k in range(heads):
        wh = x @ w[k].T  # (N, F)
        a = torch.cat([layer.att_dst[k], layer.att_src[k]]).double()
        head = torch.zeros(n, f, dtype=torch.float64)
        for i in range(n):
            nbrs = [j for j in range(n) if adj[i, j] != 0 or i == j]
            e = torch.stack([F.leaky_relu(a @ torch.cat([wh[i], wh[j]]), cfg.negative_slope) for j in nbrs])
            alpha = torch.exp(e) / torch.exp(e).sum()
            head[i] = sum(alpha[m] * wh[j] for m, j in enumerate(nbrs))
        outs.append(head)
    y = torch.cat(outs, -1) if cfg.concat else torch.stack(outs).mean(0)
    return y + layer.bias.double()


@pytest.mark.parametrize("concat", [True, False])
def test_gat_equals_the_papers_formula(concat):
    layer = build({"type": "GraphConvLayer", "kind": "gat", "in_features": 3, "out_features": 2, "heads": 2,
                   "concat": concat, "negative_slope": 0.1})
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(6, 3, dtype=torch.float64)
    adj = random_adj(6, seed=3)
    torch.testing.assert_close(layer(x, Context(extras={"adj": adj})), gat_reference(layer, x, adj))


def test_missing_adjacency_is_a_clear_error():
    layer = build({"type": "GraphConvLayer", "in_features": 3, "out_features": 2})
    with pytest.raises(CarambaError, match=r"ctx.extras\['adj'\]"):
        layer(torch.randn(4, 3, dtype=torch.float64), Context())


def test_graph_topology_runs_nodes_in_dependency_order_and_routes_extra_ports():
    topo = build({"type": "GraphTopology", "inputs": ["x", "adj"], "nodes": [
        {"id": "out", "op": {"type": "DenseLayer", "d_in": 4, "d_out": 2}, "in": ["h", "x2"], "out": "y",
         "merge": "sum"},
        {"id": "gcn", "op": {"type": "GraphConvLayer", "in_features": 3, "out_features": 4}, "in": ["x", "adj"],
         "out": "h"},
        {"id": "skip", "op": {"type": "DenseLayer", "d_in": 3, "d_out": 4}, "in": "x", "out": "x2"},
    ], "output": "y"})
    assert topo.order == [1, 2, 0]
    x, adj = torch.randn(5, 3, dtype=torch.float64), random_adj(5)
    gcn, skip, out = topo.layers[1], topo.layers[2], topo.layers[0]
    expected = out(gcn(x, Context(extras={"adj": adj})) + skip(x, None), None)
    torch.testing.assert_close(topo(x, Context(extras={"adj": adj})), expected)
    with pytest.raises(CarambaError, match="'adj' is not in ctx.extras"):
        topo(x, Context())
    node = RT.parse(NodeConfig, {"type": "GraphTopology", "inputs": ["x", "adj"], "nodes": [
        {"id": "gcn", "op": {"type": "GraphConvLayer", "kind": "gat", "in_features": 3, "out_features": 4,
                             "heads": 2}, "in": ["x", "adj"], "out": "h"}]})
    assert Scope(lambda *a: None).infer(node, Shape("N", 3)) == Shape("N", 8)


def wiring_problems(nodes: list, **fields) -> list[tuple[str, str]]:
    """``(field path, message)`` for each problem: wiring at decode time, shapes at inference."""
    try:
        node = RT.parse(NodeConfig, {"type": "GraphTopology", "nodes": nodes, **fields})
    except ManifestError as err:
        return [(p.path, p.message) for p in err.problems]
    problems: list = []
    Scope(lambda *a: problems.append(a)).infer(node, Shape("B", 4))
    return [(format_path(p[0]), p[1]) for p in problems]


def dense(d_in=4, d_out=4):
    return {"type": "DenseLayer", "d_in": d_in, "d_out": d_out}


def test_graph_wiring_problems_are_reported_at_their_fields():
    assert wiring_problems([{"id": "a", "op": dense(), "in": "x", "out": "h"}]) == []
    cycle = wiring_problems([
        {"id": "a", "op": dense(), "in": ["x", "c"], "out": "h", "merge": "sum"},
        {"id": "b", "op": dense(), "in": "h", "out": "g"},
        {"id": "c", "op": dense(), "in": "g", "out": "c"},
    ])
    assert cycle == [("nodes[0].in", "cycle in the graph: a → b → c → a")]
    unknown = wiring_problems([{"id": "a", "op": dense(), "in": ["x", "hh"], "out": "h"}])
    assert unknown == [("nodes[0].in[1]", "node 'a' reads unknown port 'hh'")]
    dup = wiring_problems([{"id": "a", "op": dense(), "in": "x", "out": "h"},
                           {"id": "a", "op": dense(), "in": "h", "out": "h"}], output="nope")
    assert {p[0] for p in dup} == {"nodes[1].id", "nodes[1].out", "output"}
    assert wiring_problems([{"id": "a", "op": dense(), "in": "x", "out": "x"}])[0][0] == "nodes[0].out"
    widths = wiring_problems([{"id": "a", "op": dense(4, 3), "in": "x", "out": "h"},
                              {"id": "b", "op": dense(), "in": ["x", "h"], "out": "y", "merge": "sum"}])
    assert widths == [("nodes[1].merge", "sum needs equal widths, got 4, 3")]
    shape = wiring_problems([{"id": "a", "op": dense(5, 3), "in": "x", "out": "h"}])
    assert shape[0][0] == "nodes[0].op.d_in"


def test_gradcheck():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    adj = random_adj(5, seed=1)
    for kind, extra in (("gcn", {}), ("gat", {"heads": 2})):
        layer = build({"type": "GraphConvLayer", "kind": kind, "in_features": 3, "out_features": 2, **extra})
        assert torch.autograd.gradcheck(lambda t, m=layer: m(t, Context(extras={"adj": adj})), (x,))
