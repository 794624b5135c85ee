"""LoRA configs (torch-free): the ``LoRALinearLayer`` node and the ``lora:`` block of a system."""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba import Config, NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "LoRAConfig", "LoRALinearLayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]


class LoRALinearLayerConfig(NodeConfig, kw_only=True):
    """``y = x W^T + b + (dropout(x) A^T B^T) · alpha / r`` with ``W, b`` frozen (Hu et al. 2021)."""

    d_in: Positive
    d_out: Positive
    r: Positive = 8
    alpha: Annotated[float, msgspec.Meta(gt=0.0)] = 16.0
    dropout: Probability = 0.0
    bias: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_in, "d_in")
        return x.with_last(self.d_out)

    def num_params(self) -> int:
        """Trainable parameters only: the frozen base ``W, b`` are not counted."""
        return self.r * (self.d_in + self.d_out)


class LoRAConfig(Config, kw_only=True):
    """The ``lora:`` block: adapt every ``nn.Linear`` whose module path matches a target.

    A target matches a module path exactly, as its last components (``q_proj`` matches
    ``topology.layers.0.attn.q_proj``) or as an ``fnmatch`` pattern (``*.layers.1*.v_proj``).
    Everything but the adapters (and ``train_also`` patterns) is frozen.
    """

    targets: Annotated[list[str], msgspec.Meta(min_length=1)]
    r: Positive = 8
    alpha: Annotated[float, msgspec.Meta(gt=0.0)] = 16.0
    dropout: Probability = 0.0
    train_also: list[str] = []


COMPONENTS = [
    Component("layer", "LoRALinearLayer", LoRALinearLayerConfig, "caramba_layers.modules.lora:LoRALinearLayer",
              "frozen linear map plus a trainable low-rank adapter"),
]
