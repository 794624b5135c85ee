"""The ``gguf`` checkpoint format (llama.cpp files, dequantised on load). Torch-free."""

from __future__ import annotations

from caramba import Config
from caramba_layers.specs import Component

__all__ = ["GGUFCheckpointConfig"]


class GGUFCheckpointConfig(Config, kw_only=True):
    """Read a Llama-family GGUF file (any llama.cpp quantisation) as float32 weights plus its tokenizer."""

    path: str = ""


COMPONENTS = [
    Component("checkpoint_format", "gguf", GGUFCheckpointConfig, "caramba_layers.gguf:GGUFFormat",
              "llama.cpp GGUF files (Llama family), dequantised to float32, with their tokenizer"),
]
