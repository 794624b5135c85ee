"""``GraphConvLayer`` (GCN, GAT) and ``GraphTopology`` (a named-port DAG of nodes)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import CarambaError, Context
from caramba.nn import NodeModule, TopologyModule

__all__ = ["GraphConvLayer", "GraphTopology", "normalized_adjacency", "with_self_loops"]


def with_self_loops(adj: torch.Tensor) -> torch.Tensor:
    """``adj`` with a 1 on every zero diagonal entry (existing self loops keep their weight)."""
    diag = adj.diagonal(dim1=-2, dim2=-1)
    return adj + torch.diag_embed((diag == 0).to(adj.dtype))


def normalized_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """``D^-1/2 Â D^-1/2`` with ``Â = A + I`` (Kipf & Welling 2017, eq. 2); ``(..., N, N)``."""
    a_hat = with_self_loops(adj)
    d = a_hat.sum(-1).rsqrt()  # every degree ≥ 1 thanks to the self loop
    return d[..., :, None] * a_hat * d[..., None, :]


class GraphConvLayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        h, f = config.heads, config.out_features
        if config.kind == "gcn":
            self.weight = nn.Parameter(torch.empty(f, config.in_features))
            nn.init.xavier_uniform_(self.weight)
        else:
            self.weight = nn.Parameter(torch.empty(h * f, config.in_features))
            self.att_src = nn.Parameter(torch.empty(h, f))
            self.att_dst = nn.Parameter(torch.empty(h, f))
            for p in (self.weight, self.att_src, self.att_dst):
                nn.init.xavier_uniform_(p)
        self.bias = nn.Parameter(torch.zeros(config.out_dim)) if config.bias else None
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        adj = ctx.extras.get(self.config.adj_key)
        if adj is None:
            raise CarambaError(
                f"GraphConvLayer needs the adjacency in ctx.extras['{self.config.adj_key}']",
                path=self.node_path,
                hint="use system.generic with a batch holding 'adj', or give the node an input port named "
                f"'{self.config.adj_key}' in a GraphTopology")
        adj = adj.to(x.dtype)
        y = self._gcn(x, adj) if self.config.kind == "gcn" else self._gat(x, adj)
        return y if self.bias is None else y + self.bias

    def _gcn(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        # x: (..., N, F_in) → (..., N, F_out), aggregated over normalised neighbours
        return normalized_adjacency(adj) @ F.linear(self.drop(x), self.weight)

    def _gat(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        h = F.linear(x, self.weight).unflatten(-1, (cfg.heads, cfg.out_features))  # (..., N, H, F)
        # a^T [W h_i ‖ W h_j] = a_dst·W h_i + a_src·W h_j  (Veličković et al. 2018, eq. 3)
        s_dst = (h * self.att_dst).sum(-1).transpose(-1, -2)  # (..., H, N)
        s_src = (h * self.att_src).sum(-1).transpose(-1, -2)  # (..., H, N)
        e = F.leaky_relu(s_dst[..., :, None] + s_src[..., None, :], cfg.negative_slope)  # (..., H, N, N)
        mask = with_self_loops(adj).unsqueeze(-3) != 0  # (..., 1, N, N)
        alpha = e.masked_fill(~mask, -math.inf).softmax(-1)
        alpha = self.drop(alpha)
        out = alpha @ h.transpose(-2, -3)  # (..., H, N, F)
        out = out.transpose(-2, -3)  # (..., N, H, F)
        return out.flatten(-2) if cfg.concat else out.mean(-2)


class GraphTopology(TopologyModule):
    """Runs ``nodes[i].op`` (``self.layers[i]``) in dependency order over named ports."""

    def __init__(self, config: Any, children: Sequence[nn.Module]) -> None:
        super().__init__(config, children)
        self.order = config.order()  # validated already; raises ValueError if built unvalidated

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        cfg = self.config
        ports: dict[str, Any] = {cfg.inputs[0]: x}
        for name in cfg.inputs[1:]:
            if name not in ctx.extras:
                raise CarambaError(f"GraphTopology input '{name}' is not in ctx.extras", path=self.node_path,
                                   hint="system.generic passes batch keys listed in extra_keys")
            ports[name] = ctx.extras[name]
        for i in self.order:
            node = cfg.nodes[i]
            ins = [ports[p] for p in node.ports]
            sub = ctx
            if node.merge == "concat":
                h = torch.cat(ins, dim=-1)
            elif node.merge == "sum":
                h = torch.stack(ins).sum(0)
            else:
                h = ins[0]
                if len(ins) > 1:
                    # Same caches, aux-loss list and state; extra ports become named extras.
                    extras = {**ctx.extras, **dict(zip(node.ports[1:], ins[1:], strict=True))}
                    sub = dataclasses.replace(ctx, extras=extras)
            ports[node.out] = self.layers[i](h, sub)
        return ports[cfg.output_port]
