"""caramba-infer: generation with KV caches, verification, benchmarks and publication artifacts.

The public names load on first use (PEP 562), so importing the plugin module
(:mod:`caramba_infer.plugin`) or the config structs (:mod:`caramba_infer.specs`) never
imports torch; ``from caramba_infer import Generator`` does.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "CACHE_KINDS": "caches",
    "CacheKind": "caches",
    "QuantizedKVCache": "caches",
    "QuantizedStorage": "caches",
    "SnapshotState": "caches",
    "analytic_kv_bytes_per_token": "caches",
    "cache_kind": "caches",
    "create_caches": "caches",
    "Generator": "generate",
    "lm_logits": "generate",
    "apply_repetition_penalty": "sampling",
    "sample_next": "sampling",
    "top_k_filter": "sampling",
    "top_p_filter": "sampling",
    "GenerateConfig": "specs",
}

__all__ = sorted(_WHERE)


__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'caramba_infer' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"caramba_infer.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
