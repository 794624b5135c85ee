"""Sampling filters against hand-derived values; cache kinds against their storage formulas."""

from __future__ import annotations

import math

import pytest
import torch

import caramba
from caramba_infer import GenerateConfig, QuantizedKVCache, cache_kind, sample_next
from caramba_infer import plugin as infer_plugin
from caramba_infer.caches import QuantizedCacheKind
from caramba_infer.sampling import apply_repetition_penalty, top_k_filter, top_p_filter

NEG = float("-inf")


def test_top_k_keeps_the_k_largest_logits():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert top_k_filter(logits, 2).tolist() == [[NEG, 4.0, 3.0, NEG]]


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # ranked mass before each token: 0, .5, .8, .95 → p=0.8 keeps the first two, p=0.81 three
    assert torch.isinf(top_p_filter(logits, 0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_p_filter(logits, 0.81)).tolist() == [[False, False, False, True]]
    assert torch.isinf(top_p_filter(logits, 0.1)).tolist() == [[False, True, True, True]]


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([[2.0, -1.0, 3.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert out.tolist() == [[1.0, -2.0, 3.0]]


def test_temperature_sampling_follows_the_tempered_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    draws = sample_next(logits, GenerateConfig(temperature=2.0), generator=gen)
    freq = torch.bincount(draws, minlength=3).float() / draws.numel()
    expect = torch.softmax(torch.tensor([0.0, 0.5, 1.0]), -1)
    assert torch.allclose(freq, expect, atol=0.03)


def test_greedy_is_argmax_even_with_filters():
    logits = torch.tensor([[0.1, 3.0, 2.0]])
    cfg = GenerateConfig(temperature=0, top_k=1, top_p=0.5)
    assert sample_next(logits, cfg).tolist() == [1]


@pytest.mark.parametrize("bits", [8, 4])
def test_block_quantised_cache_error_is_within_half_a_step_per_block(bits):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 16) * torch.linspace(0.1, 4, 16)
    cache = QuantizedKVCache({"k": (3, 16)}, 2, 8, bits=bits, qblock=16)
    got = cache.append(k=x)["k"]
    qmax = 127 if bits == 8 else 7
    step = x.reshape(2, 5, 3, 16).abs().amax(-1, keepdim=True) / qmax  # one block = one head here
    assert got.shape == x.shape and got.dtype == x.dtype
    assert bool(((got - x).abs() <= step * 0.5 + 1e-3 * step + 1e-6).all())
    per_token = cache.nbytes() / (2 * 8)
    assert per_token == 3 * (16 * bits // 8 + 2)  # codes + one fp16 scale per block


def test_registered_cache_kinds_report_their_bytes_per_element():
    rt = caramba.Runtime(autoload=False, plugins=[infer_plugin])
    got = {name: cache_kind(name, rt).bytes_per_element() for name in ("fp32", "fp16", "bf16", "q8_0", "q4_0")}
    assert got == {"fp32": 4, "fp16": 2, "bf16": 2, "q8_0": 1 + 2 / 32, "q4_0": 0.5 + 2 / 32}
    assert math.isclose(cache_kind("q4", rt).bytes_per_element(), 0.5625)


# Every (heads, width) a preset's attention caches per token: standard/GQA k and v, DBA k_sem, k_geo, v.
PRESET_FIELDS = [(4, 32), (8, 64), (4, 16), (6, 32), (3, 16), (3, 32), (8, 16), (8, 32)]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("shape", PRESET_FIELDS)
def test_quantised_cache_bytes_equal_the_analytic_bytes_at_every_preset_width(bits, shape):
    kind = QuantizedCacheKind(name=f"q{bits}_0", bits=bits)
    cache = kind.create({"k": shape}, 2, 256, "meta")
    assert cache.nbytes() == 2 * 256 * math.prod(shape) * kind.bytes_per_element()


@pytest.mark.parametrize("bits", [8, 4])
def test_blocks_straddling_tokens_read_back_within_one_step_of_their_final_scale(bits):
    # 3 heads x 16 = 48 values per token: every other token shares a 32-value block with the next.
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 16) * torch.linspace(0.1, 4, 16)
    cache = QuantizedKVCache({"k": (3, 16)}, 2, 8, bits=bits, qblock=32)
    for t in range(7):  # one token at a time, as decoding appends
        got = cache.append(k=x[:, t:t + 1])["k"]
    qmax = 127 if bits == 8 else 7
    blocks = torch.nn.functional.pad(x.reshape(2, -1), (0, 32 - 7 * 48 % 32)).view(2, -1, 32)
    step = (blocks.abs().amax(-1, keepdim=True) / qmax).expand(-1, -1, 32).reshape(2, -1)[:, : 7 * 48]
    err = (got - x).reshape(2, -1).abs()
    assert bool((err <= step * 1.001 + 1e-6).all())
    one_shot = QuantizedKVCache({"k": (3, 16)}, 2, 8, bits=bits, qblock=32).append(k=x)["k"]
    assert bool(((one_shot - x).reshape(2, -1).abs() <= step * 0.501 + 1e-6).all())


def test_a_straddled_block_whose_scale_holds_keeps_its_earlier_values_exactly():
    cache = QuantizedKVCache({"k": (1, 48)}, 1, 4, bits=8, qblock=32)
    first = torch.linspace(-4, 4, 48).view(1, 1, 1, 48)
    before = cache.append(k=first)["k"].clone()
    after = cache.append(k=first * 0.5)["k"]  # smaller values: the shared block's scale is unchanged
    assert torch.equal(after[:, :1], before)
