"""The caramba-kernels plugin: registers the ``triton`` kernel backend and answers ``select_kernel``.

Torch- and Triton-free: the backend's module loads when a model binds its kernels.
"""

from __future__ import annotations

from typing import Any

from caramba import hookimpl
from caramba_kernels.ops import OPS, triton_installed


@hookimpl
def caramba_register_kernel_backends(registry: Any) -> None:
    registry.add("triton", factory="caramba_kernels.backend:TritonBackend",
                 summary="Triton kernels on CUDA: split-K decode attention over fp16/bf16/q8_0/q4_0 caches "
                         "(GQA, DBA) and Mamba's fused selective scan")


@hookimpl
def caramba_select_kernel(op: str, device: str, dtype: str) -> str | None:
    # Chosen on CUDA only; the interpreter (CPU) runs when a manifest pins `triton`.
    if device == "cuda" and dtype in OPS.get(op, ()) and triton_installed():
        return "triton"
    return None
