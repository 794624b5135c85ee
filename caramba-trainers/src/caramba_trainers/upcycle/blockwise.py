"""Blockwise distillation: one student attention block at a time, every other weight frozen.

For block ``b`` the student runs its own forward only up to block ``b``'s attention (a
truncated forward: earlier blocks are already distilled and frozen), that attention runs
with gradients, and its output is pulled towards the teacher's attention output on the same
tokens (MSE or L1). With ``blockwise_input: teacher`` the block sees the teacher's input
instead (no student forward at all).

The teacher's per-block inputs and outputs are cached per training batch index: a batch of
``K = blockwise_teacher_cache_batches`` distinct batches is cycled, so after the first ``K``
steps every teacher activation is a cache hit. Optimizer step ``k`` of a block uses batch
``k mod K``. Checkpoints hold (block, block step, convergence state) with the student and
the optimizer, so a run resumes mid-block exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context

__all__ = ["TeacherCache", "block_input", "block_loss", "steps_per_block"]


class _Stop(Exception):
    """Raised by a hook to end a truncated forward."""


class TeacherCache:
    """Teacher attention inputs and outputs per training batch index, computed once each."""

    def __init__(self, teacher: nn.Module, attentions: list[nn.Module], batches: Any, precision: Any,
                 *, keep_inputs: bool) -> None:
        self.teacher = teacher
        self.attentions = attentions
        self.batches = batches  # index -> batch dict on the device
        self.precision = precision
        self.keep_inputs = keep_inputs
        self.hits = 0
        self.misses = 0
        self._store: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @torch.no_grad()
    def get(self, index: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if index in self._store:
            self.hits += 1
            return self._store[index]
        self.misses += 1
        ins: list[torch.Tensor] = []
        outs: list[torch.Tensor] = []

        def capture(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if self.keep_inputs:
                ins.append(args[0].detach())
            outs.append(out.detach())

        hooks = [a.register_forward_hook(capture) for a in self.attentions]
        try:
            with self.precision.autocast():
                self.teacher({"input_ids": self.batches(index)["input_ids"]}, Context())
        finally:
            for h in hooks:
                h.remove()
        self._store[index] = (ins, outs)
        return ins, outs


def block_input(student: nn.Module, attention: nn.Module, input_ids: torch.Tensor, precision: Any) -> torch.Tensor:
    """What ``attention`` receives in the student's forward, stopping the forward right there."""
    seen: list[torch.Tensor] = []

    def stop(module: nn.Module, args: tuple) -> None:
        seen.append(args[0].detach())
        raise _Stop

    hook = attention.register_forward_pre_hook(stop)
    try:
        with torch.no_grad(), precision.autocast():
            student({"input_ids": input_ids}, Context())
    except _Stop:
        pass
    finally:
        hook.remove()
    return seen[0]


def steps_per_block(total_steps: int, n_blocks: int) -> list[int]:
    """Fixed mode's optimizer steps of each block: ``total_steps`` split evenly, remainder first."""
    base, extra = divmod(total_steps, n_blocks)
    return [base + (1 if b < extra else 0) for b in range(n_blocks)]


def block_loss(kind: str, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    y, target = y.float(), target.float()
    return F.l1_loss(y, target) if kind == "l1" else F.mse_loss(y, target)
