"""Embedders: ``token`` (ids → vectors) and ``patch`` (images → ViT patch tokens)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["PatchEmbedder", "TokenEmbedder"]


class TokenEmbedder(NodeModule):
    """``(B, T)`` token ids → ``(B, T, d_model)``; the table is ``self.embedding.weight`` ``(V, D)``."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        # GPT-2's N(0, 0.02): with a tied LM head, torch's default N(0, 1) would start at huge logits.
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.embedding(x)


class PatchEmbedder(NodeModule):
    """``(B, C, H, W)`` → ``(B, N, D)`` patch tokens plus learned positions (and a class token).

    :meth:`pool` turns the final ``(B, N, D)`` tokens into what ``pool`` names: the class
    token, the mean over patches, or the tokens unchanged.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        self.pool_mode = c.pool
        self.proj = nn.Conv2d(c.in_channels, c.d_model, kernel_size=c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model)) if c.pool == "cls" else None
        self.pos_embedding = nn.Parameter(torch.randn(1, c.num_tokens, c.d_model) * 0.02)
        self.dropout_p = c.dropout_p

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.cls_token is not None:
            tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        return F.dropout(tokens + self.pos_embedding, self.dropout_p, self.training)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """One vector per image: ``(B, N, D) → (B, D)`` (``cls``/``mean``), or ``h`` itself (``none``)."""
        if self.pool_mode == "cls":
            return h[:, 0]
        if self.pool_mode == "mean":
            return h.mean(dim=1)
        return h
