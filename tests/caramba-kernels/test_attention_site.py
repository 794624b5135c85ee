"""AttentionLayer decoding through the bound Triton kernel gives what its own torch path gives."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
import caramba
import caramba_layers.plugin as layers_plugin
from caramba import Context, NodeConfig, select_kernels
from caramba_infer import plugin as infer_plugin
from caramba_infer.caches import cache_kind
from caramba_kernels import plugin as kernels_plugin

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RT = caramba.Runtime(autoload=False, plugins=[layers_plugin, infer_plugin, kernels_plugin])
LAYERS = {
    "gqa": {"d_model": 64, "n_heads": 4, "n_kv_heads": 2, "mode": "gqa"},
    "dba_gated": {"d_model": 48, "n_heads": 3, "mode": "decoupled", "sem_dim": 48, "geo_dim": 48,
                  "attn_dim": 96, "decoupled_gate": True, "decoupled_gate_dynamic": True},
}


def build(fields):
    torch.manual_seed(0)
    module = RT.build(RT.parse(NodeConfig, {"type": "AttentionLayer", **fields}), "attn")
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module.to(DEVICE, torch.float16).eval()


@pytest.mark.parametrize("kind", ["fp16", "q8_0", "q4_0"])
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_cached_decode_through_the_kernel_matches_the_torch_path(layer, kind):
    reference, fused = build(LAYERS[layer]), build(LAYERS[layer])
    assert select_kernels(reference, RT, pins={"*": "torch"})["ops"] == {"decode_attention": "torch"}
    assert select_kernels(fused, RT, pins={"decode_attention": "triton"})["ops"] == {"decode_attention": "triton"}
    calls = []
    kernel = fused._decode_kernel
    fused.use_kernel("decode_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    x = torch.randn(2, 9, LAYERS[layer]["d_model"], device=DEVICE, dtype=torch.float16)
    caches = [cache_kind(kind, RT).create(reference.cache_fields(), 2, 16, DEVICE) for _ in range(2)]
    outs = []
    for model, cache in zip((reference, fused), caches):
        with torch.no_grad():
            steps = [model(x[:, :6], Context(caches={"attn": cache}))[:, -1:]]  # prefill: the torch path
            for t in range(6, 9):
                steps.append(model(x[:, t:t + 1], Context(caches={"attn": cache}, pos_offset=t)))
        outs.append(torch.cat(steps, 1))
    assert caches[1].length == 9 and len(calls) == 3  # every one-token step ran the kernel
    assert (outs[0].float() - outs[1].float()).abs().max() < 3e-3
