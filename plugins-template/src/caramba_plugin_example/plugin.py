"""Registration: the module the ``caramba`` entry point names.

caramba imports this module while it loads plugins (``caramba plugins``, ``caramba validate``),
so it holds only torch-free config structs and ``@hookimpl`` functions. Each component names
its implementation as a ``"module:attr"`` string; caramba imports that module the first time
the component is built, so listing and validating stay instant.

A config struct is the component's manifest schema: typed fields with defaults, unknown
fields rejected, ``msgspec.Meta`` constraints checked while the manifest is decoded. A
node's ``infer`` is its shape inference: it runs during ``caramba validate`` without torch
and reports a mismatch with :class:`caramba.ShapeError` naming the offending field.
"""

from __future__ import annotations

# >>> layer
from typing import Annotated

import msgspec

# <<< layer
from caramba import Registrar, hookimpl
# >>> layer topology
from caramba import Scope, Shape, ShapeError
# <<< layer topology
# >>> layer
from caramba import NodeConfig
from caramba import expect_last
# <<< layer
# >>> topology
from caramba import TopologyConfig
# <<< topology

__all__: list[str] = [
    # >>> layer
    "ExampleLayerConfig",
    # <<< layer
    # >>> topology
    "ExampleTopologyConfig",
    # <<< topology
]

# >>> layer
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class ExampleLayerConfig(NodeConfig, kw_only=True):
    """Low-rank linear map ``y = x Aᵀ Bᵀ + b`` with ``A: (rank, d_in)`` and ``B: (d_out, rank)``.

    A rank-``r`` factorisation of a ``d_in × d_out`` weight (LoRA, Hu et al. 2021, uses the
    same factors as an adapter) costs ``r·(d_in + d_out)`` parameters instead of ``d_in·d_out``.
    """

    d_in: PositiveInt
    d_out: PositiveInt
    rank: PositiveInt = 4
    bias: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_in, "d_in")
        widest = min(self.d_in, self.d_out)
        if self.rank > widest:
            raise ShapeError(
                f"rank {self.rank} is larger than min(d_in, d_out) = {widest}, so the map is not low-rank",
                field="rank",
                hint=f"set rank: {widest} or less",
            )
        return x.with_last(self.d_out)

    def num_params(self) -> int:
        return self.rank * (self.d_in + self.d_out) + (self.d_out if self.bias else 0)


# <<< layer
# >>> topology


class ExampleTopologyConfig(TopologyConfig, kw_only=True):
    """Gated residual ``y = x + α · f(x)``, ``f`` = the children in order, ``α`` a learned scalar.

    With ``alpha_init: 0`` every block starts as the identity (ReZero, Bachlechner et al. 2020).
    """

    alpha_init: float = 0.0

    def infer(self, x: Shape, scope: Scope) -> Shape:
        # The children in order, each reporting its own problems; a child that failed leaves an
        # unknown width ("?") behind, which agrees with any width, so its mistake is reported once.
        body = super().infer(x, scope)
        if not body.agrees(x):
            raise ShapeError(
                f"the residual body maps {x} to {body}; it must keep the shape to be added to its input",
                field="layers",
                hint="make the last layer output the input's width",
            )
        return x

    def num_params(self) -> int:
        return super().num_params() + 1  # α


# <<< topology


# >>> layer
@hookimpl
def caramba_register_layers(registry: Registrar) -> None:
    registry.add("ExampleLayer", config=ExampleLayerConfig, factory="caramba_plugin_example.layer:ExampleLayer",
                 summary="low-rank linear map x Aᵀ Bᵀ + b")


# <<< layer
# >>> topology
@hookimpl
def caramba_register_topologies(registry: Registrar) -> None:
    registry.add("ExampleTopology", config=ExampleTopologyConfig,
                 factory="caramba_plugin_example.topology:ExampleTopology",
                 summary="gated residual x + α·f(x) over its children")


# <<< topology
# >>> sink
@hookimpl
def caramba_register_sinks(registry: Registrar) -> None:
    # Sinks are named in a manifest's defaults.logging.sinks and take no config struct.
    registry.add("example_csv", factory="caramba_plugin_example.sink:ExampleCsvSink",
                 summary="metrics as rows of metrics.csv (step, phase, name, value)")
# <<< sink
