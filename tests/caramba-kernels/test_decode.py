"""Split-K decode attention against float64 attention over the same cached values."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")
from caramba_infer.caches import QuantizedKVCache
from caramba_kernels.decode import decode_attention

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
# (batch, query heads, cache heads, head dim, capacity): tiny in the interpreter, real on a GPU.
SHAPE = (2, 32, 8, 128, 4096) if ON_GPU else (2, 4, 2, 32, 40)
TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def reference(q, keys, v, lengths, scale):
    """float64 softmax(scale · q·k) v per sequence over its first ``lengths[b]`` tokens, keys in parts."""
    B, H, _ = q.shape
    G = v.shape[2]
    k = torch.cat(keys, dim=-1).double()
    out = []
    for b in range(B):
        n = int(lengths[b])
        kb = k[b, :n].transpose(0, 1).repeat_interleave(H // G, 0)  # (H, n, Dk)
        vb = v[b, :n].double().transpose(0, 1).repeat_interleave(H // G, 0)
        s = torch.einsum("hd,hnd->hn", q[b].double(), kb) * scale
        out.append(torch.einsum("hn,hnd->hd", s.softmax(-1), vb))
    return torch.stack(out)


def lengths_for(B, S):
    return torch.tensor([S] + [max(1, S // (i + 3)) for i in range(B - 1)], device=DEVICE)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["mha", "gqa", "mqa"])
def test_decode_matches_float64_attention_with_ragged_lengths(dtype, layout):
    B, H, G, D, S = SHAPE
    G = {"mha": H, "gqa": G, "mqa": 1}[layout]
    q = torch.randn(B, H, D, device=DEVICE, dtype=dtype)
    k, v = (torch.randn(B, S, G, D, device=DEVICE, dtype=dtype) for _ in range(2))
    lengths = lengths_for(B, S)
    got = decode_attention(q, k, v, lengths)
    want = reference(q, (k,), v, lengths, 1 / math.sqrt(D))
    assert got.shape == (B, H, D) and got.dtype == dtype
    assert (got.double() - want).abs().max() < TOL[dtype]


def test_any_split_size_gives_the_same_result():
    B, H, G, D, S = SHAPE
    q = torch.randn(B, H, D, device=DEVICE, dtype=torch.float16)
    k, v = (torch.randn(B, S, G, D, device=DEVICE, dtype=torch.float16) for _ in range(2))
    lengths = lengths_for(B, S)
    one = decode_attention(q, k, v, lengths, split=S + 64 - S % 64)
    many = decode_attention(q, k, v, lengths, split=16 if not ON_GPU else 256, block_n=16)
    assert (one.float() - many.float()).abs().max() < 2e-3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dba_decode_adds_gated_semantic_and_geometric_scores(dtype):
    # DBA: s = 2g · q_sem·k_sem/√d_s + 2(1-g) · q_geo·k_geo/√d_g, the gate folded into the query.
    B, H, G, _, S = SHAPE
    ds, dg, dv = (16, 16, 32) if not ON_GPU else (16, 16, 32)
    q_sem, q_geo = torch.randn(B, H, ds, device=DEVICE), torch.randn(B, H, dg, device=DEVICE)
    gate = torch.sigmoid(torch.randn(H, 1, device=DEVICE))
    k_sem, k_geo = (torch.randn(B, S, G, d, device=DEVICE, dtype=dtype) for d in (ds, dg))
    v = torch.randn(B, S, G, dv, device=DEVICE, dtype=dtype)
    lengths = lengths_for(B, S)
    q = torch.cat((q_sem * 2 * gate / math.sqrt(ds), q_geo * 2 * (1 - gate) / math.sqrt(dg)), -1).to(dtype)
    got = decode_attention(q, (k_sem, k_geo), v, lengths, scale=1.0)

    want = []
    for b in range(B):
        n = int(lengths[b])
        ks, kg, vb = (t[b, :n].double().transpose(0, 1).repeat_interleave(H // G, 0) for t in (k_sem, k_geo, v))
        s = (2 * gate.double() * torch.einsum("hd,hnd->hn", q_sem[b].double(), ks) / math.sqrt(ds)
             + 2 * (1 - gate.double()) * torch.einsum("hd,hnd->hn", q_geo[b].double(), kg) / math.sqrt(dg))
        want.append(torch.einsum("hn,hnd->hd", s.softmax(-1), vb))
    assert (got.double() - torch.stack(want)).abs().max() < 2 * TOL[dtype]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("fields", [{"k": 64, "v": 64}, {"k": 32, "v": 32}, {"k_sem": 16, "k_geo": 16, "v": 32}])
def test_quantised_decode_reads_the_blocks_in_place(bits, fields):
    # Heads of 64 are two whole blocks (one scale per block); heads of 32 one block; 3 heads x 16 make
    # blocks straddle tokens. The kernel must follow the token-major stream in each case.
    B, H, _, _, S = SHAPE
    G = 3 if "k_sem" in fields else 2
    H = G * 2
    cache = QuantizedKVCache({n: (G, w) for n, w in fields.items()}, B, S, bits=bits, device=DEVICE)
    values = {n: torch.randn(B, S, G, w, device=DEVICE) for n, w in fields.items()}
    views = cache.append(**values)  # what the torch reference path attends over
    keys = [n for n in fields if n != "v"]
    dk = sum(fields[n] for n in keys)
    q = torch.randn(B, H, dk, device=DEVICE, dtype=torch.float16)
    lengths = lengths_for(B, S)
    storage = tuple(cache.storage(n) for n in keys)
    got = decode_attention(q, storage if len(storage) > 1 else storage[0], cache.storage("v"), lengths)
    want = reference(q, [views[n] for n in keys], views["v"], lengths, 1 / math.sqrt(dk))
    assert (got.double() - want).abs().max() < 2e-3
    # and within the format's error of attention over the unquantised values
    exact = reference(q, [values[n] for n in keys], values["v"], lengths, 1 / math.sqrt(dk))
    assert (got.double() - exact).abs().max() < (0.05 if bits == 8 else 0.5)


def test_mismatched_widths_are_refused_with_the_reason():
    q = torch.randn(1, 2, 32, device=DEVICE, dtype=torch.float16)
    k = torch.randn(1, 8, 2, 16, device=DEVICE, dtype=torch.float16)
    with pytest.raises(ValueError, match="do not add up to the query width 32"):
        decode_attention(q, k, k, 8)
