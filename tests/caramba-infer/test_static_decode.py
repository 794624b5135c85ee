"""Static-shape decoding: greedy tokens equal transformers', buckets, chunked prefill and padded batches are lossless.

The GPU side (compiled, CUDA-graph captured steps) runs the same code with ``compile="auto"``;
``benchmarks/decode_gpu.py`` checks it there against transformers in one process.
"""

from __future__ import annotations

import pytest
import torch

from caramba.errors import CarambaError
from caramba_infer import GenerateConfig, Generator
from caramba_infer.generate import decode_buckets

transformers = pytest.importorskip("transformers")
from caramba_layers.hf import from_pretrained  # noqa: E402

from .test_real_layers import V, build  # noqa: E402

GREEDY = GenerateConfig(max_new_tokens=128, temperature=0)

# GQA, MQA, llama3 RoPE scaling (past original_max_position_embeddings), and a sliding window
# narrower than the conversation, so each setting changes the tokens if decoding gets it wrong.
HF_CONFIGS = {
    "gqa": ("llama", {"num_key_value_heads": 2}),
    "mqa": ("llama", {"num_key_value_heads": 1}),
    "llama3_rope": ("llama", {"num_key_value_heads": 2, "rope_scaling": {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}}),
    "sliding_window": ("mistral", {"num_key_value_heads": 2, "sliding_window": 24}),
}


def hf_model(tmp_path, family: str, extra: dict):
    common = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                  eos_token_id=None)  # no end-of-sequence token: both sides generate all 128 tokens
    if family == "mistral":
        config, cls = transformers.MistralConfig(**common, **extra), transformers.MistralForCausalLM
    else:
        config, cls = transformers.LlamaConfig(**common, **extra), transformers.LlamaForCausalLM
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # sharper logits than the init's, so greedy choices are not near-ties
        for p in model.parameters():
            p.mul_(3.0)
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


# On a GPU the same tests run the compiled, CUDA-graph captured step (compile="auto").
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_greedy_tokens_equal_transformers_over_128_tokens(tmp_path, name, device):
    reference, folder = hf_model(tmp_path, *HF_CONFIGS[name])
    reference = reference.to(device)
    ours = from_pretrained(folder, device=device).eval()
    prompt = torch.randint(0, 101, (1, 12), generator=torch.Generator().manual_seed(7)).to(device)
    with torch.no_grad():
        expected = reference.generate(prompt, max_new_tokens=128, do_sample=False, pad_token_id=0)[:, 12:]
    gen = Generator(ours, max_len=12 + 128, buckets=[16, 64])
    assert gen.compiled == (device == "cuda")
    got = gen.generate(prompt, GREEDY)
    assert got.shape == expected.shape == (1, 128)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("mixer", ["gqa", "decoupled", "ssm"])
def test_bucketed_decode_equals_one_span_decode(mixer):
    model = build(mixer, mixer, seed=3)
    prompt = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(0))
    cfg = GenerateConfig(max_new_tokens=60, temperature=0)
    bucketed = Generator(model, max_len=72, batch_size=2, buckets=[8, 16, 32])
    one_span = Generator(model, max_len=72, batch_size=2, buckets=[])
    assert bucketed.buckets == [8, 16, 32, 72] and one_span.buckets == [72]
    assert torch.equal(bucketed.generate(prompt, cfg), one_span.generate(prompt, cfg))
    torch.testing.assert_close(bucketed.last_logits, one_span.last_logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mixer", ["gqa", "decoupled", "ssm"])
def test_chunked_prefill_equals_one_prefill(mixer):
    model = build(mixer, "gqa", seed=4)
    prompt = torch.randint(0, V, (1, 37), generator=torch.Generator().manual_seed(1))
    whole = Generator(model, max_len=64)
    chunked = Generator(model, max_len=64, prefill_chunk=8, buckets=[16, 32])
    torch.testing.assert_close(chunked.prefill(prompt), whole.prefill(prompt), rtol=0, atol=1e-5)
    cfg = GenerateConfig(max_new_tokens=20, temperature=0)
    assert torch.equal(chunked.generate(None, cfg), whole.generate(None, cfg))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mixer", ["standard", "gqa", "decoupled_grouped", "ssm"])
def test_left_padded_batch_equals_each_prompt_alone(mixer, device):
    model = build(mixer, "gqa", seed=5).to(device)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(1, V, (n,), generator=g) for n in (3, 11, 7)]
    cfg = GenerateConfig(max_new_tokens=30, temperature=0)
    batch = Generator(model, max_len=48, batch_size=3, buckets=[16]).generate_batch(prompts, cfg)
    for prompt, row in zip(prompts, batch, strict=True):
        alone = Generator(model, max_len=48).generate(prompt[None].to(device), cfg)[0]
        assert torch.equal(row, alone.cpu())


def test_batch_rows_stop_at_their_own_stop_token_and_length():
    model = build("gqa", seed=6)
    prompts = [[5, 6, 7], [9, 10]]
    free = Generator(model, max_len=40, batch_size=2).generate_batch(prompts, GenerateConfig(max_new_tokens=20,
                                                                                            temperature=0))
    stop = int(free[0][4])  # the fifth token of row 0 becomes a stop token
    cfg = GenerateConfig(max_new_tokens=20, temperature=0, stop_tokens=[stop])
    rows = Generator(model, max_len=40, batch_size=2).generate_batch(prompts, cfg, max_new_tokens=[20, 6])
    first = next(i for i, tok in enumerate(free[0].tolist()) if tok == stop)
    assert torch.equal(rows[0], free[0][: first + 1])
    expected_1 = free[1][:6].tolist()
    if stop in expected_1:
        expected_1 = expected_1[: expected_1.index(stop) + 1]
    assert rows[1].tolist() == expected_1


def test_rollback_past_the_kept_snapshots_then_decoding_again_gives_the_same_tokens():
    model = build("gqa", "ssm", seed=7)
    gen = Generator(model, max_len=64, keep_snapshots=4, buckets=[16, 32])
    prompt = torch.randint(0, V, (1, 9), generator=torch.Generator().manual_seed(3))
    cfg = GenerateConfig(max_new_tokens=20, temperature=0)
    first = gen.generate(prompt, cfg)
    gen.rollback(20)  # back to the prompt, past the kept SSM snapshots: states are replayed
    assert gen.length == 9
    assert torch.equal(gen.generate(None, cfg), first)


def test_decode_buckets_are_powers_of_two_ending_at_max_len():
    assert decode_buckets(1000) == [256, 512, 1000]
    assert decode_buckets(256) == [256]
    assert decode_buckets(100, [8, 50, 400]) == [8, 50, 100]


def test_generate_batch_refuses_a_wrong_number_of_prompts():
    gen = Generator(build("gqa"), max_len=16, batch_size=2)
    with pytest.raises(CarambaError, match="2 prompts|batch_size=2"):
        gen.generate_batch([[1, 2]])
    with pytest.raises(CarambaError, match="empty prompt"):
        gen.generate_batch([[1, 2], []])
