"""Cached generation reproduces uncached full forwards, through rollback and continuation."""

from __future__ import annotations

import pytest
import torch

from caramba.errors import CarambaError
from caramba_infer import GenerateConfig, Generator, create_caches
from caramba_infer.caches import SnapshotState
from caramba_infer.testing import TinyLMConfig
from caramba_infer.testing.models import TinyLM

MIXES = {
    "standard": ["standard", "standard"],
    "gqa": ["gqa", "gqa"],
    "decoupled": ["decoupled", "decoupled"],
    "ssm": ["ssm", "ssm"],
    "hybrid": ["decoupled", "ssm", "gqa"],
}


def tiny(mix: str, **kw) -> TinyLM:
    cfg = TinyLMConfig(mixers=MIXES[mix], n_heads=4, n_kv_heads=2, d_model=32, **kw)
    return TinyLM(cfg).eval()


@torch.no_grad()
def full_last_logits(model: TinyLM, history: torch.Tensor) -> torch.Tensor:
    return model({"input_ids": history})["logits"][:, -1]


def decode_and_check(gen: Generator, model: TinyLM, steps: int, prompt: torch.Tensor | None) -> float:
    """Greedy-decode ``steps`` tokens, checking each step's logits against a full forward."""
    worst = 0.0
    cfg = GenerateConfig(max_new_tokens=steps, temperature=0)
    for token in gen.stream(prompt, cfg):
        # logits that chose `token` are those after the cached history
        ref = full_last_logits(model, gen.tokens)
        worst = max(worst, float((gen.last_logits - ref).abs().max()))
        assert torch.equal(token, ref.argmax(-1))
    return worst


@pytest.mark.parametrize("mix", list(MIXES))
def test_cached_decode_matches_full_forward_over_50_tokens(mix):
    torch.manual_seed(0)
    model = tiny(mix)
    gen = Generator(model, max_len=96, batch_size=2)
    prompt = torch.randint(1, 256, (2, 9))
    assert decode_and_check(gen, model, 50, prompt) < 1e-5
    assert gen.length == 9 + 50


@pytest.mark.parametrize("mix", list(MIXES))
def test_rollback_then_decode_matches_full_forward(mix):
    torch.manual_seed(1)
    model = tiny(mix)
    gen = Generator(model, max_len=128)
    prompt = torch.randint(1, 256, (1, 12))
    gen.generate(prompt, GenerateConfig(max_new_tokens=20, temperature=0.9, seed=3))
    before = gen.history.clone()
    gen.rollback(15)  # into the middle of the generated tokens
    assert torch.equal(gen.history, before[:, :-15])
    assert decode_and_check(gen, model, 50, None) < 1e-5


def test_rollback_into_the_prompt_recomputes_ssm_state_exactly():
    torch.manual_seed(2)
    model = tiny("hybrid")
    gen = Generator(model, max_len=128, keep_snapshots=4)
    prompt = torch.randint(1, 256, (1, 30))
    gen.generate(prompt, GenerateConfig(max_new_tokens=10, temperature=0))
    gen.rollback(25)  # position 15: inside the prompt, no snapshot there
    assert gen.length == 15
    assert decode_and_check(gen, model, 50, None) < 1e-5


@pytest.mark.parametrize("mix", ["gqa", "decoupled", "ssm"])
def test_continuing_a_conversation_prefills_only_the_new_tokens(mix):
    torch.manual_seed(3)
    model = tiny(mix)
    fed: list[int] = []
    model.register_forward_pre_hook(lambda m, args: fed.append(args[0]["input_ids"].shape[1]))
    gen = Generator(model, max_len=128)
    first = gen.generate(torch.randint(1, 256, (1, 8)), GenerateConfig(max_new_tokens=10, temperature=0))
    reply = torch.randint(1, 256, (1, 5))
    fed.clear()
    worst = decode_and_check(gen, model, 50, reply)
    fed_by_generator = fed[::2]  # every other call is the reference forward in decode_and_check
    # pending sampled token + 5 new tokens in one prefill, then single tokens
    assert fed_by_generator[0] == 6 and set(fed_by_generator[1:]) == {1}
    assert worst < 1e-5
    assert gen.length == 8 + first.shape[1] + 5 + 50


