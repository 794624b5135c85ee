"""Configs of the basic layers: ``LinearLayer`` and ``DropoutLayer``. Torch-free."""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba import NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["DropoutLayerConfig", "LinearLayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]


class LinearLayerConfig(NodeConfig, kw_only=True):
    """``y = x Wᵀ + b`` from ``d_in`` to ``d_out`` features (the LM head is one of these)."""

    d_in: Positive
    d_out: Positive
    bias: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_in, "d_in")
        return x.with_last(self.d_out)

    def num_params(self) -> int:
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)


class DropoutLayerConfig(NodeConfig, kw_only=True):
    """Zeroes each element with probability ``p`` while training (scales the rest by ``1/(1-p)``)."""

    p: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0


COMPONENTS = [
    Component("layer", "LinearLayer", LinearLayerConfig, "caramba_layers.modules.basic:LinearLayer",
              "affine map from d_in to d_out features"),
    Component("layer", "DropoutLayer", DropoutLayerConfig, "caramba_layers.modules.basic:DropoutLayer",
              "dropout with probability p while training"),
]
