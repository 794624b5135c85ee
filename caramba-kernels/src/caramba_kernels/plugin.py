"""The caramba-kernels plugin: registers the ``triton`` and ``liger`` kernel backends and answers
``select_kernel``.

Torch- and Triton-free: a backend's module loads when a model binds its kernels.
"""

from __future__ import annotations

import os
from typing import Any

from caramba import hookimpl
from caramba_kernels.ops import LIGER_OPS, OPS, liger_installed, triton_installed


@hookimpl
def caramba_register_kernel_backends(registry: Any) -> None:
    registry.add("triton", factory="caramba_kernels.backend:TritonBackend",
                 summary="Triton kernels on CUDA: split-K decode attention over fp16/bf16/q8_0/q4_0 caches "
                         "(GQA, DBA) and Mamba's fused selective scan")
    registry.add("liger", factory="caramba_kernels.liger:LigerBackend",
                 summary="liger-kernel's Triton training kernels on CUDA (when installed): RMSNorm, SwiGLU, "
                         "fused linear + cross-entropy")


@hookimpl
def caramba_select_kernel(op: str, device: str, dtype: str) -> str | None:
    # Chosen on CUDA only, and only with CARAMBA_KERNELS=auto until the GPU parity suite
    # (tests/caramba-kernels on a CUDA device) has passed on a release; a manifest's
    # `defaults.kernels` pin runs them anywhere (the interpreter on a CPU).
    if device != "cuda" or os.environ.get("CARAMBA_KERNELS") != "auto":
        return None
    if dtype in OPS.get(op, ()) and triton_installed():
        return "triton"
    if dtype in LIGER_OPS.get(op, ()) and liger_installed():
        return "liger"
    return None
