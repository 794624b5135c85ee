"""Embedder configs: ``token`` (ids → vectors) and ``patch`` (images → patch tokens). Torch-free."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import EmbedderConfig, Scope, Shape, ShapeError
from caramba_layers.specs import Component

__all__ = ["PatchEmbedderConfig", "TokenEmbedderConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]


class TokenEmbedderConfig(EmbedderConfig, kw_only=True):
    """A learned table of ``vocab_size`` vectors of width ``d_model``: ``(B, T)`` ids → ``(B, T, d_model)``."""

    vocab_size: Positive
    d_model: Positive

    def infer(self, x: Shape, scope: Scope) -> Shape:
        if x.rank != 2:
            raise ShapeError(f"token ids must be (B, T), got rank {x.rank} {x}")
        return Shape(*x, self.d_model)

    def num_params(self) -> int:
        return self.vocab_size * self.d_model


class PatchEmbedderConfig(EmbedderConfig, kw_only=True):
    """ViT patch embedding (arXiv:2010.11929): ``(B, C, H, W)`` images → ``(B, N, d_model)`` tokens.

    A stride-``patch_size`` convolution cuts ``(img_size / patch_size)²`` patches, a learned
    position embedding is added, and with ``pool: cls`` a learned class token is prepended
    (``N + 1`` tokens). ``pool`` also says how a system reads one vector per image out of
    the final tokens: the class token (``cls``), their mean (``mean``) or not at all
    (``none``: per-token outputs); see :meth:`PatchEmbedder.pool`.
    """

    img_size: Positive = 224
    patch_size: Positive = 16
    in_channels: Positive = 3
    d_model: Positive
    pool: Literal["cls", "mean", "none"] = "cls"
    dropout_p: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + (1 if self.pool == "cls" else 0)

    def infer(self, x: Shape, scope: Scope) -> Shape:
        if self.img_size % self.patch_size:
            raise ShapeError(f"img_size ({self.img_size}) is not divisible by patch_size ({self.patch_size})",
                             field="patch_size")
        if x.rank != 4:
            raise ShapeError(f"images must be (B, C, H, W), got rank {x.rank} {x}")
        if isinstance(x[1], int) and x[1] != self.in_channels:
            raise ShapeError(f"images have {x[1]} channels but in_channels is {self.in_channels}",
                             field="in_channels")
        for dim in x[2:]:
            if isinstance(dim, int) and dim != self.img_size:
                raise ShapeError(f"images are {x[2]}x{x[3]} but img_size is {self.img_size}", field="img_size")
        return Shape(x[0], self.num_tokens, self.d_model)

    def pooled(self, x: Shape) -> Shape:
        """The shape :meth:`PatchEmbedder.pool` makes of the final tokens ``x``."""
        return x if self.pool == "none" else Shape(x[0], *x[2:])

    def num_params(self) -> int:
        p, c, d = self.patch_size, self.in_channels, self.d_model
        return c * p * p * d + d + self.num_tokens * d + (d if self.pool == "cls" else 0)


COMPONENTS = [
    Component("embedder", "token", TokenEmbedderConfig, "caramba_layers.modules.embedders:TokenEmbedder",
              "learned token embedding table"),
    Component("embedder", "patch", PatchEmbedderConfig, "caramba_layers.modules.embedders:PatchEmbedder",
              "ViT patch embedding with position embeddings and an optional class token"),
]
