"""A test-only plugin with shape rules like attention's and a residual topology.

Registered next to :mod:`caramba.testing.toy` so the malformed-manifest corpus can check
"heads divide the width", "GQA groups divide heads", "RoPE needs an even head dim" and
"a residual body keeps the shape" without depending on another package. Nothing here
is ever built.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba import NodeConfig, Scope, Shape, TopologyConfig, hookimpl
from caramba.graph import expect_last

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class HeadsConfig(NodeConfig, kw_only=True):
    """Attention-like: ``d_model`` split into ``n_heads``, ``n_kv_heads`` key/value groups."""

    d_model: PositiveInt
    n_heads: PositiveInt
    n_kv_heads: PositiveInt | None = None
    rope: bool = False

    def check(self, scope: Scope) -> None:
        if self.d_model % self.n_heads:
            scope.error("n_heads", f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
            return
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            scope.error("n_kv_heads", f"n_heads {self.n_heads} is not a multiple of n_kv_heads {kv}",
                        "each key/value head serves a whole group of query heads")
        if self.rope and (self.d_model // self.n_heads) % 2:
            scope.error("rope", f"RoPE needs an even head dim, got {self.d_model // self.n_heads}")

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_model, "d_model")
        return x


class ResidualConfig(TopologyConfig, kw_only=True):
    """``x + body(x)``: the body must keep the shape."""

    def infer(self, x: Shape, scope: Scope) -> Shape:
        y = super().infer(x, scope)
        if y is not None and not y.agrees(x):
            scope.error("layers", f"a residual body must keep the shape: {x} became {y}",
                        "end the body with a layer back to the input width")
        return x


@hookimpl
def caramba_register_layers(registry) -> None:
    registry.add("Heads", config=HeadsConfig, factory="caramba.testing.toy_modules:ToyLinear",
                 summary="attention-like shape rules", aliases=("HeadsLayer",))


@hookimpl
def caramba_register_topologies(registry) -> None:
    registry.add("Residual", config=ResidualConfig, factory="caramba.testing.toy_modules:ToySequential",
                 summary="x + body(x)")
