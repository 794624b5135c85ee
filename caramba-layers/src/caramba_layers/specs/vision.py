"""``system.image_classifier``: a Vision Transformer classifier (torch-free config).

Images ``(B, C, H, W)`` → the ``patch`` embedder's tokens (a class token first with
``pool: cls``) → the topology → one vector per image (``embedder.pool``) → a LayerNorm
and a linear head to ``n_classes`` logits (Dosovitskiy et al. 2021, arXiv:2010.11929).
Attention inside the topology should set ``is_causal: false``: every patch sees every patch.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, NodeConfig, Scope, Shape
from caramba_layers.specs import Component
from caramba_layers.specs.embedders import PatchEmbedderConfig

__all__ = ["COMPONENTS", "ImageClassifierConfig", "VisionModelConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]


class VisionModelConfig(Config, kw_only=True):
    """The ``model:`` block of an image classifier: a patch embedder and a topology."""

    type: Literal["ViTModel"] = "ViTModel"
    embedder: PatchEmbedderConfig
    topology: NodeConfig


class ImageClassifierConfig(Config, kw_only=True):
    """``{input_key: (B, C, H, W)}`` → ``{output_key: (B, n_classes)}``."""

    model: VisionModelConfig
    n_classes: Positive
    head_norm: bool = True
    input_key: str = "inputs"
    output_key: str = "logits"

    def check(self, scope: Scope) -> None:
        e = self.model.embedder
        if e.pool == "none":
            scope.child("model", "embedder").error("pool", "a classifier needs one vector per image",
                                                   "use pool: cls or pool: mean")
            return
        x = scope.infer(e, Shape("B", e.in_channels, e.img_size, e.img_size), "model", "embedder")
        y = scope.infer(self.model.topology, x, "model", "topology")
        if y is not None and isinstance(y.last, int) and y.last != e.d_model:
            scope.child("model").error("topology", f"the topology outputs {y.last} features but the head "
                                       f"reads d_model ({e.d_model})", f"end the topology at width {e.d_model}")

    def num_params(self) -> int:
        d = self.model.embedder.d_model
        norm = 2 * d if self.head_norm else 0
        return self.model.embedder.num_params() + self.model.topology.num_params() + norm + d * self.n_classes + \
            self.n_classes

    def kv_elements_per_token(self) -> int:
        return 0


COMPONENTS = [
    Component("system", "system.image_classifier", ImageClassifierConfig,
              "caramba_layers.modules.vision:ImageClassifier",
              "ViT classifier: patch embedder, topology, pooled token, linear head", aliases=("system.vit",)),
]
