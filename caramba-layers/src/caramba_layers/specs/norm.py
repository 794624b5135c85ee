"""Configs of the normalisation layers: ``LayerNormLayer`` and ``RMSNormLayer``. Torch-free."""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba import NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["LayerNormLayerConfig", "RMSNormLayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
Eps = Annotated[float, msgspec.Meta(gt=0.0)]


class LayerNormLayerConfig(NodeConfig, kw_only=True):
    """``(x - mean) / sqrt(var + eps) · weight + bias`` over the last dim (arXiv:1607.06450)."""

    d_model: Positive
    eps: Eps = 1e-5

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def num_params(self) -> int:
        return 2 * self.d_model


class RMSNormLayerConfig(NodeConfig, kw_only=True):
    """``x / sqrt(mean(x²) + eps) · weight`` over the last dim (arXiv:1910.07467)."""

    d_model: Positive
    eps: Eps = 1e-5
    elementwise_affine: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def num_params(self) -> int:
        return self.d_model if self.elementwise_affine else 0


COMPONENTS = [
    Component("layer", "LayerNormLayer", LayerNormLayerConfig, "caramba_layers.modules.norm:LayerNormLayer",
              "layer normalisation over the feature dim"),
    Component("layer", "RMSNormLayer", RMSNormLayerConfig, "caramba_layers.modules.norm:RMSNormLayer",
              "root-mean-square normalisation over the feature dim"),
]
