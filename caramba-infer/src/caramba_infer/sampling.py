"""Choosing the next token from logits: repetition penalty, temperature, top-k, top-p.

Each filter is a pure function on ``(B, V)`` logits so it can be tested alone; filtered
entries become ``-inf``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["apply_repetition_penalty", "sample_next", "top_k_filter", "top_p_filter"]


def apply_repetition_penalty(logits: torch.Tensor, history: torch.Tensor | None, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): seen tokens' logits divided by ``penalty`` if positive, else multiplied."""
    if penalty == 1.0 or history is None or history.numel() == 0:
        return logits
    seen = torch.gather(logits, 1, history)  # (B, L)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, history, seen)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties at the k-th value are kept)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020): the smallest set of tokens whose probability reaches ``p``.

    A token is dropped when the probability mass ranked strictly before it already reaches
    ``p``; the most likely token is always kept.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass ranked before each token
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: torch.Tensor, config: Any, *, history: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each row, ``(B,)`` long, from last-position logits ``(B, V)``."""
    logits = apply_repetition_penalty(logits.float(), history, config.repetition_penalty)
    if config.temperature <= 0:
        return torch.argmax(logits, dim=-1)
    logits = logits / config.temperature
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
