"""``ExampleTopology``: the torch half of :class:`~caramba_plugin_example.plugin.ExampleTopologyConfig`.

A topology receives its children already built (``self.layers``, an ``nn.ModuleList``), so
module paths follow the manifest: the second child is ``<path>.layers.1``.
"""

from __future__ import annotations

import torch
from torch import nn

from caramba import Context
from caramba.nn import TopologyModule
from caramba_plugin_example.plugin import ExampleTopologyConfig

__all__ = ["ExampleTopology"]


class ExampleTopology(TopologyModule):
    """``y = x + α · f(x)``, ``f`` the children in order (ReZero, Bachlechner et al. 2020)."""

    def __init__(self, config: ExampleTopologyConfig, children: list[nn.Module]) -> None:
        super().__init__(config, children)
        self.alpha = nn.Parameter(torch.tensor(float(config.alpha_init)))

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx if ctx is not None else Context()
        h = x
        for layer in self.layers:
            h = layer(h, ctx)  # the same context reaches every child: caches, aux losses
        return x + self.alpha * h
