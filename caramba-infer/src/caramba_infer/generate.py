"""Stateful generation with static shapes: prefill, then one token at a time over preallocated caches.

A :class:`Generator` owns one conversation: the caches of every attention and SSM module
(by node path), the tokens they hold, and the last position's logits. ``generate`` and
``stream`` *continue* that conversation: a new prompt is prefilled on top of what is
already cached, never re-prefilled from the start. ``rollback(n)`` forgets the last ``n``
tokens exactly (KV caches are truncated; SSM states are restored from snapshots, or
recomputed from the held tokens when no snapshot is left). ``reset()`` starts over.

Every forward is static-shaped (in the style of gpt-fast): new tokens are written into the
caches at an index tensor, and attention reads the first ``span`` cache rows under a mask
built from positions, where ``span`` is the smallest *bucket* (:func:`decode_buckets`) that
holds the conversation. So the one-token step has one shape per bucket, and on CUDA it is
compiled and captured as a CUDA graph once per bucket and replayed for every length in it
(``compile="auto"``). Buckets are lossless: rows past the conversation are masked, never
dropped from the front. Prompts longer than ``prefill_chunk`` are prefilled in chunks.

Batches may hold prompts of different lengths (:meth:`Generator.generate_batch`): rows are
left-padded, each row's positions start at its first real token and padding is never
attended, so a row decodes exactly as it would alone.

The model is a caramba language-model system: ``model({"input_ids": ids}, ctx)`` returns
``{"logits": (B, T, V), ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import torch
from torch import nn

from caramba import CarambaError, Context
from caramba.nn import DecodeStep
from caramba_infer.caches import CacheKind, SnapshotState, cached_modules, create_caches
from caramba_infer.sampling import sample_next
from caramba_infer.specs import GenerateConfig

__all__ = ["Generator", "decode_buckets", "lm_logits"]

log = logging.getLogger("caramba.infer")

#: ``compile=`` values: ``auto`` compiles and captures on CUDA and runs eagerly elsewhere.
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune")


def lm_logits(model: nn.Module, ids: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
    """``(B, T, V)`` logits of a language-model system (or of a module returning logits)."""
    out = model({"input_ids": ids}, ctx if ctx is not None else Context())
    return out["logits"] if isinstance(out, dict) else out


def decode_buckets(max_len: int, buckets: Sequence[int] | None = None, smallest: int = 256) -> list[int]:
    """Sorted cache spans a step may read: powers of two from ``smallest``, always ending at ``max_len``."""
    if buckets is None:
        buckets = []
        span = smallest
        while span < max_len:
            buckets.append(span)
            span *= 2
    out = sorted({int(b) for b in buckets if 0 < int(b) < max_len} | {max_len})
    return out


class Generator:
    """Cached autoregressive decoding for one batch of conversations.

    Args:
        model: a language-model system following the cache protocol.
        max_len: tokens each cache holds (padding + prompt + generated); overflow is an error.
        batch_size: rows decoded together.
        cache_kind: ``fp32`` / ``fp16`` / ``bf16`` / ``q8_0`` / ``q4_0`` or a :class:`CacheKind`.
        runtime: resolve ``cache_kind`` names through this runtime's ``cache_kind`` registry.
        compile: ``auto`` (``reduce-overhead`` — compiled and CUDA-graph captured — on CUDA,
            eager elsewhere), ``off``, or a ``torch.compile`` mode used on any device.
        buckets: cache spans of the decode step (default: powers of two from 256, and ``max_len``).
        prefill_chunk: the most tokens one prefill forward takes; longer prompts go in chunks.
    """

    def __init__(self, model: nn.Module, *, max_len: int, batch_size: int = 1,
                 cache_kind: str | CacheKind = "fp32", device: Any = None, runtime: Any = None,
                 keep_snapshots: int = 256, compile: str = "auto", buckets: Sequence[int] | None = None,
                 prefill_chunk: int = 4096) -> None:
        if compile not in COMPILE_MODES:
            raise CarambaError(f"unknown compile mode '{compile}'", hint=f"use one of {', '.join(COMPILE_MODES)}")
        if prefill_chunk < 1:
            raise CarambaError(f"prefill_chunk must be at least 1, got {prefill_chunk}")
        self.model = model
        self.max_len = max_len
        self.batch_size = batch_size
        self.prefill_chunk = prefill_chunk
        self.device = device if device is not None else next((p.device for p in model.parameters()),
                                                             torch.device("cpu"))
        self.device = torch.device(self.device)
        self.caches = create_caches(model, cache_kind, batch=batch_size, max_len=max_len,
                                    device=self.device, runtime=runtime, keep_snapshots=keep_snapshots)
        self._init_states()
        self.buckets = decode_buckets(max_len, buckets)
        self._rows = torch.arange(max_len, device=self.device)  # slot indices, sliced per step (no allocation)
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=self.device)  # left padding per row
        self._tokens = torch.zeros(batch_size, max_len, dtype=torch.long, device=self.device)
        self._held = 0  # tokens in the caches (padding included)
        self.pending: torch.Tensor | None = None  # (B, 1) sampled, not yet fed
        self.last_logits: torch.Tensor | None = None  # (B, V) after the last cached token
        # Layers opt into static-shape decoding (``ctx.decode``) with ``static_decode = True``; a model
        # with any other cached layer decodes through ``cache.append`` at ``pos_offset``, eagerly.
        self.static = all(getattr(m, "static_decode", False) for m in cached_modules(model).values())
        self.compile_mode = self._resolve_compile(compile)
        self._decode: Callable[..., torch.Tensor]
        self._prefill: Callable[..., torch.Tensor]
        self._decode, self._prefill = self._compiled() if self.compiled else (self._forward, self._forward)

    # -- state ----------------------------------------------------------------------------
    @property
    def tokens(self) -> torch.Tensor:
        """``(B, L)`` the tokens in the caches, left padding included."""
        return self._tokens[:, : self._held]

    @property
    def length(self) -> int:
        """Tokens in the conversation (cached ones plus a sampled token not yet fed), padding included."""
        return self._held + (0 if self.pending is None else 1)

    @property
    def history(self) -> torch.Tensor:
        """``(B, length)`` every token of the conversation."""
        return self.tokens if self.pending is None else torch.cat([self.tokens, self.pending], dim=1)

    @property
    def compiled(self) -> bool:
        """Whether the one-token step runs compiled (and, in ``reduce-overhead`` mode, CUDA-graph captured)."""
        return self.compile_mode != "off"

    def kv_nbytes(self) -> int:
        """Bytes held by the real cache tensors (KV buffers and SSM states)."""
        return sum(int(c.nbytes()) for c in self.caches.values())

    def reset(self) -> None:
        for cache in self.caches.values():
            cache.reset()
        self._held = 0
        self.pad.zero_()
        self.pending = None
        self.last_logits = None

    # -- feeding tokens -------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids (B, T)`` after the cached tokens; returns the last position's logits ``(B, V)``.

        Prompts longer than ``prefill_chunk`` are fed in chunks; the caches end the same.
        """
        ids = self._check_ids(ids)
        start, t = self._held, ids.shape[1]
        if start + t > self.max_len:
            raise CarambaError(f"the conversation would hold {start + t} tokens, more than max_len={self.max_len}",
                               hint="create the Generator with a larger max_len, or rollback/reset first")
        for lo in range(0, t, self.prefill_chunk):
            chunk = ids[:, lo: lo + self.prefill_chunk]
            logits = self._feed(chunk, start + lo)
        self.last_logits = logits
        return logits

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Append a prompt to the conversation; returns the logits after its last token ``(B, V)``."""
        ids = self._check_ids(ids)
        if self.pending is not None:
            ids = torch.cat([self.pending, ids], dim=1)
            self.pending = None
        return self.forward(ids)

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
        penalised = config.repetition_penalty != 1.0
        for step in range(config.max_new_tokens):
            if step > 0:
                logits = self._flush_pending()
            token = sample_next(logits, config, history=self.history if penalised else None, generator=gen)
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

    def generate_batch(self, prompts: Sequence[Sequence[int] | torch.Tensor], config: GenerateConfig | None = None,
                       max_new_tokens: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Start over with prompts of different lengths (one per row); each row's tokens, stopped per row.

        Rows are left-padded to the longest prompt; a row's positions start at its own first
        token and its padding is never attended, so it decodes exactly as it would alone.
        A row ends at its first stop token (included) or at its own ``max_new_tokens``.
        """
        config = config or GenerateConfig()
        if len(prompts) != self.batch_size:
            raise CarambaError(f"generate_batch got {len(prompts)} prompts for a Generator of batch_size="
                               f"{self.batch_size}", hint="pass one prompt per row")
        rows = [torch.as_tensor(p, dtype=torch.long).reshape(-1) for p in prompts]
        if any(r.numel() == 0 for r in rows):
            raise CarambaError("generate_batch got an empty prompt", hint="every row needs at least one token")
        limits = list(max_new_tokens) if max_new_tokens is not None else [config.max_new_tokens] * len(rows)
        if len(limits) != len(rows):
            raise CarambaError(f"max_new_tokens lists {len(limits)} limits for {len(rows)} prompts")
        width = max(r.numel() for r in rows)
        ids = torch.zeros(self.batch_size, width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - r.numel():] = r
        if not self.static and len({r.numel() for r in rows}) > 1:
            raise CarambaError("prompts of different lengths need every cached layer to declare static_decode",
                               hint="batch prompts of one length, or decode them one by one")
        self.reset()
        self.pad.copy_(torch.tensor([width - r.numel() for r in rows]))
        steps = list(self.stream(ids, msgspec.structs.replace(config, max_new_tokens=max(limits))))
        out = torch.stack(steps, dim=1).cpu() if steps else torch.zeros(self.batch_size, 0, dtype=torch.long)
        stops = set(config.stop_tokens)
        result = []
        for i, limit in enumerate(limits):
            row = out[i, :limit].tolist()
            end = next((j + 1 for j, tok in enumerate(row) if tok in stops), len(row))
            result.append(torch.tensor(row[:end], dtype=torch.long))
        return result

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
        keep = self._held - n
        replay = False
        for cache in self.caches.values():
            if isinstance(cache, SnapshotState):
                replay |= not cache.restore(keep)
            else:
                cache.truncate(keep)
        self._held = keep
        self.last_logits = None
        if replay:
            self._replay_states(keep)

    # -- the static-shape forward -------------------------------------------------------------
    def _feed(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Write ``ids`` at cache rows ``start..``; the last position's logits ``(B, V)``, float32."""
        t = ids.shape[1]
        end = start + t
        span = next(b for b in self.buckets if b >= end)
        slots = self._rows[start:end]
        if t == 1:
            logits = self._decode(ids, slots, span)
        else:
            fresh = start == 0 and not bool(self.pad.any())
            logits = self._prefill(ids, slots, span, fresh=fresh, last_only=True)
        # A captured graph reuses its output buffer at its next replay: keep our own copy.
        logits = logits[:, -1].to(torch.float32, copy=self.compiled)
        self._tokens[:, start:end] = ids
        self._held = end
        for cache in self.caches.values():
            cache.length = end
            if isinstance(cache, SnapshotState):
                cache.snapshot()
        return logits

    def _forward(self, ids: torch.Tensor, slots: torch.Tensor, span: int, fresh: bool = False,
                 last_only: bool = False) -> torch.Tensor:
        if not self.static:
            return self._forward_appending(ids, int(slots[0]))
        step = DecodeStep(slots=slots, pad=self.pad, span=span, fresh=fresh, last_only=last_only)
        return lm_logits(self.model, ids, Context(caches=self.caches, decode=step))

    def _forward_appending(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        """The cache protocol without static shapes: each layer appends at ``pos_offset``."""
        logits = lm_logits(self.model, ids, Context(pos_offset=start, caches=self.caches))
        for path, cache in self.caches.items():
            if cache.length != start + ids.shape[1]:
                raise CarambaError(f"the module at '{path}' holds {cache.length} cached tokens after a forward "
                                   f"of {ids.shape[1]} tokens at position {start}; expected {start + ids.shape[1]}",
                                   hint="a layer that declares cache_fields()/state_fields() must use "
                                        "ctx.cache(self.node_path) on every call")
        return logits

    def _compiled(self) -> tuple[Any, Any]:
        """The one-token step and the prefill under ``torch.compile``; cache tensors keep fixed addresses.

        In ``reduce-overhead`` mode on CUDA the step is compiled without CUDA graphs and captured by
        :class:`CapturedStep` (one graph per bucket, replayed with no Python in between), and the
        prefill, whose shapes vary, uses torch's own CUDA graph trees.
        """
        for cache in self.caches.values():
            tensors = cache.static_tensors() if hasattr(cache, "static_tensors") else []
            if isinstance(cache, SnapshotState) and cache.tensors is not None:
                tensors = list(cache.tensors.values())
            for tensor in tensors:
                torch._dynamo.mark_static_address(tensor)
        torch._dynamo.mark_static_address(self.pad)
        # One graph per decode bucket (and per conversation that shares the process).
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

        def decode(ids: torch.Tensor, slots: torch.Tensor, span: int) -> torch.Tensor:
            return self._forward(ids, slots, span)

        def prefill(ids: torch.Tensor, slots: torch.Tensor, span: int, fresh: bool, last_only: bool) -> torch.Tensor:
            return self._forward(ids, slots, span, fresh=fresh, last_only=last_only)

        captured = self.compile_mode == "reduce-overhead" and self.device.type == "cuda"
        step = torch.compile(decode, mode="default" if captured else self.compile_mode, dynamic=False)
        states = [t for c in self.caches.values() if isinstance(c, SnapshotState) for t in (c.tensors or {}).values()]
        return (CapturedStep(step, self.batch_size, self.device, states) if captured else step,
                torch.compile(prefill, mode=self.compile_mode))

    def _resolve_compile(self, mode: str) -> str:
        if not all(getattr(cache, "static_writes", True) for cache in self.caches.values()):
            log.info("decode runs eagerly: a %s cache of this model's widths cannot be written at static "
                     "slots", type(next(iter(self.caches.values()))).__name__)
            return "off"
        if not self.static:
            if mode not in ("auto", "off"):
                log.info("decode runs eagerly: a cached layer of this model does not declare static_decode")
            return "off"
        if mode != "auto":
            return mode
        if self.device.type == "cuda":
            return "reduce-overhead"
        log.info("decode runs eagerly on %s (compile=auto compiles and captures CUDA only)", self.device.type)
        return "off"

    # -- helpers --------------------------------------------------------------------------
    def _init_states(self) -> None:
        """SSM states as zero tensors from the start: updated in place, so their addresses never change."""
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        for path, module in cached_modules(self.model).items():
            cache = self.caches[path]
            if isinstance(cache, SnapshotState):
                fields: dict[str, tuple[int, ...]] = module.state_fields()  # type: ignore[operator]
                cache.tensors = {name: torch.zeros(self.batch_size, *shape, dtype=dtype, device=self.device)
                                 for name, shape in fields.items()}
                cache.snapshots = {0: {k: v.clone() for k, v in cache.tensors.items()}}

    @torch.no_grad()
    def _replay_states(self, keep: int) -> None:
        """Recompute SSM states from the held tokens (KV rows are rewritten with the same values)."""
        for cache in self.caches.values():
            if isinstance(cache, SnapshotState):
                cache.restore(0)
            else:
                cache.truncate(0)
        held = self._tokens[:, :keep].clone()
        self._held = 0
        for lo in range(0, keep, self.prefill_chunk):
            self._feed(held[:, lo: lo + self.prefill_chunk], lo)

    def _flush_pending(self) -> torch.Tensor:
        assert self.pending is not None
        token, self.pending = self.pending, None
        return self.forward(token)

    def _current_logits(self) -> torch.Tensor:
        if self.pending is not None:
            return self._flush_pending()
        if self.last_logits is not None:
            return self.last_logits
        if self._held == 0:
            raise CarambaError("nothing to continue: the conversation is empty", hint="pass a prompt")
        # After a rollback: re-feed the last held token to recover its logits exactly.
        last = self._tokens[:, self._held - 1: self._held].clone()
        self.rollback(1)
        return self.prefill(last)

    def _check_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() == 1:
            ids = ids[None]
        if ids.dim() != 2 or ids.shape[0] != self.batch_size:
            raise CarambaError(f"token ids must be (batch={self.batch_size}, T), got {tuple(ids.shape)}")
        return ids.to(device=self.device, dtype=torch.long)


class CapturedStep:
    """A one-token step captured as one CUDA graph per cache span, replayed with no Python in between.

    The step writes the caches in place at ``slots`` and returns logits, so its inputs are
    copied into static buffers before each replay and its output buffer is overwritten by
    the next one (the generator copies what it keeps). All spans share one memory pool.
    """

    def __init__(self, step: Any, batch: int, device: torch.device, states: list[torch.Tensor]) -> None:
        self.step = step
        self.states = states  # recurrent states the step updates in place: restored after warm-up
        self.ids = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.slots = torch.zeros(1, dtype=torch.long, device=device)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}

    def __call__(self, ids: torch.Tensor, slots: torch.Tensor, span: int) -> torch.Tensor:
        self.ids.copy_(ids)
        self.slots.copy_(slots)
        if span not in self.graphs:
            self.graphs[span] = self._capture(span)
        graph, out = self.graphs[span]
        graph.replay()
        return out

    def _capture(self, span: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Compile and tune on a side stream first: capture records kernels, it cannot build them.
        # Warm-up writes the current slot with the current token, as the replay will (KV writes are
        # idempotent); recurrent states advance, so they are put back.
        saved = [t.clone() for t in self.states]
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.step(self.ids, self.slots, span)
        torch.cuda.current_stream().wait_stream(side)
        for tensor, value in zip(self.states, saved, strict=True):
            tensor.copy_(value)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.step(self.ids, self.slots, span)
        return graph, out
