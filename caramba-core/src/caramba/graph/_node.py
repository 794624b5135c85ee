"""Node configs: the torch-free half of every layer and topology.

A *node* is a layer or a topology. Its config struct is what the manifest declares; the
same struct validates the manifest (fields, then :meth:`NodeConfig.infer` for shapes),
prints the dry-run plan (:meth:`NodeConfig.num_params`,
:meth:`NodeConfig.kv_elements_per_token`) and is handed to the module's constructor.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from caramba.graph._shapes import Shape
from caramba.manifest._config import PolymorphicConfig, Scope

__all__ = ["EmbedderConfig", "NodeConfig", "TopologyConfig"]


class NodeConfig(PolymorphicConfig, kw_only=True):
    """Base of every layer and topology config. ``type`` is the registered name."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("layer", "topology")

    def infer(self, x: Shape, scope: Scope) -> Shape:
        """The output shape for input ``x``; raise :class:`~caramba.graph.ShapeError` on a mismatch.

        The default keeps the shape (right for norms, dropout, activations).
        """
        return x

    def num_params(self) -> int:
        """Trainable parameters this node creates (used by ``--dry-run``)."""
        return 0

    def kv_elements_per_token(self) -> int:
        """Elements this node caches per token while decoding (attention: K and V)."""
        return 0

    def children(self) -> list[NodeConfig]:
        return []


class TopologyConfig(NodeConfig, kw_only=True):
    """Base of topology configs: ``layers`` and ``repeat``.

    ``repeat: N`` means the layer list N times over, each copy with its own weights;
    lowering expands it, so a built topology sees ``repeat == 1``.
    """

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("topology",)

    layers: list[NodeConfig] = []
    repeat: Annotated[int, msgspec.Meta(ge=1)] = 1

    def children(self) -> list[NodeConfig]:
        return list(self.layers) * self.repeat

    def infer(self, x: Shape, scope: Scope) -> Shape:
        """Sequential composition; topologies with other semantics override this."""
        for i, child in enumerate(self.layers):
            x = scope.infer(child, x, "layers", i)
        return x

    def num_params(self) -> int:
        return sum(c.num_params() for c in self.children())

    def kv_elements_per_token(self) -> int:
        return sum(c.kv_elements_per_token() for c in self.children())


class EmbedderConfig(PolymorphicConfig, kw_only=True):
    """Base of embedder configs (``embedder: {type: token, vocab_size, d_model}``)."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("embedder",)

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return x

    def num_params(self) -> int:
        return 0
