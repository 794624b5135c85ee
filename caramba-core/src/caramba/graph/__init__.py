"""The graph runtime: node configs, symbolic shapes, the run context and the builder."""

from caramba.graph._build import Builder
from caramba.graph._context import AuxLoss, Context
from caramba.graph._node import EmbedderConfig, NodeConfig, TopologyConfig
from caramba.graph._shapes import Dim, Shape, ShapeError, expect_last

__all__ = [
    "AuxLoss",
    "Builder",
    "Context",
    "Dim",
    "EmbedderConfig",
    "NodeConfig",
    "Shape",
    "ShapeError",
    "TopologyConfig",
    "expect_last",
]
