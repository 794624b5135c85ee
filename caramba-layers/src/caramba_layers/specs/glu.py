"""Configs of the gated feed-forward layers: ``SwiGLULayer`` and ``GLULayer``. Torch-free.

Both compute ``w_down(act(w_gate x) ⊙ w_up x)`` (arXiv:2002.05202). Gate and up are two
linears named like Llama's ``gate_proj``/``up_proj`` so checkpoints map one to one.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["ACTIVATION_ALIASES", "GLULayerConfig", "SwiGLULayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]

#: The GLU-variant names of the paper, accepted as names of their gate activation.
ACTIVATION_ALIASES = {"swiglu": "silu", "geglu": "gelu", "reglu": "relu", "glu": "sigmoid"}


class SwiGLULayerConfig(NodeConfig, kw_only=True):
    """SwiGLU feed-forward: ``w_down(silu(w_gate x) ⊙ w_up x)``, ``d_model → d_ff → d_model``."""

    d_model: Positive
    d_ff: Positive
    bias: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def num_params(self) -> int:
        d, f = self.d_model, self.d_ff
        return 3 * d * f + (2 * f + d if self.bias else 0)


class GLULayerConfig(NodeConfig, kw_only=True):
    """GLU feed-forward with a chosen gate activation.

    ``activation``: silu, gelu (exact, erf), gelu_tanh (its tanh approximation), relu, sigmoid,
    or the variant names swiglu, geglu, reglu, glu (read as silu, gelu, relu, sigmoid).
    """

    d_model: Positive
    d_ff: Positive
    bias: bool = True
    activation: Literal["silu", "gelu", "gelu_tanh", "relu", "sigmoid", "swiglu", "geglu", "reglu", "glu"] = "silu"

    def __post_init__(self) -> None:
        self.activation = ACTIVATION_ALIASES.get(self.activation, self.activation)

    infer = SwiGLULayerConfig.infer
    num_params = SwiGLULayerConfig.num_params


COMPONENTS = [
    Component("layer", "SwiGLULayer", SwiGLULayerConfig, "caramba_layers.modules.glu:GLULayer",
              "SwiGLU feed-forward block (gate, up, down)"),
    Component("layer", "GLULayer", GLULayerConfig, "caramba_layers.modules.glu:GLULayer",
              "gated feed-forward block with a silu/gelu/gelu_tanh/relu/sigmoid gate"),
]
