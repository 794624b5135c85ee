"""The explicit run context that flows through ``forward(x, ctx)``.

Nothing is implicit: a layer finds its KV cache by its own node path
(``ctx.cache(self.node_path)``), positions are absolute, and auxiliary losses (MoE load
balancing, router z-loss) are *added to the context*, where the objective collects them.
This module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuxLoss", "Context", "DecodeStep"]


@dataclass
class AuxLoss:
    """An auxiliary loss term: ``weight * value`` is added to the objective."""

    path: str
    name: str
    value: Any
    weight: float = 1.0


@dataclass(frozen=True)
class DecodeStep:
    """Static-shape decoding: where new tokens go in preallocated caches, and what attention reads.

    Set by a decoder (``caramba_infer.Generator``) on ``Context.decode``. A layer with a KV cache
    writes the ``T`` new tokens at cache rows ``slots`` (``(T,)`` long tensor) with
    ``cache.write(slots, span, ...)`` and attends over the first ``span`` rows with a mask built
    from positions, so every tensor shape depends on ``(T, span)`` only, never on the
    conversation's length: one compiled (CUDA-graph captured) step serves every length in a
    bucket. Row ``b`` of a batch is left-padded by ``pad[b]`` tokens (``(B,)`` long tensor):
    cache row ``s`` holds position ``s - pad[b]``, and rows ``s < pad[b]`` are never attended.
    Rows after ``slots[-1]`` (stale or never written) are never attended either.
    ``fresh`` says the call's tokens are the whole conversation (nothing cached before, no
    padding), so attention may use them directly; ``last_only`` asks a language model for the
    last position's logits alone (prefill).
    """

    slots: Any
    pad: Any
    span: int
    fresh: bool = False
    last_only: bool = False


@dataclass
class Context:
    """Per-call state for one forward pass.

    Attributes:
        training: whether the pass is a training step.
        pos_offset: absolute position of ``x[:, 0]`` (non-zero while decoding with a cache).
        positions: optional ``(B, T)`` absolute positions, overriding ``pos_offset``.
        mask: optional attention mask, broadcastable to ``(B, H, T, S)``; True = attend.
        caches: KV caches (or SSM states) keyed by node path.
        state: state that topologies carry across calls (``RecurrentTopology``), by node path.
        aux_losses: auxiliary losses added during the pass.
        extras: named inputs for nodes that need more than ``x`` (a graph's adjacency).
        decode: static-shape decoding instructions (:class:`DecodeStep`), or ``None``.
    """

    training: bool = False
    pos_offset: int = 0
    positions: Any = None
    mask: Any = None
    caches: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    aux_losses: list[AuxLoss] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    decode: DecodeStep | None = None

    def cache(self, path: str) -> Any:
        """The cache of the node at ``path``, or ``None`` when decoding without one."""
        return self.caches.get(path)

    def add_aux_loss(self, path: str, name: str, value: Any, weight: float = 1.0) -> None:
        self.aux_losses.append(AuxLoss(path, name, value, weight))

    def total_aux_loss(self) -> Any:
        """``sum(weight * value)`` over the collected aux losses (``0.0`` when none)."""
        total: Any = 0.0
        for aux in self.aux_losses:
            total = total + aux.weight * aux.value
        return total
