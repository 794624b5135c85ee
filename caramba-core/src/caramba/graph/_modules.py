"""Small torch base classes for node modules (imported only when a model is built)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from caramba.graph._context import Context

__all__ = ["NodeModule", "TopologyModule"]


class NodeModule(nn.Module):
    """Base of a layer module: keeps its config; ``forward(x, ctx)``."""

    node_path: str = ""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, x: Any, ctx: Context | None = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class TopologyModule(NodeModule):
    """Base of a topology module: children in ``self.layers`` so paths follow the manifest."""

    def __init__(self, config: Any, children: Sequence[nn.Module]) -> None:
        super().__init__(config)
        self.layers = nn.ModuleList(children)
