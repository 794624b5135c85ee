"""caramba-layers: every layer, topology, embedder and model system, as a caramba plugin.

Manifests reach its components by registered name. Other plugins that work on its models
(caramba-trainers' upcycling, weight loading) use the names below and nothing else from this
package; each loads on first use, so ``import caramba_layers`` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from caramba_layers.checkpoints import load_tokenizer, open_checkpoint
    from caramba_layers.hf import LlamaLayout, check_dtype, llama_layout
    from caramba_layers.modules.attention import AttentionLayer
    from caramba_layers.modules.lora import save_adapters
    from caramba_layers.modules.rope import inv_frequencies

_EXPORTS: dict[str, str] = {
    "AttentionLayer": "caramba_layers.modules.attention",
    "LlamaLayout": "caramba_layers.hf",
    "check_dtype": "caramba_layers.hf",
    "inv_frequencies": "caramba_layers.modules.rope",
    "llama_layout": "caramba_layers.hf",
    "load_tokenizer": "caramba_layers.checkpoints",
    "open_checkpoint": "caramba_layers.checkpoints",
    "save_adapters": "caramba_layers.modules.lora",
}

__all__ = [
    "AttentionLayer",
    "LlamaLayout",
    "check_dtype",
    "inv_frequencies",
    "llama_layout",
    "load_tokenizer",
    "open_checkpoint",
    "save_adapters",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caramba_layers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
