"""Topology modules: children in ``self.layers``, composed as the topology's config says.

See :mod:`caramba_layers.specs.topologies` for the exact semantics of each.
"""

from __future__ import annotations

from typing import Any

import torch

from caramba import CarambaError, Context
from caramba.nn import TopologyModule

__all__ = [
    "BranchingTopology",
    "CyclicTopology",
    "ParallelTopology",
    "RecurrentTopology",
    "ResidualTopology",
    "StackedTopology",
]


class StackedTopology(TopologyModule):
    """Children in order (``StackedTopology``, ``SequentialTopology``, ``NestedTopology``)."""

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, ctx)
        return x


class ResidualTopology(StackedTopology):
    """``x + f(x)``, ``f`` the whole child chain."""

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return x + super().forward(x, ctx)


class ParallelTopology(TopologyModule):
    """``stack([f_1(x), ..., f_n(x)], dim=-1)``: a new last dim of size n."""

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return torch.stack([layer(x, ctx) for layer in self.layers], dim=-1)


class BranchingTopology(TopologyModule):
    """``cat([f_1(x), ..., f_n(x)], dim=-1)``: feature widths add."""

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return torch.cat([layer(x, ctx) for layer in self.layers], dim=-1)


class CyclicTopology(StackedTopology):
    """The child chain applied ``iterations`` times; every pass uses the same modules (shared weights)."""

    def __init__(self, config: Any, children: Any) -> None:
        super().__init__(config, children)
        self.iterations = config.iterations

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        for _ in range(self.iterations):
            x = super().forward(x, ctx)
        return x


class RecurrentTopology(StackedTopology):
    """``y = f(x + s)`` with ``s`` the last position of the previous call's ``y`` (zero at first).

    The state is ``ctx.state[node_path]``: ``y[:, -1:]`` (shape ``(B, 1, ..., D)``) for inputs
    with a position dim, ``y`` itself for ``(B, D)`` inputs; stored detached. Without a
    context there is nowhere to keep it, and every call starts from zero.
    """

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        state = ctx.state.get(self.node_path) if ctx is not None else None
        if state is not None:
            expected = (x.shape[0], *([1] if x.dim() > 2 else []), *x.shape[2:])
            if tuple(state.shape) != expected:
                raise CarambaError(f"the recurrent state of {self.node_path} is {tuple(state.shape)} but the "
                                   f"input {tuple(x.shape)} needs {expected}", path=self.node_path,
                                   hint="clear ctx.state when the batch or the input shape changes")
            x = x + state
        y = super().forward(x, ctx)
        if ctx is not None:
            ctx.state[self.node_path] = (y[:, -1:] if y.dim() > 2 else y).detach()
        return y
