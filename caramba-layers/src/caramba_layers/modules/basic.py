"""``LinearLayer`` and ``DropoutLayer``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["DropoutLayer", "LinearLayer"]


class LinearLayer(NodeModule):
    """``y = x Wᵀ + b``; the weight is ``self.linear.weight`` of shape ``(d_out, d_in)``."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.linear = nn.Linear(config.d_in, config.d_out, bias=config.bias)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.linear(x)


class DropoutLayer(NodeModule):
    """Dropout with probability ``p`` in training mode; the identity in eval mode."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.p = config.p

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return F.dropout(x, self.p, self.training)
