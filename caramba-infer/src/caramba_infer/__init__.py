"""caramba-infer: generation with KV caches, verification, benchmarks and publication artifacts.

Importing this package imports torch; the plugin module (:mod:`caramba_infer.plugin`) and
the config structs (:mod:`caramba_infer.specs`) do not.
"""

from caramba_infer.caches import (
    CACHE_KINDS,
    CacheKind,
    QuantizedKVCache,
    SnapshotState,
    analytic_kv_bytes_per_token,
    cache_kind,
    create_caches,
)
from caramba_infer.generate import Generator, lm_logits
from caramba_infer.sampling import apply_repetition_penalty, sample_next, top_k_filter, top_p_filter
from caramba_infer.specs import GenerateConfig

__all__ = [
    "CACHE_KINDS",
    "CacheKind",
    "GenerateConfig",
    "Generator",
    "QuantizedKVCache",
    "SnapshotState",
    "analytic_kv_bytes_per_token",
    "apply_repetition_penalty",
    "cache_kind",
    "create_caches",
    "lm_logits",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
]
