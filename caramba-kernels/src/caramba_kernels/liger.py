"""The ``liger`` kernel backend: liger-kernel's maintained Triton training kernels, adapted to caramba's ops.

caramba does not rewrite what a maintained library already provides (liger-kernel, BSD-2,
Triton only, a plain wheel). Each function takes the op's arguments as caramba's layers hold
them; liger-kernel is imported on first call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from caramba import KernelBackend
from caramba_kernels.ops import LIGER_OPS, liger_installed

__all__ = ["LigerBackend", "linear_cross_entropy", "rms_norm", "swiglu"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``x / sqrt(mean(x²) + eps)`` in fp32, cast back, times ``weight`` (Llama's casting, as the layer)."""
    from liger_kernel.ops.rms_norm import LigerRMSNormFunction

    w = weight if weight is not None else torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
    out: torch.Tensor = LigerRMSNormFunction.apply(x, w, eps, 0.0, "llama", False)
    return out


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) · up`` without keeping ``silu(gate)`` for backward."""
    from liger_kernel.ops.swiglu import LigerSiLUMulFunction

    out: torch.Tensor = LigerSiLUMulFunction.apply(gate, up)
    return out


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                         ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T`` against ``target``, in chunks: the full
    ``(tokens, vocab)`` logits never exist at once."""
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    out = LigerFusedLinearCrossEntropyFunction.apply(hidden.reshape(-1, hidden.shape[-1]), weight,
                                                     target.reshape(-1), None, None, ignore_index)
    loss: torch.Tensor = out[0] if isinstance(out, tuple) else out
    return loss


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "rms_norm": rms_norm, "swiglu": swiglu, "linear_cross_entropy": linear_cross_entropy,
}


class LigerBackend(KernelBackend):
    name = "liger"

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def supports(self, op: str, device: str, dtype: str) -> bool:
        # CUDA only: liger-kernel's norms do not run in Triton's CPU interpreter.
        return device == "cuda" and dtype in LIGER_OPS.get(op, ()) and liger_installed()

    def get(self, op: str) -> Callable[..., Any]:
        return _FUNCTIONS[op]
