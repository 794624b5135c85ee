"""Cached decoding of caramba-layers' own AttentionLayer and SSMLayer inside system.language_model."""

from __future__ import annotations

import pytest
import torch

import caramba
from caramba.graph import Builder
from caramba_infer import GenerateConfig, Generator
from caramba_infer import plugin as infer_plugin
from caramba_infer.benchmarks import Memory
from caramba_infer.specs import MemoryConfig

layers_plugin = pytest.importorskip("caramba_layers.plugin")
from caramba_layers.specs.language_model import LanguageModelConfig  # noqa: E402

D, V = 32, 97
MIXERS = {
    "standard": {"type": "AttentionLayer", "d_model": D, "n_heads": 4},
    "gqa": {"type": "AttentionLayer", "d_model": D, "n_heads": 4, "n_kv_heads": 2, "mode": "gqa"},
    "decoupled": {"type": "AttentionLayer", "d_model": D, "n_heads": 4, "mode": "decoupled", "sem_dim": 8,
                  "geo_dim": 16, "attn_dim": 16},
    "decoupled_grouped": {"type": "AttentionLayer", "d_model": D, "n_heads": 4, "mode": "decoupled", "sem_dim": 8,
                          "geo_dim": 16, "kv_groups": 2, "decoupled_gate": True},
    "ssm": {"type": "SSMLayer", "d_model": D, "d_state": 8, "d_conv": 4},
}


def runtime() -> caramba.Runtime:
    return caramba.Runtime(autoload=False, plugins=[layers_plugin, infer_plugin])


def build(*mixers: str, seed: int = 0):
    def block(kind):
        return [{"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": D}, MIXERS[kind]]},
                {"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": D},
                                                        {"type": "SwiGLULayer", "d_model": D, "d_ff": 64}]}]
    layers = [layer for kind in mixers for layer in block(kind)] + [{"type": "RMSNormLayer", "d_model": D}]
    rt = runtime()
    config = rt.parse(LanguageModelConfig, {"model": {
        "embedder": {"type": "token", "vocab_size": V, "d_model": D},
        "topology": {"type": "StackedTopology", "layers": layers}, "tied_embeddings": False}})
    torch.manual_seed(seed)
    model = rt.get("system", "system.language_model").load()(config, Builder(rt))
    with torch.no_grad():  # make the SSM's skip and the attention outputs matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def check(gen: Generator, model, steps: int, prompt=None) -> float:
    worst = 0.0
    for token in gen.stream(prompt, GenerateConfig(max_new_tokens=steps, temperature=0)):
        with torch.no_grad():
            ref = model({"input_ids": gen.tokens})["logits"][:, -1]
        worst = max(worst, float((gen.last_logits - ref).abs().max()))
        assert torch.equal(token, ref.argmax(-1))
    return worst


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_cached_decode_of_real_layers_matches_full_forward(mixer):
    model = build(mixer, mixer)
    gen = Generator(model, max_len=80)
    assert set(gen.caches) == {"topology.layers.0.layers.1", "topology.layers.2.layers.1"}
    prompt = torch.randint(0, V, (1, 7), generator=torch.Generator().manual_seed(1))
    assert check(gen, model, 50, prompt) < 1e-5


def test_real_hybrid_model_after_rollback_and_continuation_matches_full_forward():
    model = build("decoupled", "ssm", "gqa", seed=2)
    gen = Generator(model, max_len=160, keep_snapshots=8)
    prompt = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(3))
    gen.generate(prompt, GenerateConfig(max_new_tokens=20, temperature=1.0, seed=0))
    gen.rollback(24)  # back into the prompt: SSM states are recomputed
    assert check(gen, model, 25) < 1e-5
    reply = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(4))
    assert check(gen, model, 50, reply) < 1e-5


class _Session:
    def __init__(self) -> None:
        self.runtime = runtime()

    def label(self, role: str) -> str:
        return role


@pytest.mark.parametrize("mixer", ["standard", "gqa", "decoupled", "decoupled_grouped"])
def test_measured_kv_bytes_per_token_match_the_analytic_formula(mixer):
    model = build(mixer, mixer, mixer)
    cfg = MemoryConfig(sequence_lengths=[16, 24], batch_sizes=[1, 2], cache_kinds=["fp32", "fp16", "bf16"],
                       measure_peak=False)
    rows = Memory(cfg).run(_Session(), {"student": model}).rows
    assert len(rows) == 3 * 2 * 2
    elements = model.config.kv_elements_per_token()
    # hand-derived per-layer elements: standard/GQA 2·kv·hd, DBA g·(d_s + d_g + d_v)
    expected = {"standard": 2 * 4 * 8, "gqa": 2 * 2 * 8, "decoupled": 4 * (2 + 4 + 4),
                "decoupled_grouped": 2 * (2 + 4 + 8)}[mixer]
    assert elements == 3 * expected
    for row in rows:
        assert row["analytic_kv_bytes_per_token"] == elements * {"fp32": 4, "fp16": 2, "bf16": 2}[row["cache_kind"]]
        assert abs(row["kv_bytes_per_token"] / row["analytic_kv_bytes_per_token"] - 1) < 0.01
        assert row["kv_ok"]
