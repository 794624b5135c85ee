"""``AttentionLayer``: standard, grouped-query and decoupled bottleneck attention (DBA).

One module, two projection sets:

* standard / GQA (arXiv:1706.03762, arXiv:2305.13245): ``q_proj, k_proj, v_proj, out_proj``
  named as in Llama, so Hugging Face weights load one to one; RoPE on q and k.
* decoupled (DBA): ``q_sem, k_sem, q_geo, k_geo, v_proj, out_proj``. Scores add a
  position-free semantic term and a RoPE'd geometric term,
  ``s_ij = q_sem·k_sem/√d_s + q_geo·k_geo/√d_g``, computed in one SDPA call on
  ``[q_sem/√d_s, q_geo/√d_g] · [k_sem, k_geo]`` with scale 1 (the same scores exactly).

The fast path is one ``F.scaled_dot_product_attention`` call with ``is_causal`` — also when
decoding one token from a cache, or prefilling an empty one. Explicit positions, a context
mask, ``local_window``, ``q_chunk``, a null token, or a multi-token chunk after cached tokens
switch to an explicit boolean mask built from absolute positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import CarambaError, Context
from caramba.nn import NodeModule
from caramba_layers.modules.rope import RotaryEmbedding

__all__ = ["AttentionLayer"]


class AttentionLayer(NodeModule):
    """Self-attention over ``(B, T, d_model)`` with optional KV cache (``ctx.cache(node_path)``)."""

    static_decode = True  # reads ctx.decode: cache writes at slots, attention over a span

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        c = config
        d, h, g, b = c.d_model, c.n_heads, c.kv_heads, c.bias
        self.n_heads, self.kv_heads = h, g
        self.decoupled = c.decoupled
        self.is_causal = c.is_causal
        self.dropout_p = c.dropout_p
        self.q_chunk = c.q_chunk
        self.local_window = c.local_window
        self.rope: RotaryEmbedding | None = None
        self.rope_sem: RotaryEmbedding | None = None
        if not self.decoupled:
            hd = c.head_dim
            self.q_proj = nn.Linear(d, h * hd, bias=b)
            self.k_proj = nn.Linear(d, g * hd, bias=b)
            self.v_proj = nn.Linear(d, g * hd, bias=b)
            self.out_proj = nn.Linear(h * hd, d, bias=b if c.out_bias is None else c.out_bias)
            if c.rope_enabled:
                self.rope = RotaryEmbedding(hd, c.rope_base, c.rope_scaling)
        else:
            ds, dg, dv = c.sem_head_dim, c.geo_head_dim, c.v_head_dim
            self.q_sem = nn.Linear(d, h * ds, bias=b)
            self.k_sem = None if c.tie_qk else nn.Linear(d, g * ds, bias=b)
            self.q_geo = nn.Linear(d, h * dg, bias=b)
            self.k_geo = nn.Linear(d, g * dg, bias=b)
            self.v_proj = nn.Linear(d, g * dv, bias=b)
            self.out_proj = nn.Linear(h * dv, d, bias=b if c.out_bias is None else c.out_bias)
            if c.rope_enabled:
                self.rope = RotaryEmbedding(dg, c.rope_base, c.rope_scaling)
                if c.rope_semantic:
                    self.rope_sem = RotaryEmbedding(ds, c.rope_base, c.rope_scaling)
            if c.null_attn:
                self.k_sem_null = nn.Parameter(torch.randn(g, ds) * 0.02)
                self.k_geo_null = nn.Parameter(torch.randn(g, dg) * 0.02)
                self.v_null = nn.Parameter(torch.randn(g, dv) * 0.02)
            if c.decoupled_gate:
                # g = σ(0) = 0.5 at init: both paths weighted equally (2g = 2(1-g) = 1).
                self.gate_bias = nn.Parameter(torch.zeros(h))
            if c.decoupled_gate_dynamic:
                self.gate_proj = nn.Linear(d, h, bias=False)
                nn.init.zeros_(self.gate_proj.weight)
        if c.learned_temp:
            self.temp = nn.Parameter(torch.zeros(h))  # log-scale per head; exp(0) = 1 at init
        self._decode_kernel: Callable[..., torch.Tensor] | None = None

    def cache_fields(self) -> dict[str, tuple[int, ...]]:
        """``{name: (heads, width)}`` of the tensors a KV cache stores per token."""
        return self.config.cache_fields()

    # -- kernels (bound by caramba.select_kernels, never chosen in forward) --
    def kernel_ops(self) -> tuple[str, ...]:
        return ("decode_attention",)

    def use_kernel(self, op: str, fn: Callable[..., torch.Tensor] | None) -> None:
        """``decode_attention(q (B, H, Dk), keys, v, lengths, scale=) -> (B, H, Dv)`` over cache storage."""
        self._decode_kernel = fn

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx if ctx is not None else Context()
        B, T, _ = x.shape
        cache = ctx.cache(self.node_path)
        step = ctx.decode if cache is not None else None
        if step is None and cache is not None and ctx.positions is None and ctx.pos_offset != cache.length:
            raise CarambaError(f"ctx.pos_offset is {ctx.pos_offset} but the cache of {self.node_path} holds "
                               f"{cache.length} tokens", path=self.node_path,
                               hint="new tokens start right after the cached ones: set pos_offset = cache.length")
        if step is not None:
            q_pos = step.slots[None, :] - step.pad[:, None]  # (B, T): a left-padded row starts later
        else:
            q_pos = _positions(ctx, T, x.device)  # (T,) or (B, T)

        if self.decoupled:
            q, new, scale = self._project_dba(x, q_pos)
        else:
            q, new, scale = self._project_standard(x, q_pos)
        if step is not None:
            o = self._attend_static(q, new, cache.write(step.slots, step.span, **new), q_pos, step, ctx, scale)
            return self.out_proj(o.transpose(1, 2).reshape(B, T, -1))
        null = self.decoupled and self.config.null_attn
        kernel = self._decode_kernel
        # The kernel takes half-precision queries; an fp32 step (AMP weights outside autocast) stays on SDPA.
        if (kernel is not None and cache is not None and T == 1 and not self.training
                and q.dtype in (torch.float16, torch.bfloat16) and hasattr(cache, "storage") and not null
                and ctx.positions is None and ctx.mask is None and self.local_window is None):
            return self._decode_step(kernel, q, new, cache, scale)
        full = cache.append(**new) if cache is not None else new
        k, v = self._keys_values(full)  # k: (B, G, S, Dk), v: (B, G, S, Dv)
        k, v = k.to(q.dtype), v.to(q.dtype)  # a cache may store another dtype
        S = k.shape[2]
        k_pos = torch.arange(S, device=x.device) if cache is not None else q_pos

        explicit = (ctx.positions is not None or ctx.mask is not None or null
                    or self.local_window is not None or self.q_chunk is not None)
        # With a cache, one new token sees every cached key and a prefill into an empty cache is
        # plain causal attention; only a chunk after cached tokens needs the offset mask.
        if cache is not None and self.is_causal and T not in (1, S):
            explicit = True
        p = self.dropout_p if self.training else 0.0
        gqa = self.kv_heads != self.n_heads
        if not explicit:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal and T == S and T > 1,
                                               dropout_p=p, scale=scale, enable_gqa=gqa)
        else:
            mask = self._mask(q_pos, k_pos, ctx.mask)  # (B|1, 1|H, T, S)
            if null:
                k, v, mask = self._prepend_null(k, v, mask)
            o = self._attend_chunked(q, k, v, mask, p, scale, gqa)
        o = o.transpose(1, 2).reshape(B, T, -1)  # (B, T, H·Dv)
        return self.out_proj(o)

    def _attend_static(self, q: torch.Tensor, new: dict, cached: dict, q_pos: torch.Tensor, step: Any,
                       ctx: Context, scale: float) -> torch.Tensor:
        """Attention over the first ``step.span`` cache rows; shapes depend on ``(T, span)`` alone."""
        null = self.decoupled and self.config.null_attn
        if step.fresh and self.is_causal and not null and self.local_window is None and ctx.mask is None:
            k, v = self._keys_values(new)  # nothing cached before: plain causal attention
            return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=q.shape[2] > 1,
                                                  scale=scale, enable_gqa=self.kv_heads != self.n_heads)
        k, v = self._keys_values(cached)  # (B, G, S, D) with S = span
        k, v = k.to(q.dtype), v.to(q.dtype)
        rows = torch.arange(k.shape[2], device=q.device)  # cache rows
        k_pos = rows[None, :] - step.pad[:, None]  # (B, S) positions of the cached tokens
        valid = (rows <= step.slots[-1])[None, :] & (rows[None, :] >= step.pad[:, None])  # written, not padding
        mask = self._mask(q_pos, k_pos, ctx.mask) & valid[:, None, None, :]  # (B, 1, T, S)
        # A pad token's query sees itself, so every row stays finite (pad rows are never read).
        mask = mask | (rows[None, None, None, :] == step.slots[None, None, :, None])
        if null:
            k, v, mask = self._prepend_null(k, v, mask)
        B, H, T, _ = q.shape
        G = self.kv_heads
        if H == G or mask.shape[1] != 1:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=H != G)
        # GQA/MQA without copying keys: the r = H/G query heads of a group become r·T query rows.
        r = H // G
        o = F.scaled_dot_product_attention(q.reshape(B, G, r * T, -1), k, v, attn_mask=mask.repeat(1, 1, r, 1),
                                           scale=scale)  # (B, G, r·T, Dv)
        return o.reshape(B, H, T, -1)

    def _decode_step(self, kernel: Callable[..., torch.Tensor], q: torch.Tensor, new: dict, cache: Any,
                     scale: float) -> torch.Tensor:
        """One token over the whole cache with the bound kernel, reading the cache where it lies."""
        cache.store(**new)
        keys = (cache.storage("k_sem"), cache.storage("k_geo")) if self.decoupled else cache.storage("k")
        o = kernel(q[:, :, 0], keys, cache.storage("v"), cache.length, scale=scale)  # (B, H, Dv)
        return self.out_proj(o.reshape(q.shape[0], 1, -1))

    def _project_standard(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, dict, float]:
        B, T, _ = x.shape
        hd = self.config.head_dim
        q = self.q_proj(x).view(B, T, self.n_heads, hd)
        k = self.k_proj(x).view(B, T, self.kv_heads, hd)
        v = self.v_proj(x).view(B, T, self.kv_heads, hd)
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        q = self._temperature(q)
        return q.transpose(1, 2), {"k": k, "v": v}, 1.0 / math.sqrt(hd)

    def _project_dba(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, dict, float]:
        B, T, _ = x.shape
        c = self.config
        h, g = self.n_heads, self.kv_heads
        ds, dg, dv = c.sem_head_dim, c.geo_head_dim, c.v_head_dim
        q_sem = self.q_sem(x).view(B, T, h, ds)
        k_sem = (self.k_sem or self.q_sem)(x).view(B, T, g, ds)
        q_geo = self.q_geo(x).view(B, T, h, dg)
        k_geo = self.k_geo(x).view(B, T, g, dg)
        v = self.v_proj(x).view(B, T, g, dv)
        if self.rope is not None:
            q_geo, k_geo = self.rope(q_geo, pos), self.rope(k_geo, pos)
        if self.rope_sem is not None:
            q_sem, k_sem = self.rope_sem(q_sem, pos), self.rope_sem(k_sem, pos)
        q_sem, q_geo = self._temperature(q_sem), self._temperature(q_geo)
        if c.decoupled_gate:
            logit = self.gate_bias
            if c.decoupled_gate_dynamic:
                logit = logit + self.gate_proj(x)  # (B, T, H)
            gate = torch.sigmoid(logit).unsqueeze(-1)  # (H, 1) or (B, T, H, 1)
            q_sem, q_geo = q_sem * (2 * gate), q_geo * (2 * (1 - gate))
        q = torch.cat((q_sem / math.sqrt(ds), q_geo / math.sqrt(dg)), dim=-1)  # (B, T, H, ds+dg)
        return q.transpose(1, 2), {"k_sem": k_sem, "k_geo": k_geo, "v": v}, 1.0

    def _temperature(self, q: torch.Tensor) -> torch.Tensor:
        if not self.config.learned_temp:
            return q
        return q * self.temp.clamp(-8.0, 8.0).exp()[:, None]  # (H, 1) over (B, T, H, D)

    def _keys_values(self, full: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.decoupled:
            k = torch.cat((full["k_sem"], full["k_geo"]), dim=-1)
        else:
            k = full["k"]
        v = full["v"]
        return k.transpose(1, 2), v.transpose(1, 2)

    def _mask(self, q_pos: torch.Tensor, k_pos: torch.Tensor, extra: Any) -> torch.Tensor:
        qp = q_pos[..., :, None]  # (..., T, 1)
        kp = k_pos[..., None, :]  # (..., 1, S)
        allowed = torch.ones(torch.broadcast_shapes(qp.shape, kp.shape), dtype=torch.bool, device=q_pos.device)
        if self.is_causal:
            allowed = allowed & (kp <= qp)
        if self.local_window is not None:
            w = self.local_window
            # causal: keys in [q - w + 1, q]; bidirectional: |q - k| < w
            allowed = allowed & ((kp > qp - w) if self.is_causal else ((qp - kp).abs() < w))
        while allowed.dim() < 4:
            allowed = allowed.unsqueeze(0) if allowed.dim() < 3 else allowed.unsqueeze(1)
        if extra is not None:
            allowed = allowed & torch.as_tensor(extra, dtype=torch.bool, device=allowed.device)
        return allowed

    def _prepend_null(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        B = k.shape[0]
        k_null = torch.cat((self.k_sem_null, self.k_geo_null), dim=-1)  # (G, ds+dg): no position, no RoPE
        k = torch.cat((k_null[None, :, None].expand(B, -1, 1, -1).to(k.dtype), k), dim=2)
        v = torch.cat((self.v_null[None, :, None].expand(B, -1, 1, -1).to(v.dtype), v), dim=2)
        visible = torch.ones(*mask.shape[:-1], 1, dtype=torch.bool, device=mask.device)
        return k, v, torch.cat((visible, mask), dim=-1)

    def _attend_chunked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                        p: float, scale: float, gqa: bool) -> torch.Tensor:
        T = q.shape[2]
        step = self.q_chunk or T
        outs = []
        for start in range(0, T, step):
            rows = slice(start, min(start + step, T))
            outs.append(F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask[:, :, rows], dropout_p=p,
                                                       scale=scale,
                                                       enable_gqa=gqa))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


def _positions(ctx: Context, T: int, device: torch.device) -> torch.Tensor:
    """Absolute positions of the new tokens: ``ctx.positions`` or ``pos_offset + arange(T)``."""
    if ctx.positions is not None:
        return torch.as_tensor(ctx.positions, device=device).long()
    return torch.arange(ctx.pos_offset, ctx.pos_offset + T, device=device)
