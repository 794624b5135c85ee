"""``system.language_model``: token embedder → topology → LM head. Torch-free config.

The LM head follows the original layout: when the topology is sequential (Stacked,
Sequential or Nested) and its last child is a ``LinearLayer`` with ``d_out == vocab_size``,
that layer is the head, and ``hidden`` is its input. Otherwise the topology must output
``d_model`` features and the system adds its own bias-free head, ``lm_head``.
``tied_embeddings: true`` shares the head's weight with the token embedding table.
``lora:`` adapts the built model for fine-tuning (see ``caramba_layers.modules.lora``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, EmbedderConfig, NodeConfig, Scope, Shape
from caramba_layers.specs import Component
from caramba_layers.specs.basic import LinearLayerConfig
from caramba_layers.specs.embedders import TokenEmbedderConfig
from caramba_layers.specs.lora import LoRAConfig
from caramba_layers.specs.topologies import StackedTopologyConfig

__all__ = ["LanguageModelConfig", "TransformerModelConfig", "head_index"]


class TransformerModelConfig(Config, kw_only=True):
    """The ``model:`` block of a language model."""

    type: Literal["TransformerModel", "GPTModel"] = "TransformerModel"
    embedder: EmbedderConfig
    topology: NodeConfig
    tied_embeddings: bool = True
    block_size: Annotated[int, msgspec.Meta(gt=0)] | None = None

    @property
    def vocab_size(self) -> int | None:
        return getattr(self.embedder, "vocab_size", None)

    @property
    def d_model(self) -> int | None:
        return getattr(self.embedder, "d_model", None)


def head_index(model: TransformerModelConfig) -> int | None:
    """Index of the LM head among ``model.topology``'s children, or ``None`` (the system adds one)."""
    topology = model.topology
    if not isinstance(topology, StackedTopologyConfig):
        return None
    children = topology.children()
    if children and isinstance(children[-1], LinearLayerConfig) and children[-1].d_out == model.vocab_size:
        return len(children) - 1
    return None


class LanguageModelConfig(Config, kw_only=True):
    """A causal language model: ``input_ids (B, T)`` → ``logits (B, T, V)`` and ``hidden (B, T, D)``."""

    model: TransformerModelConfig
    lora: LoRAConfig | None = None

    def check(self, scope: Scope) -> None:
        m = self.model
        if not isinstance(m.embedder, TokenEmbedderConfig):
            scope.child("model", "embedder").error("type", "a language model needs a token embedder",
                                                   "use embedder: {type: token, vocab_size, d_model}")
            return
        x = scope.infer(m.embedder, Shape("B", "T"), "model", "embedder")
        y = scope.infer(m.topology, x, "model", "topology")
        v, d = m.embedder.vocab_size, m.embedder.d_model
        idx = head_index(m)
        topo = scope.child("model", "topology")
        if idx is not None:
            head = m.topology.children()[idx]
            if m.tied_embeddings and head.d_in != d:
                topo.child("layers", min(idx, len(m.topology.layers) - 1)).error(
                    "d_in", f"tied_embeddings shares the head with the ({v}, {d}) embedding table, but the "
                    f"head is ({head.d_out}, {head.d_in})", "set tied_embeddings: false or d_in: " + str(d))
            return
        if y is not None and isinstance(y.last, int) and y.last != d:
            hint = ("make the LM head the last child of a Stacked/Sequential/Nested topology"
                    if y.last == v else f"end the topology with a LinearLayer d_out: {v}, or output d_model {d}")
            topo.error(None, f"the topology outputs {y.last} features; a language model needs either a final "
                       f"LinearLayer to vocab_size ({v}) or d_model ({d}) features for its own head", hint)

    def num_params(self) -> int:
        m = self.model
        total = m.embedder.num_params() + m.topology.num_params()
        v, d = m.vocab_size or 0, m.d_model or 0
        idx = head_index(m)
        if idx is None:
            return total + (0 if m.tied_embeddings else v * d)
        if m.tied_embeddings:
            total -= v * m.topology.children()[idx].d_in
        return total

    def kv_elements_per_token(self) -> int:
        return self.model.topology.kv_elements_per_token()


COMPONENTS = [
    Component("system", "system.language_model", LanguageModelConfig,
              "caramba_layers.modules.language_model:LanguageModel",
              "causal language model: token embedder, topology, LM head"),
]
