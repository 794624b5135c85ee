"""Configs of graph layers and ``GraphTopology``, a named-port DAG of nodes (torch-free).

``GraphTopology`` checks its wiring at validate time: duplicate ids or output ports, a read
of a port nothing writes, a cycle and an unknown ``output`` are each reported at the field
that causes them (``...nodes[2].in[1]``), before any shape is inferred.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, NodeConfig, Scope, Shape, ShapeError, TopologyConfig, expect_last
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "GraphConvLayerConfig", "GraphNodeSpec", "GraphTopologyConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]
Port = Annotated[str, msgspec.Meta(min_length=1)]


class GraphConvLayerConfig(NodeConfig, kw_only=True):
    """Graph convolution over node features ``(N, F)`` or ``(B, N, F)``.

    The adjacency is read from ``ctx.extras[adj_key]``: a dense ``(N, N)`` (or ``(B, N, N)``)
    tensor where ``adj[i, j] != 0`` means node ``i`` receives from node ``j``; missing self
    loops are added. ``gcn`` (Kipf & Welling 2017): ``D^-1/2 (A+I) D^-1/2 X W + b`` with
    dropout on the input features. ``gat`` (Veličković et al. 2018): per head
    ``α_ij = softmax_j LeakyReLU(a^T [W h_i ‖ W h_j])`` over neighbours, dropout on ``α``,
    heads concatenated (``concat``) or averaged.
    """

    kind: Literal["gcn", "gat"] = "gcn"
    in_features: Positive
    out_features: Positive
    bias: bool = True
    heads: Positive = 1
    concat: bool = True
    negative_slope: Annotated[float, msgspec.Meta(ge=0.0)] = 0.2
    dropout: Probability = 0.0
    adj_key: str = "adj"

    def check(self, scope: Scope) -> None:
        if self.kind == "gcn" and self.heads != 1:
            scope.error("heads", "heads applies to kind: gat; a gcn layer has one")

    @property
    def out_dim(self) -> int:
        return self.out_features * (self.heads if self.kind == "gat" and self.concat else 1)

    def infer(self, x: Shape, scope: Scope) -> Shape:
        if x.rank not in (2, 3):
            raise ShapeError(f"GraphConvLayer expects node features (N, F) or (B, N, F), got {x}",
                             field="in_features")
        expect_last(x, self.in_features, "in_features")
        return x.with_last(self.out_dim)

    def num_params(self) -> int:
        if self.kind == "gcn":
            return self.in_features * self.out_features + (self.out_features if self.bias else 0)
        hf = self.heads * self.out_features
        return self.in_features * hf + 2 * hf + (self.out_dim if self.bias else 0)


class GraphNodeSpec(Config, kw_only=True):
    """One node of a ``GraphTopology``: ``op`` reads the ports ``in`` and writes the port ``out``.

    With several inputs and no ``merge``, the first is the op's ``x`` and the others are
    handed to it as ``ctx.extras[<port>]`` (a ``GraphConvLayer`` reading ``[h, adj]``);
    ``merge: concat | sum`` combines all inputs into ``x`` instead.
    """

    id: Port
    op: NodeConfig
    inputs: Port | Annotated[list[Port], msgspec.Meta(min_length=1)] = msgspec.field(name="in")
    out: Port
    merge: Literal["concat", "sum"] | None = None

    @property
    def ports(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class GraphTopologyConfig(TopologyConfig, kw_only=True):
    """A DAG of nodes wired by named ports, run in dependency order.

    ``inputs``: the external ports; the first is bound to the topology's input tensor, the
    others are read from ``ctx.extras`` (``system.generic`` puts ``batch["adj"]`` there).
    ``output``: the port returned (default: the last listed node's ``out``). Module paths
    of the ops are ``<topology>.layers.<i>`` for ``nodes[i]``.
    """

    nodes: Annotated[list[GraphNodeSpec], msgspec.Meta(min_length=1)]
    inputs: Annotated[list[Port], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["x"])
    output: str | None = None

    def children(self) -> list[NodeConfig]:
        return [n.op for n in self.nodes]

    @property
    def output_port(self) -> str:
        return self.output or self.nodes[-1].out

    def order(self, scope: Scope | None = None) -> list[int] | None:
        """Node indices in dependency order, or ``None`` after reporting the wiring's problems."""
        def report(field: str | tuple[str | int, ...], message: str, hint: str = "") -> None:
            parts = field if isinstance(field, tuple) else (field,)
            if scope is None:
                raise ValueError(f"{'.'.join(map(str, parts))}: {message}" + (f" ({hint})" if hint else ""))
            scope.child(*parts[:-1]).error(parts[-1], message, hint)

        ok = True
        if self.layers:
            report("layers", "GraphTopology takes nodes:, not layers:", "wrap each layer as {id, op, in, out}")
            ok = False
        if self.repeat != 1:
            report("repeat", "GraphTopology cannot repeat", "list the nodes you need, each with its own id")
            ok = False
        ids: dict[str, int] = {}
        writer: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.id in ids:
                report(("nodes", i, "id"), f"duplicate node id '{node.id}'", f"nodes[{ids[node.id]}] has it too")
                ok = False
            ids.setdefault(node.id, i)
            if node.out in self.inputs:
                report(("nodes", i, "out"), f"node '{node.id}' writes '{node.out}', which is a graph input",
                       "give the output port another name")
                ok = False
            elif node.out in writer:
                first = self.nodes[writer[node.out]].id
                report(("nodes", i, "out"), f"port '{node.out}' is written twice: by '{first}' and by '{node.id}'",
                       "give each node its own output port")
                ok = False
            writer.setdefault(node.out, i)
        known = set(self.inputs) | set(writer)
        deps: list[set[int]] = []
        for i, node in enumerate(self.nodes):
            d = set()
            for j, port in enumerate(node.ports):
                if port in writer:
                    d.add(writer[port])
                elif port not in self.inputs:
                    where = ("nodes", i, "in") if isinstance(node.inputs, str) else ("nodes", i, "in", j)
                    report(where, f"node '{node.id}' reads unknown port '{port}'",
                           _suggest(port, known))
                    ok = False
            deps.append(d)
        if self.output_port not in known:
            report("output", f"output port '{self.output_port}' is not written by any node", _suggest(
                self.output_port, known))
            ok = False
        order: list[int] = []
        done: set[int] = set()
        while len(order) < len(self.nodes):
            ready = [i for i in range(len(self.nodes)) if i not in done and deps[i] <= done]
            if not ready:
                cycle = _find_cycle(deps, done)
                names = " → ".join(self.nodes[i].id for i in [*cycle, cycle[0]])
                report(("nodes", cycle[0], "in"), f"cycle in the graph: {names}",
                       "a GraphTopology must be acyclic; use CyclicTopology to iterate a body")
                return None
            order.extend(ready)
            done.update(ready)
        return order if ok else None

    def check(self, scope: Scope) -> None:
        """Wiring problems are found when the manifest is decoded, whatever the input shape."""
        self.order(scope)

    def infer(self, x: Shape, scope: Scope) -> Shape | None:  # type: ignore[override]
        order = self.order(scope)
        if order is None:
            return None
        shapes: dict[str, Shape | None] = {self.inputs[0]: x}
        for i in order:
            node = self.nodes[i]
            ins = [shapes.get(p) for p in node.ports]
            if node.merge is None:
                h = ins[0]
            elif any(s is None for s in ins):
                h = None
            else:
                h = _merge(node.merge, ins, scope.child("nodes", i, "merge"))  # type: ignore[arg-type]
            shapes[node.out] = scope.infer(node.op, h, "nodes", i, "op")
        return shapes.get(self.output_port)

    def num_params(self) -> int:
        return sum(n.op.num_params() for n in self.nodes)

    def kv_elements_per_token(self) -> int:
        return sum(n.op.kv_elements_per_token() for n in self.nodes)


def _merge(how: str, shapes: list[Shape], scope: Scope) -> Shape | None:
    lead = shapes[0][:-1]
    for s in shapes[1:]:
        if len(s) != len(shapes[0]) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                           for a, b in zip(s[:-1], lead)):
            scope.error(None, f"cannot {how} inputs of shapes {', '.join(map(str, shapes))}")
            return None
    if how == "sum":
        if len({s.last for s in shapes}) > 1:
            scope.error(None, f"sum needs equal widths, got {', '.join(str(s.last) for s in shapes)}")
            return None
        return shapes[0]
    if any(isinstance(s.last, str) for s in shapes):
        return shapes[0].with_last("F")
    return shapes[0].with_last(sum(s.last for s in shapes))  # type: ignore[misc]


def _find_cycle(deps: list[set[int]], done: set[int]) -> list[int]:
    """A cycle among the nodes not yet ordered (each of them waits on another of them)."""
    start = next(i for i in range(len(deps)) if i not in done)
    path, seen = [start], {start: 0}
    while True:
        nxt = min(d for d in deps[path[-1]] if d not in done)
        if nxt in seen:
            cycle = path[seen[nxt]:][::-1]  # in data-flow order
            first = cycle.index(min(cycle))  # start at the node listed first in the manifest
            return cycle[first:] + cycle[:first]
        seen[nxt] = len(path)
        path.append(nxt)


def _suggest(name: str, known: set[str]) -> str:
    from caramba import did_you_mean

    return did_you_mean(name, known)


COMPONENTS = [
    Component("layer", "GraphConvLayer", GraphConvLayerConfig, "caramba_layers.modules.graph:GraphConvLayer",
              "GCN or GAT convolution; adjacency from ctx.extras"),
    Component("topology", "GraphTopology", GraphTopologyConfig, "caramba_layers.modules.graph:GraphTopology",
              "named-port DAG of nodes, checked for cycles at validate time"),
]
