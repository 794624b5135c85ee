"""``GLULayer`` (registered as ``SwiGLULayer`` and ``GLULayer``): ``w_down(act(w_gate x) ⊙ w_up x)``.

GLU variants, arXiv:2002.05202. ``w_gate``, ``w_up`` and ``w_down`` are Llama's
``gate_proj``, ``up_proj`` and ``down_proj``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["GLULayer"]

ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu, "sigmoid": torch.sigmoid,
               "gelu_tanh": partial(F.gelu, approximate="tanh")}


class GLULayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        d, f, b = config.d_model, config.d_ff, config.bias
        self.activation = getattr(config, "activation", "silu")
        self.act = ACTIVATIONS[self.activation]
        self.w_gate = nn.Linear(d, f, bias=b)
        self.w_up = nn.Linear(d, f, bias=b)
        self.w_down = nn.Linear(f, d, bias=b)
        self._kernel: Callable[..., torch.Tensor] | None = None

    def kernel_ops(self) -> tuple[str, ...]:
        return ("swiglu",) if self.activation == "silu" else ()

    def use_kernel(self, op: str, fn: Callable[..., torch.Tensor] | None) -> None:
        """``swiglu(gate, up) -> silu(gate) · up``, bound by ``select_kernels``."""
        self._kernel = fn

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        if self._kernel is not None:
            return self.w_down(self._kernel(self.w_gate(x), self.w_up(x)))
        return self.w_down(self.act(self.w_gate(x)) * self.w_up(x))
