"""The ``triton`` kernel backend: the functions of :data:`~caramba_kernels.ops.OPS`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from caramba import KernelBackend
from caramba_kernels.ops import OPS, devices

__all__ = ["TritonBackend"]

_FUNCTIONS = {
    "decode_attention": "caramba_kernels.decode:decode_attention",
    "selective_scan": "caramba_kernels.scan:selective_scan",
}


class TritonBackend(KernelBackend):
    name = "triton"

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def supports(self, op: str, device: str, dtype: str) -> bool:
        return dtype in OPS.get(op, ()) and device in devices()

    def get(self, op: str) -> Callable[..., Any]:
        module, _, attr = _FUNCTIONS[op].partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return fn