def test_stream_yields_what_generate_returns():
    model = tiny("standard")
    prompt = torch.randint(1, 256, (2, 6), generator=torch.Generator().manual_seed(0))
    cfg = GenerateConfig(max_new_tokens=12, temperature=0.8, top_k=20, top_p=0.9, seed=7)
    a = Generator(model, max_len=32, batch_size=2).generate(prompt, cfg)
    b = torch.stack(list(Generator(model, max_len=32, batch_size=2).stream(prompt, cfg)), dim=1)
    assert torch.equal(a, b)


def test_stop_tokens_end_generation_and_pad_finished_rows():
    model = tiny("standard")
    gen = Generator(model, max_len=64, batch_size=2)
    prompt = torch.randint(1, 256, (2, 4), generator=torch.Generator().manual_seed(1))
    greedy = Generator(model, max_len=64, batch_size=2).generate(
        prompt, GenerateConfig(max_new_tokens=20, temperature=0))
    stop = int(greedy[0, 2])  # row 0 emits this at step 2
    out = gen.generate(prompt, GenerateConfig(max_new_tokens=20, temperature=0, stop_tokens=[stop]))
    row0 = out[0].tolist()
    assert row0[: row0.index(stop) + 1] == greedy[0, : row0.index(stop) + 1].tolist()
    assert all(t == stop for t in row0[row0.index(stop):])
    assert (out == stop).any(dim=1).all()  # generation ended because every row stopped
    assert out.shape[1] < 20 or bool((out[:, -1] == stop).all())


def test_caches_are_keyed_by_node_path_and_hold_each_layers_fields():
    model = tiny("hybrid")
    caches = create_caches(model, "fp16", batch=2, max_len=16)
    assert set(caches) == {"blocks.0.mixer", "blocks.1.mixer", "blocks.2.mixer"}
    assert set(caches["blocks.0.mixer"].buffers) == {"k_sem", "k_geo", "v"}
    assert caches["blocks.0.mixer"].buffers["k_sem"].shape == (2, 16, 4, 2)
    assert caches["blocks.0.mixer"].buffers["v"].dtype == torch.float16
    assert isinstance(caches["blocks.1.mixer"], SnapshotState)
    assert caches["blocks.2.mixer"].buffers["k"].shape == (2, 16, 2, 8)


def test_layers_called_out_of_declaration_order_still_find_their_caches():
    torch.manual_seed(4)
    model = tiny("hybrid")
    model.blocks = torch.nn.ModuleList(reversed(list(model.blocks)))  # run order != creation order
    gen = Generator(model, max_len=64)
    assert decode_and_check(gen, model, 10, torch.randint(1, 256, (1, 5))) < 1e-5


def test_a_layer_that_ignores_its_cache_is_reported_by_path():
    model = tiny("standard")
    model.blocks[1].mixer.forward = lambda x, ctx=None: torch.zeros_like(x)
    gen = Generator(model, max_len=16)
    with pytest.raises(CarambaError, match="blocks.1.mixer"):
        gen.prefill(torch.randint(1, 256, (1, 4)))


def test_overflowing_max_len_is_a_clear_error():
    gen = Generator(tiny("standard"), max_len=8)
    with pytest.raises(CarambaError, match="max_len=8"):
        gen.prefill(torch.randint(1, 256, (1, 9)))


@pytest.mark.parametrize("kind,tol", [("fp16", 5e-3), ("bf16", 5e-2), ("q8_0", 5e-2)])
def test_reduced_precision_caches_stay_close_to_fp32(kind, tol):
    torch.manual_seed(5)
    model = tiny("decoupled")
    prompt = torch.randint(1, 256, (1, 16))
    ref = Generator(model, max_len=32).prefill(prompt)
    got = Generator(model, max_len=32, cache_kind=kind).prefill(prompt)
    assert 0 < float((got - ref).abs().max()) < tol * float(ref.abs().max())
