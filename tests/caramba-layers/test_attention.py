"""AttentionLayer against independent references: PyTorch SDPA on repeated KV heads, a direct
float64 implementation of DBA, and an uncached forward for cached decoding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.errors import CarambaError
from caramba.graph import NodeConfig
from caramba.graph._caches import StaticKVCache
from caramba.testing import LayerConformance

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])


def build(**fields):
    config = RT.parse(NodeConfig, {"type": "AttentionLayer", **fields})
    torch.manual_seed(0)
    module = RT.build(config, "attn").double().eval()
    return config, module


def rope_ref(x, pos, base=10000.0):
    """Half-split rotation of ``x (B, T, H, D)``, written out from the RoFormer formula in float64."""
    d = x.shape[-1]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos.double()[:, None] * inv  # (T, D/2)
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def allowed_mask(T, S, causal, window=None, offset=0):
    """(T, S) True where query i (at position offset + i) may attend key j, written by hand."""
    out = torch.ones(T, S, dtype=torch.bool)
    for i in range(T):
        for j in range(S):
            qi = offset + i
            if causal and j > qi:
                out[i, j] = False
            if window is not None and (qi - j >= window if causal else abs(qi - j) >= window):
                out[i, j] = False
    return out


def standard_ref(module, config, x, mask):
    """SDPA with K/V heads repeated to n_heads, on projections and RoPE computed here."""
    B, T, _ = x.shape
    h, g, hd = config.n_heads, config.kv_heads, config.head_dim
    pos = torch.arange(T)
    q = module.q_proj(x).view(B, T, h, hd)
    k = module.k_proj(x).view(B, T, g, hd)
    v = module.v_proj(x).view(B, T, g, hd)
    if config.rope_enabled:
        q, k = rope_ref(q, pos, config.rope_base), rope_ref(k, pos, config.rope_base)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    k, v = k.repeat_interleave(h // g, dim=1), v.repeat_interleave(h // g, dim=1)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return module.out_proj(o.transpose(1, 2).reshape(B, T, h * hd))


def assert_rel(actual, expected, tol):
    err = (actual - expected).abs().max() / expected.abs().max()
    assert err < tol, f"relative error {err:.3g} >= {tol}"


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("extra", [{}, {"q_chunk": 3}, {"local_window": 3}, {"q_chunk": 2, "local_window": 4}])
def test_standard_and_gqa_match_sdpa_with_repeated_kv_heads(causal, n_kv_heads, extra):
    mode = "gqa" if n_kv_heads < 4 else "standard"
    config, module = build(d_model=16, n_heads=4, n_kv_heads=n_kv_heads, mode=mode, is_causal=causal,
                           bias=True, **extra)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    mask = allowed_mask(7, 7, causal, extra.get("local_window"))
    with torch.no_grad():
        assert_rel(module(x, caramba.Context()), standard_ref(module, config, x, mask), 1e-6)


def test_context_mask_is_combined_with_the_causal_mask():
    config, module = build(d_model=16, n_heads=4, n_kv_heads=2, mode="gqa")
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    user = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.4
    user |= torch.eye(6, dtype=torch.bool)  # every query keeps at least itself
    expected = allowed_mask(6, 6, True)[None, None] & user
    with torch.no_grad():
        assert_rel(module(x, caramba.Context(mask=user)), standard_ref(module, config, x, expected), 1e-6)


def test_rope_disabled_attention_is_permutation_equivariant_without_causal_mask():
    _, module = build(d_model=8, n_heads=2, rope_enabled=False, is_causal=False)
    x = torch.randn(1, 5, 8, dtype=torch.float64)
    perm = torch.tensor([3, 1, 4, 0, 2])
    with torch.no_grad():
        torch.testing.assert_close(module(x)[:, perm], module(x[:, perm]))


# -- DBA ----------------------------------------------------------------------------------

def dba_ref(module, c, x):
    """The DBA formula of the reference, computed directly in float64 (one einsum per term)."""
    B, T, _ = x.shape
    h, g = c.n_heads, c.kv_heads
    ds, dg, dv = c.sem_head_dim, c.geo_head_dim, c.v_head_dim
    pos = torch.arange(T)
    q_sem = x @ module.q_sem.weight.T + (module.q_sem.bias if c.bias else 0)
    k_lin = module.q_sem if c.tie_qk else module.k_sem
    k_sem = x @ k_lin.weight.T + (k_lin.bias if c.bias else 0)
    q_geo, k_geo, v = module.q_geo(x), module.k_geo(x), module.v_proj(x)
    q_sem, q_geo = q_sem.view(B, T, h, ds), q_geo.view(B, T, h, dg)
    k_sem, k_geo, v = k_sem.view(B, T, g, ds), k_geo.view(B, T, g, dg), v.view(B, T, g, dv)
    q_geo, k_geo = rope_ref(q_geo, pos, c.rope_base), rope_ref(k_geo, pos, c.rope_base)
    if c.learned_temp:
        t = module.temp.clamp(-8, 8).exp()[:, None]
        q_sem, q_geo = q_sem * t, q_geo * t
    if c.decoupled_gate:
        logit = module.gate_bias + (module.gate_proj(x) if c.decoupled_gate_dynamic else 0)
        gate = torch.sigmoid(logit)[..., None]
        q_sem, q_geo = q_sem * 2 * gate, q_geo * 2 * (1 - gate)
    rep = h // g
    k_sem, k_geo, v = (t.repeat_interleave(rep, dim=2) for t in (k_sem, k_geo, v))
    s = (torch.einsum("bihd,bjhd->bhij", q_sem, k_sem) / math.sqrt(ds)
         + torch.einsum("bihd,bjhd->bhij", q_geo, k_geo) / math.sqrt(dg))
    s = s.masked_fill(~allowed_mask(T, T, True), float("-inf"))
    if c.null_attn:
        s_null = (torch.einsum("bihd,hd->bhi", q_sem, module.k_sem_null.repeat_interleave(rep, 0)) / math.sqrt(ds)
                  + torch.einsum("bihd,hd->bhi", q_geo, module.k_geo_null.repeat_interleave(rep, 0)) / math.sqrt(dg))
        s = torch.cat((s_null[..., None], s), dim=-1)
        v_null = module.v_null.repeat_interleave(rep, 0)[None, None].expand(B, 1, h, dv)
        v = torch.cat((v_null, v), dim=1)
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhij,bjhd->bihd", p, v).reshape(B, T, h * dv)
    return module.out_proj(o)


DBA_CASES = {
    "plain": {},
    "gate_null_temp": {"decoupled_gate": True, "null_attn": True, "learned_temp": True},
    "dynamic_gate_grouped": {"decoupled_gate": True, "decoupled_gate_dynamic": True, "kv_groups": 2,
                             "null_attn": True, "bias": True},
    "tied_qk_attn_dim": {"tie_qk": True, "attn_dim": 8, "decoupled_gate": True},
}


@pytest.mark.parametrize("case", list(DBA_CASES))
def test_dba_matches_the_direct_float64_formula(case):
    c, module = build(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=16, **DBA_CASES[case])
    with torch.no_grad():
        for name in ("gate_bias", "temp", "k_sem_null", "k_geo_null", "v_null"):
            if hasattr(module, name):
                getattr(module, name).normal_()  # away from the zero init, so the terms matter
        if hasattr(module, "gate_proj"):
            module.gate_proj.weight.normal_(std=0.3)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        assert_rel(module(x, caramba.Context()), dba_ref(module, c, x), 1e-6)


def test_dba_with_q_chunk_equals_dba_without():
    _, whole = build(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=16, null_attn=True)
    _, chunked = build(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=16, null_attn=True, q_chunk=2)
    chunked.load_state_dict(whole.state_dict())
    x = torch.randn(1, 7, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), whole(x))


def test_kv_elements_per_token_count_values():
    def kv(**f):
        return RT.parse(NodeConfig, {"type": "AttentionLayer", **f}).kv_elements_per_token()

    llama = {"d_model": 2048, "n_heads": 32}
    assert kv(**llama, n_kv_heads=8, mode="gqa") == 2 * 8 * 64  # 1024
    assert kv(**llama) == 2 * 2048
    # reference.md §2.2: the preset's DBA student caches more than its GQA teacher because of V
    assert kv(**llama, mode="decoupled", sem_dim=128, geo_dim=256) == 128 + 256 + 2048
    assert kv(**llama, mode="decoupled", sem_dim=32, geo_dim=128, attn_dim=512) == 672
    # key/value groups shrink every cached tensor by n_heads / kv_groups
    assert kv(**llama, mode="decoupled", sem_dim=128, geo_dim=256, kv_groups=8) == (128 + 256 + 2048) // 4


def test_dba_cache_fields_follow_kv_groups():
    _, module = build(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=16, attn_dim=8, kv_groups=2)
    assert module.cache_fields() == {"k_sem": (2, 2), "k_geo": (2, 4), "v": (2, 2)}


# -- caches -------------------------------------------------------------------------------

CACHED = {
    "standard": {"mode": "standard"},
    "gqa": {"mode": "gqa", "n_kv_heads": 2},
    "dba": {"mode": "decoupled", "sem_dim": 8, "geo_dim": 16, "null_attn": True, "decoupled_gate": True},
    "dba_grouped": {"mode": "decoupled", "sem_dim": 8, "geo_dim": 16, "kv_groups": 2},
}


@pytest.mark.parametrize("case", list(CACHED))
def test_cached_decoding_equals_an_uncached_forward(case):
    _, module = build(d_model=16, n_heads=4, **CACHED[case])
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    with torch.no_grad():
        full = module(x, caramba.Context())
        cache = StaticKVCache(module.cache_fields(), batch=2, max_len=16, dtype=torch.float64)
        ctx = caramba.Context(caches={"attn": cache})
        parts = [module(x[:, :4], ctx)]  # prefill
        for t in range(4, 9):  # one token at a time
            ctx.pos_offset = cache.length
            parts.append(module(x[:, t:t + 1], ctx))
    assert cache.length == 9
    assert_rel(torch.cat(parts, dim=1), full, 1e-10)


def test_a_cache_out_of_step_with_pos_offset_is_an_error():
    _, module = build(d_model=8, n_heads=2)
    cache = StaticKVCache(module.cache_fields(), batch=1, max_len=8, dtype=torch.float64)
    ctx = caramba.Context(caches={"attn": cache})
    module(torch.randn(1, 3, 8, dtype=torch.float64), ctx)
    with pytest.raises(CarambaError, match="pos_offset"):
        module(torch.randn(1, 1, 8, dtype=torch.float64), ctx)  # pos_offset still 0


# -- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"n_kv_heads": 1, "mode": "gqa", "local_window": 2},
    {"mode": "decoupled", "sem_dim": 4, "geo_dim": 4, "null_attn": True, "decoupled_gate": True,
     "decoupled_gate_dynamic": True, "learned_temp": True},
])
def test_gradcheck(fields):
    _, module = build(d_model=4, n_heads=2, **fields)
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: module(t, caramba.Context()), (x,))


# -- validation -------------------------------------------------------------------------------

def problems(**fields):
    """Field invariants fail the decode; a config that decodes is then shape-checked on a width-16 input."""
    try:
        config = RT.parse(NodeConfig, {"type": "AttentionLayer", **fields})
    except caramba.ManifestError as err:
        return [(p.path.rsplit(".", 1)[-1], p.message) for p in err.problems]
    out = []
    caramba.Scope(lambda path, msg, hint: out.append((path[-1], msg))).infer(config, caramba.Shape("B", "T", 16))
    return out


def test_head_and_group_invariants_fail_the_decode_so_a_parsed_config_always_builds():
    with pytest.raises(caramba.ManifestError, match=r"n_kv_heads  n_kv_heads \(3\) does not divide n_heads \(4\)"):
        RT.parse(NodeConfig, {"type": "AttentionLayer", "d_model": 16, "n_heads": 4, "n_kv_heads": 3})


def test_validation_names_the_field_at_fault():
    assert problems(d_model=16, n_heads=3)[0][0] == "d_model"
    assert problems(d_model=16, n_heads=4, n_kv_heads=3)[0][0] == "n_kv_heads"
    assert problems(d_model=24, n_heads=4)[0][0] == "d_model"  # width mismatch with the input (16)
    assert problems(d_model=16, n_heads=8, attn_dim=24)[0][0] == "n_heads"  # odd RoPE head dim 3
    assert problems(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=4)[0][0] == "geo_dim"
    assert problems(d_model=16, n_heads=4, mode="decoupled", geo_dim=8)[0][0] == "sem_dim"
    assert problems(d_model=16, n_heads=4, null_attn=True)[0][0] == "null_attn"
    assert problems(d_model=16, n_heads=4, mode="decoupled", sem_dim=8, geo_dim=8, kv_groups=2,
                    tie_qk=True)[0][0] == "tie_qk"
    assert problems(d_model=16, n_heads=4, n_kv_heads=2, mode="gqa") == []


# -- conformance ------------------------------------------------------------------------------

class TestStandardAttentionConformance(LayerConformance):
    plugins = [layers_plugin]
    spec_module = "caramba_layers.specs.attention"
    config = {"type": "AttentionLayer", "d_model": 8, "n_heads": 2, "bias": True, "learned_temp": True}


class TestGQAAttentionConformance(LayerConformance):
    plugins = [layers_plugin]
    config = {"type": "AttentionLayer", "d_model": 8, "n_heads": 4, "n_kv_heads": 2, "mode": "gqa",
              "q_chunk": 2, "local_window": 3}


class TestDBAAttentionConformance(LayerConformance):
    plugins = [layers_plugin]
    config = {"type": "AttentionLayer", "d_model": 8, "n_heads": 2, "mode": "decoupled", "sem_dim": 4,
              "geo_dim": 4, "null_attn": True, "decoupled_gate": True, "decoupled_gate_dynamic": True,
              "kv_groups": 1}
