"""Which ops each backend runs, on which devices and dtypes (torch- and Triton-free)."""

from __future__ import annotations

import importlib.util
import os

__all__ = ["LIGER_OPS", "OPS", "devices", "liger_installed", "triton_installed"]

#: ``triton`` backend (this package's kernels): op -> compute dtypes its kernel takes.
OPS: dict[str, tuple[str, ...]] = {
    "decode_attention": ("fp16", "bf16"),
    "selective_scan": ("fp32", "fp16", "bf16"),
}

#: ``liger`` backend (liger-kernel's maintained Triton training kernels, when installed).
LIGER_OPS: dict[str, tuple[str, ...]] = {
    "rms_norm": ("fp32", "fp16", "bf16"),
    "swiglu": ("fp32", "fp16", "bf16"),
    "linear_cross_entropy": ("fp32", "fp16", "bf16"),
}


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def liger_installed() -> bool:
    return triton_installed() and importlib.util.find_spec("liger_kernel") is not None


def devices() -> tuple[str, ...]:
    """CUDA; also the CPU when Triton's interpreter is on (``TRITON_INTERPRET=1``, for tests)."""
    if not triton_installed():
        return ()
    return ("cuda", "cpu") if os.environ.get("TRITON_INTERPRET") == "1" else ("cuda",)
