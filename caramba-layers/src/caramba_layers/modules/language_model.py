"""``system.language_model``: ``{"input_ids"}`` → ``{"logits", "hidden"}``.

Module paths: ``embedder``, ``topology`` (then ``topology.layers.3.layers.1``, ...) and,
when the topology does not end in its own head, ``lm_head``. With ``lora:`` the matching
linears become ``LoRALinear`` right after building and everything else is frozen; base
state-dict keys are unchanged, so a base checkpoint still loads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caramba import Context
from caramba_layers.specs.language_model import head_index

__all__ = ["LanguageModel"]


class LanguageModel(nn.Module):
    def __init__(self, config: Any, builder: Any) -> None:
        super().__init__()
        self.config = config
        m = config.model
        self.embedder = builder.build(m.embedder, "embedder")
        self.topology = builder.build(m.topology, "topology")
        self.head_index = head_index(m)
        if self.head_index is None:
            self.lm_head = nn.Linear(m.d_model, m.vocab_size, bias=False)
            if builder.device is not None or builder.dtype is not None:
                self.lm_head.to(device=builder.device, dtype=builder.dtype)
        if m.tied_embeddings:
            self.head.weight = self.embedder.embedding.weight
        self.lora_modules: list[str] = []
        if config.lora is not None:
            from caramba_layers.modules.lora import apply_lora_config

            self.lora_modules = apply_lora_config(self, config.lora)

    @property
    def head(self) -> nn.Linear:
        """The ``nn.Linear`` that maps hidden states to logits."""
        if self.head_index is None:
            return self.lm_head
        return self.topology.layers[self.head_index].linear

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx if ctx is not None else Context()
        x = self.embedder(batch["input_ids"], ctx)  # (B, T, D)
        last_only = ctx.decode is not None and ctx.decode.last_only
        if self.head_index is None:
            hidden = self.topology(x, ctx)
            if last_only:
                hidden = hidden[:, -1:]  # a prefill needs the next token's logits only
            return {"logits": self.lm_head(hidden), "hidden": hidden}
        # The topology is sequential: run it up to its head so the head's input is returned too.
        layers = self.topology.layers
        for layer in layers[: self.head_index]:
            x = layer(x, ctx)
        if last_only:
            x = x[:, -1:]
        return {"logits": layers[self.head_index](x, ctx), "hidden": x}
