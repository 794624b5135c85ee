"""Torch halves of ``system.generic``, ``system.mlp_classifier`` and ``system.gcn``."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn

from caramba import CarambaError, Context
from caramba_layers.modules.dense import DenseLayer
from caramba_layers.modules.graph import GraphConvLayer
from caramba_layers.specs.dense import DenseLayerConfig
from caramba_layers.specs.graph import GraphConvLayerConfig

__all__ = ["GCNSystem", "GenericSystem", "MLPClassifier"]


def _input(batch: dict[str, torch.Tensor], key: str, system: str) -> torch.Tensor:
    if key not in batch:
        raise CarambaError(f"{system} reads batch['{key}'], but the batch has {sorted(batch)}",
                           hint="set the system's input_key, or use a dataset that yields that key")
    return batch[key]


class GenericSystem(nn.Module):
    def __init__(self, config: Any, builder: Any) -> None:
        super().__init__()
        self.config = config
        self.model = builder.build(config.model, "model")
        self.lora_modules: list[str] = []
        if config.lora is not None:
            from caramba_layers.modules.lora import apply_lora_config

            self.lora_modules = apply_lora_config(self, config.lora)

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or Context()
        for key in self.config.extra_keys:
            if key in batch:
                ctx.extras[key] = batch[key]
        x = _input(batch, self.config.input_key, "system.generic")
        return {self.config.output_key: self.model(x, ctx)}


class MLPClassifier(nn.Module):
    def __init__(self, config: Any, builder: Any = None) -> None:
        super().__init__()
        self.config = config
        widths = [config.d_in] + [config.d_hidden] * config.n_layers
        self.layers = nn.ModuleList()
        for i, (a, b) in enumerate(pairwise(widths)):
            layer = DenseLayer(DenseLayerConfig(type="DenseLayer", d_in=a, d_out=b, activation=config.activation,
                                                dropout=config.dropout))
            layer.node_path = f"layers.{i}"
            self.layers.append(layer)
        self.head = nn.Linear(widths[-1], config.n_classes)

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or Context()
        x = _input(batch, self.config.input_key, "system.mlp_classifier")
        for layer in self.layers:
            x = layer(x, ctx)
        return {self.config.output_key: self.head(x)}


class GCNSystem(nn.Module):
    def __init__(self, config: Any, builder: Any = None) -> None:
        super().__init__()
        self.config = config
        dims = [(config.d_in, config.d_hidden), (config.d_hidden, config.n_classes)]
        self.layers = nn.ModuleList()
        for i, (a, b) in enumerate(dims):
            layer = GraphConvLayer(GraphConvLayerConfig(type="GraphConvLayer", kind="gcn", in_features=a,
                                                        out_features=b, dropout=config.dropout,
                                                        adj_key=config.adj_key))
            layer.node_path = f"layers.{i}"
            self.layers.append(layer)

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or Context()
        x = _input(batch, self.config.input_key, "system.gcn")
        ctx.extras[self.config.adj_key] = _input(batch, self.config.adj_key, "system.gcn")
        h = torch.relu(self.layers[0](x, ctx))
        return {self.config.output_key: self.layers[1](h, ctx)}
