"""``system.image_classifier``: ``{"inputs": (B, C, H, W)}`` → ``{"logits": (B, n_classes)}``.

Module paths: ``embedder``, ``topology`` (then ``topology.layers.0...``), ``norm``, ``head``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caramba import CarambaError, Context

__all__ = ["ImageClassifier"]


class ImageClassifier(nn.Module):
    def __init__(self, config: Any, builder: Any) -> None:
        super().__init__()
        self.config = config
        m = config.model
        d = m.embedder.d_model
        self.embedder = builder.build(m.embedder, "embedder")
        self.topology = builder.build(m.topology, "topology")
        self.norm = nn.LayerNorm(d) if config.head_norm else nn.Identity()
        self.head = nn.Linear(d, config.n_classes)
        if builder.device is not None or builder.dtype is not None:
            self.norm.to(device=builder.device, dtype=builder.dtype)
            self.head.to(device=builder.device, dtype=builder.dtype)

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx if ctx is not None else Context()
        key = self.config.input_key
        if key not in batch:
            raise CarambaError(f"system.image_classifier needs batch '{key}', got {sorted(batch)}",
                               path="system.config.input_key", hint="use dataset.digits with as: images")
        tokens = self.embedder(batch[key], ctx)  # (B, N, D)
        h = self.topology(tokens, ctx)  # (B, N, D)
        pooled = self.embedder.pool(h)  # (B, D): the class token or the mean over patches
        return {self.config.output_key: self.head(self.norm(pooled))}
