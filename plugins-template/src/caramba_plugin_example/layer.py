"""``ExampleLayer``: the torch half of :class:`~caramba_plugin_example.plugin.ExampleLayerConfig`.

caramba imports this module only when a model using the layer is built.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from caramba import Context
from caramba.nn import NodeModule
from caramba_plugin_example.plugin import ExampleLayerConfig

__all__ = ["ExampleLayer"]


class ExampleLayer(NodeModule):
    """``y = x Aᵀ Bᵀ + b``: ``A`` projects down to ``rank`` features, ``B`` back up to ``d_out``."""

    def __init__(self, config: ExampleLayerConfig) -> None:
        super().__init__(config)  # keeps the validated config as self.config
        self.down = nn.Parameter(torch.empty(config.rank, config.d_in))  # A: (r, d_in)
        self.up = nn.Parameter(torch.empty(config.d_out, config.rank))  # B: (d_out, r)
        self.bias = nn.Parameter(torch.zeros(config.d_out)) if config.bias else None
        # Both factors are random (not LoRA's zero-initialised B): this layer replaces a dense
        # map rather than adapting one, so it must carry signal from the first step.
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.up, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        # x: (..., d_in) -> h: (..., r) -> y: (..., d_out)
        h = x @ self.down.t()
        y = h @ self.up.t()
        return y + self.bias if self.bias is not None else y
