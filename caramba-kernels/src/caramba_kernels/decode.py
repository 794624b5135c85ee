"""Split-K decode attention over a KV cache's own storage (flash-decoding, Dao et al. 2023).

One new query token per sequence attends over every cached token. The cache is read where it
lies, in its storage format, never copied or dequantised into a temporary:

* a dtype cache field is a ``(B, S, G, D)`` fp16/bf16/fp32 tensor;
* a quantised field (``q8_0``/``q4_0``) is an object with ``codes`` (``(B, ≥S·G·D)`` int8, or
  ``(B, ≥S·G·D/2)`` uint8 holding two 4-bit values per byte, low nibble first, offset by 8:
  each sequence's values as one token-major stream), ``scales`` (``(B, ceil(S·G·D / qblock))``
  fp16: one per ``qblock`` consecutive values of that stream, so a block may straddle tokens),
  ``bits``, ``qblock``, ``heads``, ``width`` and ``capacity`` (``S``); caramba-infer's
  ``QuantizedKVCache.storage(name)`` is one.

Keys may come in parts whose widths add up to the query's: decoupled bottleneck attention
passes ``(k_sem, k_geo)`` with ``q = [q_sem·2g/√d_s, q_geo·2(1-g)/√d_g]`` (the gate folded into
the query), so one kernel computes ``q_sem·k_sem + q_geo·k_geo`` without concatenating.

The grid is one program per (sequence, KV head, split of the cache's capacity): each program
loads its keys and values once for all ``H/G`` query heads of the group (GQA/MQA), keeps an
online softmax in fp32 and writes a partial result; a second kernel merges the splits. The
grid depends on the capacity, not on the lengths, so a decode step has the same launch every
call (CUDA graphs); programs past a sequence's length return at once.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import triton
import triton.language as tl

__all__ = ["decode_attention"]

_LOG2E = 1.4426950408889634
_DTYPE, _Q8, _Q4 = 0, 8, 4


@triton.jit
def _load_tile(base, scales, t, g, n_field, stride_t, stride_g, tmask,
               D: tl.constexpr, BLOCK_D: tl.constexpr, KIND: tl.constexpr, QB: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """Values of tokens ``t`` of head ``g``: a ``(BLOCK_N, BLOCK_D)`` fp32 tile, zero where masked."""
    d = tl.arange(0, BLOCK_D)
    mask = tmask[:, None] & (d[None, :] < D)
    if KIND == 0:
        x = tl.load(base + t[:, None] * stride_t + g * stride_g + d[None, :], mask=mask, other=0.0)
        x = x.to(tl.float32)
    else:
        e = t[:, None] * n_field + g * D + d[None, :]  # index in the sequence's token-major value stream
        if KIND == 8:
            c = tl.load(base + e, mask=mask, other=0).to(tl.float32)
        else:
            byte = tl.load(base + e // 2, mask=mask, other=0).to(tl.int32)
            c = ((byte >> ((e % 2) * 4)) & 15).to(tl.float32) - 8.0
        if D % QB == 0 and D // QB >= 2 and D == BLOCK_D:
            # Each head of each token is whole blocks (G·D and D multiples of qblock): one scale per
            # block, broadcast over its values, instead of one scale load per value.
            j = tl.arange(0, D // QB)
            first = (t * n_field + g * D) // QB
            s = tl.load(scales + first[:, None] + j[None, :], mask=tmask[:, None], other=0.0).to(tl.float32)
            x = tl.reshape(tl.reshape(c, (BLOCK_N, D // QB, QB)) * s[:, :, None], (BLOCK_N, D))
        else:
            s = tl.load(scales + e // QB, mask=mask, other=0.0).to(tl.float32)
            x = c * s
    return x


@triton.jit
def _decode_split(Q, K1, K1S, K2, K2S, V, VS, Lens, MidO, MidML,
                  stride_qb, stride_qh,
                  k1_sb, k1_st, k1_sg, k1_ssb, k2_sb, k2_st, k2_sg, k2_ssb, v_sb, v_st, v_sg, v_ssb,
                  qk_scale, G, SPLIT,
                  QH: tl.constexpr, QH_PAD: tl.constexpr,
                  D1: tl.constexpr, BD1: tl.constexpr, D2: tl.constexpr, BD2: tl.constexpr,
                  DV: tl.constexpr, BDV: tl.constexpr,
                  KIND: tl.constexpr, QB: tl.constexpr, BLOCK_N: tl.constexpr, NS: tl.constexpr,
                  UPCAST: tl.constexpr):
    bg = tl.program_id(0)
    split = tl.program_id(1)
    b = bg // G
    g = bg % G
    b64 = b.to(tl.int64)
    length = tl.load(Lens + b)
    start = split * SPLIT
    end = tl.minimum(start + SPLIT, length)

    h = tl.arange(0, QH_PAD)
    hmask = h < QH
    q_rows = Q + b64 * stride_qb + (g * QH + h)[:, None] * stride_qh
    d1 = tl.arange(0, BD1)
    q1 = tl.load(q_rows + d1[None, :], mask=hmask[:, None] & (d1[None, :] < D1), other=0.0)
    if D2 > 0:
        d2 = tl.arange(0, BD2)
        q2 = tl.load(q_rows + D1 + d2[None, :], mask=hmask[:, None] & (d2[None, :] < D2), other=0.0)
        if UPCAST:
            q2 = q2.to(tl.float32)
    if UPCAST:
        q1 = q1.to(tl.float32)

    m = tl.full([QH_PAD], float("-inf"), tl.float32)
    den = tl.zeros([QH_PAD], tl.float32)
    acc = tl.zeros([QH_PAD, BDV], tl.float32)
    for t0 in range(start, end, BLOCK_N):
        t = t0 + tl.arange(0, BLOCK_N)
        tmask = t < end
        k1 = _load_tile(K1 + b64 * k1_sb, K1S + b64 * k1_ssb, t, g, G * D1, k1_st, k1_sg, tmask, D1, BD1, KIND, QB,
                        BLOCK_N)
        scores = tl.dot(q1, tl.trans(k1.to(q1.dtype)))  # (QH_PAD, BLOCK_N), fp32 accumulation
        if D2 > 0:
            k2 = _load_tile(K2 + b64 * k2_sb, K2S + b64 * k2_ssb, t, g, G * D2, k2_st, k2_sg, tmask,
                            D2, BD2, KIND, QB, BLOCK_N)
            scores += tl.dot(q2, tl.trans(k2.to(q2.dtype)))
        scores = tl.where(tmask[None, :], scores * qk_scale, float("-inf"))  # log2 units
        m_new = tl.maximum(m, tl.max(scores, 1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(scores - m_new[:, None])
        den = den * alpha + tl.sum(p, 1)
        v = _load_tile(V + b64 * v_sb, VS + b64 * v_ssb, t, g, G * DV, v_st, v_sg, tmask, DV, BDV, KIND, QB,
                       BLOCK_N)
        acc = acc * alpha[:, None] + tl.dot(p.to(q1.dtype), v.to(q1.dtype))
        m = m_new

    slot = (bg * NS + split) * QH_PAD + h  # (QH_PAD,)
    dv = tl.arange(0, BDV)
    tl.store(MidO + slot[:, None] * BDV + dv[None, :], acc)
    tl.store(MidML + slot * 2, m)
    tl.store(MidML + slot * 2 + 1, den)


@triton.jit
def _decode_reduce(MidO, MidML, Out, stride_ob, stride_oh, G,
                   QH: tl.constexpr, QH_PAD: tl.constexpr, DV: tl.constexpr, BDV: tl.constexpr,
                   NS: tl.constexpr, NS_PAD: tl.constexpr):
    bg = tl.program_id(0)
    b = bg // G
    g = bg % G
    h = tl.arange(0, QH_PAD)
    s = tl.arange(0, NS_PAD)
    slots = (bg * NS + s[None, :]) * QH_PAD + h[:, None]  # (QH_PAD, NS_PAD)
    smask = s[None, :] < NS
    m = tl.load(MidML + slots * 2, mask=smask, other=float("-inf"))
    den = tl.load(MidML + slots * 2 + 1, mask=smask, other=0.0)
    top = tl.max(m, 1)
    w = tl.where(m == float("-inf"), 0.0, tl.exp2(m - top[:, None]))  # splits past the length weigh 0
    total = tl.sum(w * den, 1)
    dv = tl.arange(0, BDV)
    acc = tl.zeros([QH_PAD, BDV], tl.float32)
    for i in range(NS):
        slot = (bg * NS + i) * QH_PAD + h
        mi = tl.load(MidML + slot * 2)
        wi = tl.where(mi == float("-inf"), 0.0, tl.exp2(mi - top))
        acc += tl.load(MidO + slot[:, None] * BDV + dv[None, :]) * wi[:, None]
    out = acc / total[:, None]
    heads = g * QH + h
    mask = (h[:, None] < QH) & (dv[None, :] < DV)
    tl.store(Out + b.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + dv[None, :],
             out.to(Out.dtype.element_ty), mask=mask)


# --- launcher ----------------------------------------------------------------------------

class _Field:
    """One cache field as the kernel reads it: pointers, strides, heads and width."""

    def __init__(self, storage: Any) -> None:
        if isinstance(storage, torch.Tensor):
            if storage.dim() != 4 or storage.stride(-1) != 1:
                raise ValueError(f"a dtype cache field is a (B, S, G, D) tensor with unit last stride, got "
                                 f"shape {tuple(storage.shape)} strides {storage.stride()}")
            self.kind, self.qblock = _DTYPE, 1
            self.data, self.scales = storage, storage  # scales unused: any valid pointer
            self.batch, self.capacity, self.heads, self.width = storage.shape
            self.strides = (storage.stride(0), storage.stride(1), storage.stride(2), 0)
        else:
            self.kind = {8: _Q8, 4: _Q4}[int(storage.bits)]
            self.qblock = int(storage.qblock)
            self.data, self.scales = storage.codes, storage.scales
            self.heads, self.width = int(storage.heads), int(storage.width)
            self.batch, self.capacity = storage.codes.shape[0], int(storage.capacity)
            if not (self.data.is_contiguous() and self.scales.is_contiguous()):
                raise ValueError("quantised cache codes and scales must be contiguous")
            self.strides = (self.data.stride(0), 0, 0, self.scales.stride(0))

    def key(self) -> tuple[int, int]:
        return self.kind, self.qblock


def _pow2(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(n))


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _splits(batch_heads: int, capacity: int, block_n: int, device: torch.device) -> int:
    """Tokens per split: enough programs to fill the GPU, each a whole number of blocks."""
    programs = 4 * _multiprocessors(device.index or 0) if device.type == "cuda" else 8
    want = max(1, math.ceil(programs / batch_heads))
    split = max(block_n, math.ceil(capacity / want))
    return math.ceil(split / block_n) * block_n


def decode_attention(q: torch.Tensor, k_cache: Any, v_cache: Any, lengths: torch.Tensor | int, *,
                     scale: float | None = None, block_n: int = 64, split: int | None = None,
                     num_warps: int | None = None) -> torch.Tensor:
    """Attention of one new token per sequence over the first ``lengths[b]`` cached tokens.

    ``q``: ``(B, H, Dk)`` fp16/bf16; ``k_cache``: a field's storage or a tuple of up to two
    (their widths add up to ``Dk``); ``v_cache``: a field's storage of width ``Dv`` (all of one
    storage kind); ``lengths``: ``(B,)`` or an int, each at least 1. ``H`` is a multiple of the
    cache's ``G`` heads (grouped-query). Scores are ``scale · q·k`` (``1/√Dk`` by default).
    Returns ``(B, H, Dv)`` in ``q``'s dtype. ``block_n`` (tokens per step), ``split`` (tokens
    per program) and ``num_warps`` override the launch heuristics.
    """
    several = type(k_cache) in (tuple, list)  # a quantised field is a NamedTuple: one part
    parts = [_Field(p) for p in (k_cache if several else (k_cache,))]
    value = _Field(v_cache)
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"keys come in one or two parts, got {len(parts)}")
    fields = [*parts, value]
    B, H, Dk = q.shape
    G, capacity = value.heads, value.capacity
    if any(f.key() != value.key() or f.heads != G or f.capacity != capacity or f.batch != B for f in fields):
        raise ValueError("every cache field must share the storage kind, heads, capacity and batch")
    if sum(p.width for p in parts) != Dk:
        raise ValueError(f"key widths {[p.width for p in parts]} do not add up to the query width {Dk}")
    if H % G:
        raise ValueError(f"{H} query heads are not a multiple of {G} cache heads")
    if q.stride(-1) != 1:
        q = q.contiguous()
    lens = torch.as_tensor(lengths, dtype=torch.int32, device=q.device).expand(B).contiguous()
    qh = H // G
    k1 = parts[0]
    k2 = parts[1] if len(parts) == 2 else parts[0]
    d2 = parts[1].width if len(parts) == 2 else 0
    split = split or _splits(B * G, capacity, block_n, q.device)
    ns = math.ceil(capacity / split)
    qh_pad, bdv = _pow2(qh), _pow2(value.width)
    mid_o = torch.empty(B * G * ns * qh_pad * bdv, dtype=torch.float32, device=q.device)
    mid_ml = torch.empty(B * G * ns * qh_pad * 2, dtype=torch.float32, device=q.device)
    out = torch.empty(B, H, value.width, dtype=q.dtype, device=q.device)
    sm = scale if scale is not None else 1.0 / math.sqrt(Dk)
    wide = k1.width + d2 + value.width
    warps = num_warps or (8 if wide >= 256 else 4)
    _decode_split[(B * G, ns)](
        q, k1.data, k1.scales, k2.data, k2.scales, value.data, value.scales, lens, mid_o, mid_ml,
        q.stride(0), q.stride(1), *k1.strides, *k2.strides, *value.strides,
        sm * _LOG2E, G, split,
        QH=qh, QH_PAD=qh_pad, D1=k1.width, BD1=_pow2(k1.width), D2=d2, BD2=_pow2(max(d2, 1)),
        DV=value.width, BDV=bdv, KIND=value.kind, QB=value.qblock, BLOCK_N=block_n, NS=ns,
        # Triton's CPU interpreter multiplies bf16 tiles as raw integers: dot in fp32 there.
        UPCAST=q.device.type == "cpu" and q.dtype == torch.bfloat16,
        num_warps=warps, num_stages=3)
    _decode_reduce[(B * G,)](mid_o, mid_ml, out, out.stride(0), out.stride(1), G,
                             QH=qh, QH_PAD=qh_pad, DV=value.width, BDV=bdv, NS=ns,
                             NS_PAD=triton.next_power_of_2(ns), num_warps=4)
    return out
