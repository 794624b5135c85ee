"""The graph runtime: node configs, symbolic shapes, the run context and the builder."""

from caramba.graph.build import Builder
from caramba.graph.context import AuxLoss, Context, DecodeStep
from caramba.graph.node import EmbedderConfig, NodeConfig, TopologyConfig
from caramba.graph.shapes import Dim, Shape, ShapeError, expect_last

__all__ = [
    "AuxLoss",
    "Builder",
    "Context",
    "DecodeStep",
    "Dim",
    "EmbedderConfig",
    "NodeConfig",
    "Shape",
    "ShapeError",
    "TopologyConfig",
    "expect_last",
]
