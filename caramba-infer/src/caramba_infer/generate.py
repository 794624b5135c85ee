"""Stateful generation: prefill, then one token at a time over preallocated caches.

A :class:`Generator` owns one conversation: the caches of every attention and SSM module
(by node path), the tokens they hold, and the last position's logits. ``generate`` and
``stream`` *continue* that conversation: a new prompt is prefilled on top of what is
already cached, never re-prefilled from the start. ``rollback(n)`` forgets the last ``n``
tokens exactly (KV caches are truncated; SSM states are restored from snapshots, or
recomputed from the held tokens when no snapshot is left). ``reset()`` starts over.

The model is a caramba language-model system: ``model({"input_ids": ids}, ctx)`` returns
``{"logits": (B, T, V), ...}``; positions of new tokens start at ``ctx.pos_offset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from caramba import CarambaError, Context
from caramba_infer.caches import CacheKind, SnapshotState, create_caches
from caramba_infer.sampling import sample_next
from caramba_infer.specs import GenerateConfig

__all__ = ["Generator", "lm_logits"]


def lm_logits(model: nn.Module, ids: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
    """``(B, T, V)`` logits of a language-model system (or of a module returning logits)."""
    out = model({"input_ids": ids}, ctx if ctx is not None else Context())
    return out["logits"] if isinstance(out, dict) else out


class Generator:
    """Cached autoregressive decoding for one batch of conversations.

    Args:
        model: a language-model system following the cache protocol.
        max_len: tokens each cache holds (prompt + generated); overflow is an error.
        batch_size: rows decoded together (prompts of one call share a length).
        cache_kind: ``fp32`` / ``fp16`` / ``bf16`` / ``q8_0`` / ``q4_0`` or a :class:`CacheKind`.
        runtime: resolve ``cache_kind`` names through this runtime's ``cache_kind`` registry.
    """

    def __init__(self, model: nn.Module, *, max_len: int, batch_size: int = 1,
                 cache_kind: str | CacheKind = "fp32", device: Any = None, runtime: Any = None,
                 keep_snapshots: int = 256) -> None:
        self.model = model
        self.max_len = max_len
        self.batch_size = batch_size
        self.device = device if device is not None else next((p.device for p in model.parameters()),
                                                             torch.device("cpu"))
        self.caches = create_caches(model, cache_kind, batch=batch_size, max_len=max_len,
                                    device=self.device, runtime=runtime, keep_snapshots=keep_snapshots)
        self.tokens = torch.zeros(batch_size, 0, dtype=torch.long, device=self.device)  # (B, L) in the caches
        self.pending: torch.Tensor | None = None  # (B, 1) sampled, not yet fed
        self.last_logits: torch.Tensor | None = None  # (B, V) after the last cached token

    # -- state ----------------------------------------------------------------------------
    @property
    def length(self) -> int:
        """Tokens in the conversation (cached ones plus a sampled token not yet fed)."""
        return self.tokens.shape[1] + (0 if self.pending is None else 1)

    @property
    def history(self) -> torch.Tensor:
        """``(B, length)`` every token of the conversation."""
        return self.tokens if self.pending is None else torch.cat([self.tokens, self.pending], dim=1)

    def kv_nbytes(self) -> int:
        """Bytes held by the real cache tensors (KV buffers and SSM states)."""
        return sum(int(c.nbytes()) for c in self.caches.values())

    def reset(self) -> None:
        for cache in self.caches.values():
            cache.reset()
        self.tokens = self.tokens[:, :0]
        self.pending = None
        self.last_logits = None

    # -- feeding tokens -------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids (B, T)`` after the cached tokens; returns their logits ``(B, T, V)``."""
        ids = self._check_ids(ids)
        start, t = self.tokens.shape[1], ids.shape[1]
        if start + t > self.max_len:
            raise CarambaError(f"the conversation would hold {start + t} tokens, more than max_len={self.max_len}",
                               hint="create the Generator with a larger max_len, or rollback/reset first")
        logits = lm_logits(self.model, ids, Context(pos_offset=start, caches=self.caches))
        for path, cache in self.caches.items():
            if cache.length != start + t:
                raise CarambaError(f"the module at '{path}' holds {cache.length} cached tokens after a forward "
                                   f"of {t} tokens at position {start}; expected {start + t}",
                                   hint="a layer that declares cache_fields()/state_fields() must use "
                                        "ctx.cache(self.node_path) on every call")
            if isinstance(cache, SnapshotState):
                cache.snapshot()
        self.tokens = torch.cat([self.tokens, ids], dim=1)
        self.last_logits = logits[:, -1].float()
        return logits

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Append a prompt to the conversation; returns the logits after its last token ``(B, V)``."""
        ids = self._check_ids(ids)
        if self.pending is not None:
            ids = torch.cat([self.pending, ids], dim=1)
            self.pending = None
        self.forward(ids)
        assert self.last_logits is not None
        return self.last_logits

    def decode_step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (``(B,)`` or ``(B, 1)``); returns the next logits ``(B, V)``."""
        return self.prefill(token.reshape(self.batch_size, 1))

    # -- generation -----------------------------------------------------------------------
    def stream(self, prompt: torch.Tensor | None = None,
               config: GenerateConfig | None = None) -> Iterator[torch.Tensor]:
        """Yield one ``(B,)`` token tensor per step, continuing the conversation.

        Rows that produced a stop token keep yielding that token until every row has
        stopped. The last sampled token is held as ``pending`` and fed with the next
        prompt, so no forward is spent on a token whose logits nobody asked for.
        """
        config = config or GenerateConfig()
        gen = None
        if config.seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(config.seed)
        if prompt is not None and prompt.numel() > 0:
            logits = self.prefill(prompt)
        else:
            logits = self._current_logits()
        stops = torch.tensor(config.stop_tokens, dtype=torch.long, device=self.device)
        done = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        for step in range(config.max_new_tokens):
            if step > 0:
                logits = self._flush_pending()
            token = sample_next(logits, config, history=self.history, generator=gen)
            if stops.numel():
                token = torch.where(done, stops[0], token)
                done |= torch.isin(token, stops)
            self.pending = token[:, None]
            yield token
            if stops.numel() and bool(done.all()):
                break

    def generate(self, prompt: torch.Tensor | None = None, config: GenerateConfig | None = None) -> torch.Tensor:
        """The tokens ``stream`` yields, stacked ``(B, n)``."""
        steps = list(self.stream(prompt, config))
        if not steps:
            return torch.zeros(self.batch_size, 0, dtype=torch.long, device=self.device)
        return torch.stack(steps, dim=1)

    def rollback(self, n: int) -> None:
        """Forget the last ``n`` tokens of the conversation, exactly."""
        if not 0 <= n <= self.length:
            raise CarambaError(f"cannot roll back {n} tokens of a conversation of {self.length}")
        if n == 0:
            return
        if self.pending is not None:
            self.pending = None
            n -= 1
            if n == 0:
                return
        keep = self.tokens.shape[1] - n
        replay: dict[str, SnapshotState] = {}
        for path, cache in self.caches.items():
            if isinstance(cache, SnapshotState):
                if not cache.restore(keep):
                    cache.reset()
                    replay[path] = cache
            else:
                cache.truncate(keep)
        self.tokens = self.tokens[:, :keep]
        self.last_logits = None
        if replay and keep > 0:
            self._replay_states(replay)

    # -- helpers --------------------------------------------------------------------------
    @torch.no_grad()
    def _replay_states(self, states: dict[str, SnapshotState]) -> None:
        """Recompute SSM states from the held tokens (attention runs uncached: same outputs)."""
        lm_logits(self.model, self.tokens, Context(pos_offset=0, caches=dict(states)))
        for state in states.values():
            state.snapshot()

    def _flush_pending(self) -> torch.Tensor:
        assert self.pending is not None
        token, self.pending = self.pending, None
        self.forward(token)
        assert self.last_logits is not None
        return self.last_logits

    def _current_logits(self) -> torch.Tensor:
        if self.pending is not None:
            return self._flush_pending()
        if self.last_logits is not None:
            return self.last_logits
        if self.tokens.shape[1] == 0:
            raise CarambaError("nothing to continue: the conversation is empty", hint="pass a prompt")
        # After a rollback: re-feed the last held token to recover its logits exactly.
        last = self.tokens[:, -1:]
        self.rollback(1)
        return self.prefill(last)

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.shape[0] != self.batch_size:
            raise CarambaError(f"token ids must be (batch={self.batch_size}, T), got {tuple(ids.shape)}")
        return ids.to(device=self.device, dtype=torch.long)
