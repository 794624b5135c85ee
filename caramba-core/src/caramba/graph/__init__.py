"""The graph runtime: node configs, symbolic shapes, the run context and the builder.

Names load on first use, so the base modules below the manifest and the graph (shapes,
configs) import each other without pulling in the builder and the registries above them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caramba.graph._build import Builder
    from caramba.graph._context import AuxLoss, Context, DecodeStep
    from caramba.graph._node import EmbedderConfig, NodeConfig, TopologyConfig
    from caramba.graph._shapes import UNKNOWN, Dim, Shape, ShapeError, expect_last

_EXPORTS: dict[str, str] = {
    "Builder": "caramba.graph._build",
    **dict.fromkeys(("AuxLoss", "Context", "DecodeStep"), "caramba.graph._context"),
    **dict.fromkeys(("EmbedderConfig", "NodeConfig", "TopologyConfig"), "caramba.graph._node"),
    **dict.fromkeys(("UNKNOWN", "Dim", "Shape", "ShapeError", "expect_last"), "caramba.graph._shapes"),
}

__all__ = [
    "UNKNOWN",
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caramba.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
