"""Topology configs: how child nodes compose. Torch-free.

===================== ==================================================================
``StackedTopology``    children in order (also ``SequentialTopology``, ``NestedTopology``)
``ResidualTopology``   ``x + f(x)``, ``f`` = the whole child chain; must keep the shape
``ParallelTopology``   every child on the same input, outputs stacked on a new last dim
``BranchingTopology``  every child on the same input, outputs concatenated on the last dim
``CyclicTopology``     the child chain applied ``iterations`` times with shared weights
``RecurrentTopology``  ``y = f(x + s)``, ``s`` = the last position of the previous call's ``y``
===================== ==================================================================
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba import Scope, Shape, ShapeError, TopologyConfig
from caramba_layers.specs import Component

__all__ = [
    "BranchingTopologyConfig",
    "CyclicTopologyConfig",
    "NestedTopologyConfig",
    "ParallelTopologyConfig",
    "RecurrentTopologyConfig",
    "ResidualTopologyConfig",
    "SequentialTopologyConfig",
    "StackedTopologyConfig",
]

_M = "caramba_layers.modules.topologies"


def _same(a: Shape, b: Shape) -> bool:
    """Shapes agree where both dims are known (a symbol matches only itself or an int)."""
    if len(a) != len(b):
        return False
    return all(x == y or not (isinstance(x, int) and isinstance(y, int)) for x, y in zip(a, b, strict=True))


def _chain(config: TopologyConfig, x: Shape, scope: Scope) -> Shape | None:
    for i, child in enumerate(config.layers):
        x = scope.infer(child, x, "layers", i)
        if x is None:
            return None
    return x


def _shape_preserving(config: TopologyConfig, x: Shape, scope: Scope, what: str) -> Shape:
    y = _chain(config, x, scope)
    if y is not None and not _same(x, y):
        raise ShapeError(f"{what} must keep the input shape {x}, but its layers output {y}",
                         field="layers", hint="make the last layer output the input width")
    return x


def _branches(config: TopologyConfig, x: Shape, scope: Scope) -> list[Shape] | None:
    if not config.layers:
        raise ShapeError("needs at least one branch in layers", field="layers")
    outs = [scope.infer(child, x, "layers", i) for i, child in enumerate(config.layers)]
    return None if any(o is None for o in outs) else outs


class StackedTopologyConfig(TopologyConfig, kw_only=True):
    """Children applied in order, each to the previous output."""


class SequentialTopologyConfig(StackedTopologyConfig, kw_only=True):
    """Children applied in order (the same as ``StackedTopology``)."""


class NestedTopologyConfig(StackedTopologyConfig, kw_only=True):
    """Children applied in order; the idiom for a block repeated ``repeat: N`` times."""


class ResidualTopologyConfig(TopologyConfig, kw_only=True):
    """``x + f(x)`` with ``f`` the whole child chain (a pre-norm block is ``[Norm, Attention]``)."""

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return _shape_preserving(self, x, scope, "a residual body")


class ParallelTopologyConfig(TopologyConfig, kw_only=True):
    """Each child on the same input; outputs (all the same shape) stacked on a new last dim."""

    def infer(self, x: Shape, scope: Scope) -> Shape:
        outs = _branches(self, x, scope)
        if outs is None:
            return None  # type: ignore[return-value]
        for i, y in enumerate(outs[1:], start=1):
            if not _same(outs[0], y):
                raise ShapeError(f"parallel branches must output the same shape: layers[0] gives {outs[0]}, "
                                 f"layers[{i}] gives {y}", field="layers",
                                 hint="use BranchingTopology to concatenate different widths")
        return Shape(*outs[0], len(self.children()))


class BranchingTopologyConfig(TopologyConfig, kw_only=True):
    """Each child on the same input; outputs concatenated on the last (feature) dim, widths add."""

    def infer(self, x: Shape, scope: Scope) -> Shape:
        outs = _branches(self, x, scope)
        if outs is None:
            return None  # type: ignore[return-value]
        for i, y in enumerate(outs[1:], start=1):
            if not _same(outs[0][:-1], y[:-1]):
                raise ShapeError(f"branch outputs must agree on every dim but the last: layers[0] gives "
                                 f"{outs[0]}, layers[{i}] gives {y}", field="layers")
        widths = [y.last for y in outs] * self.repeat
        width = sum(widths) if all(isinstance(w, int) for w in widths) else "+".join(map(str, widths))
        return outs[0].with_last(width)


class CyclicTopologyConfig(TopologyConfig, kw_only=True):
    """The child chain applied ``iterations`` times with the same weights (iterative refinement)."""

    iterations: Annotated[int, msgspec.Meta(gt=0)] = 1

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return _shape_preserving(self, x, scope, "a cyclic body")


class RecurrentTopologyConfig(TopologyConfig, kw_only=True):
    """State carried across calls: ``y = f(x + s)``; ``s`` is the previous call's last position.

    The state lives in ``ctx.state[node_path]``: the last position (along dim 1) of the
    previous call's output, ``y[:, -1:]``, or the whole output for ``(B, D)`` inputs. It is
    added to every position of the next call's input. It starts at zero (no state),
    is stored detached (gradients do not cross calls) and is cleared by removing the entry
    or starting a new :class:`~caramba.Context`. The body must keep the shape.
    """

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return _shape_preserving(self, x, scope, "a recurrent body")


COMPONENTS = [
    Component("topology", "StackedTopology", StackedTopologyConfig, f"{_M}:StackedTopology",
              "children in order"),
    Component("topology", "SequentialTopology", SequentialTopologyConfig, f"{_M}:StackedTopology",
              "children in order (same as StackedTopology)"),
    Component("topology", "NestedTopology", NestedTopologyConfig, f"{_M}:StackedTopology",
              "children in order; a block to repeat"),
    Component("topology", "ResidualTopology", ResidualTopologyConfig, f"{_M}:ResidualTopology",
              "x + f(x) around the whole child chain"),
    Component("topology", "ParallelTopology", ParallelTopologyConfig, f"{_M}:ParallelTopology",
              "branches on one input, stacked on a new last dim"),
    Component("topology", "BranchingTopology", BranchingTopologyConfig, f"{_M}:BranchingTopology",
              "branches on one input, concatenated on the feature dim"),
    Component("topology", "CyclicTopology", CyclicTopologyConfig, f"{_M}:CyclicTopology",
              "the child chain applied `iterations` times with shared weights"),
    Component("topology", "RecurrentTopology", RecurrentTopologyConfig, f"{_M}:RecurrentTopology",
              "carries the last output position into the next call"),
]
