"""``LayerNormLayer`` and ``RMSNormLayer``.

Both normalise in float32 at least (float64 stays float64) and cast back, as Llama and
Hugging Face do, so half-precision activations do not lose the statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["LayerNormLayer", "RMSNormLayer"]


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class LayerNormLayer(NodeModule):
    """``(x - mean) / sqrt(var + eps) · weight + bias`` over the last dim."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.eps = config.eps
        self.weight = nn.Parameter(torch.ones(config.d_model))
        self.bias = nn.Parameter(torch.zeros(config.d_model))

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        work = _work_dtype(x)
        y = F.layer_norm(x.to(work), (x.shape[-1],), self.weight.to(work), self.bias.to(work), self.eps)
        return y.to(x.dtype)


class RMSNormLayer(NodeModule):
    """``x / sqrt(mean(x²) + eps) · weight`` over the last dim (``weight`` only if elementwise_affine)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.eps = config.eps
        self.weight = nn.Parameter(torch.ones(config.d_model)) if config.elementwise_affine else None
        self._kernel: Callable[..., torch.Tensor] | None = None

    def kernel_ops(self) -> tuple[str, ...]:
        return ("rms_norm",)

    def use_kernel(self, op: str, fn: Callable[..., torch.Tensor] | None) -> None:
        """``rms_norm(x, weight | None, eps) -> y``, bound by ``select_kernels``."""
        self._kernel = fn

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        if self._kernel is not None:
            return self._kernel(x, self.weight, self.eps)
        h = x.to(_work_dtype(x))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        h = h.to(x.dtype)
        return h * self.weight if self.weight is not None else h
