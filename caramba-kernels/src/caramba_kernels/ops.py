"""Which ops the Triton backend runs, on which devices and dtypes (torch- and Triton-free)."""

from __future__ import annotations

import importlib.util
import os

__all__ = ["OPS", "devices", "triton_installed"]

#: op -> compute dtypes its kernel takes; the op's signature is documented by its function.
OPS: dict[str, tuple[str, ...]] = {
    "decode_attention": ("fp16", "bf16"),
    "selective_scan": ("fp32", "fp16", "bf16"),
}


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def devices() -> tuple[str, ...]:
    """CUDA; also the CPU when Triton's interpreter is on (``TRITON_INTERPRET=1``, for tests)."""
    if not triton_installed():
        return ()
    return ("cuda", "cpu") if os.environ.get("TRITON_INTERPRET") == "1" else ("cuda",)
