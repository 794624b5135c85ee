"""caramba-kernels: fused Triton kernels for caramba, registered as the ``triton`` kernel backend.

Importing the package (or its plugin module) imports neither torch nor Triton; the kernels
load on first use: ``from caramba_kernels import decode_attention``.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "TritonBackend": "backend",
    "decode_attention": "decode",
    "selective_scan": "scan",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'caramba_kernels' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"caramba_kernels.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
