"""Hugging Face configs that the round-trip tests do not produce: every defaulted field, more of the Llama family.

Any ``config.json`` transformers accepts either imports to the same logits (1e-5, fp32) or is
refused with a CheckpointError: never a silent difference. The configs here are *minimal* (only
the sizes), so every other field takes transformers' default for its ``model_type``, the way
hand-written and older configs do.
"""

from __future__ import annotations

import json

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba import CheckpointError
from caramba.nn import Builder
from caramba_layers.hf import export, from_pretrained
from caramba_layers.specs.hf import HF_DEFAULTS, model_config_from_hf
from caramba_layers.specs.language_model import LanguageModelConfig

transformers = pytest.importorskip("transformers")

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])
SIZES = {"vocab_size": 61, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}


def reference_and_folder(tmp_path, config: dict):
    """transformers' model for ``config`` (its defaults fill the rest), saved with ``config`` as config.json."""
    kind = config["model_type"]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(kind, **{k: v for k, v in config.items() if k != "model_type"}),
        dtype=torch.float32).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a wrongly mapped one shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    folder = tmp_path / kind
    model.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config))  # only what the test names
    return model, folder


def assert_same_logits(reference, model, tol=1e-5):
    ids = torch.randint(0, 61, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
        got = model({"input_ids": ids})["logits"]
    err = ((got - expected).abs().max() / expected.abs().max()).item()
    assert err < tol, f"relative error {err:.3g} >= {tol}"


@pytest.mark.parametrize("kind", sorted(HF_DEFAULTS))
def test_importer_defaults_are_transformers_defaults(kind):
    config = transformers.AutoConfig.for_model(kind, **SIZES)
    ours = HF_DEFAULTS[kind]
    assert ours["max_position_embeddings"] == config.max_position_embeddings
    assert ours["rope_theta"] == config.rope_parameters["rope_theta"]
    assert ours["rms_norm_eps"] == config.rms_norm_eps
    assert ours["hidden_act"] == config.hidden_act
    assert ours["tie_word_embeddings"] == config.tie_word_embeddings
    assert ours["sliding_window"] == getattr(config, "sliding_window", None)
    bare = transformers.AutoConfig.for_model(kind, **{k: v for k, v in SIZES.items() if k != "num_key_value_heads"})
    assert (ours["num_key_value_heads"] or SIZES["num_attention_heads"]) == bare.num_key_value_heads
    assert ours["head_dim"] is None  # hidden_size // num_attention_heads in all three
    if kind == "llama":
        assert (ours["attention_bias"], ours["mlp_bias"]) == (config.attention_bias, config.mlp_bias)


SCALINGS = {
    "yarn_without_original_length": {"rope_type": "yarn", "factor": 4.0},
    "llama3_without_original_length": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0},
    "yarn_with_mscale": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                         "mscale": 0.707, "mscale_all_dim": 1.0},
    "linear": {"rope_type": "linear", "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0},
}


@pytest.mark.parametrize("scaling", SCALINGS.values(), ids=list(SCALINGS))
@pytest.mark.parametrize("max_positions", [None, 64])
def test_rope_scaling_matches_transformers_with_its_defaults(tmp_path, scaling, max_positions):
    config = {"model_type": "llama", **SIZES, "rope_scaling": scaling}
    if max_positions:
        config["max_position_embeddings"] = max_positions
    reference, folder = reference_and_folder(tmp_path, config)
    assert_same_logits(reference, from_pretrained(folder).eval())


@pytest.mark.parametrize("config", [
    {"model_type": "qwen2", **SIZES},
    {"model_type": "qwen2", **SIZES, "tie_word_embeddings": True, "sliding_window": 4096,
     "use_sliding_window": False},
    {"model_type": "mistral", **SIZES},
    {"model_type": "llama", **SIZES, "hidden_act": "gelu_pytorch_tanh"},
    {"model_type": "llama", **SIZES, "attention_bias": True, "head_dim": 16},
], ids=["qwen2", "qwen2_tied_with_unused_window", "mistral_default_window", "gelu_pytorch_tanh",
        "llama_biased_wide_heads"])
def test_llama_family_imports_with_transformers_logits_and_exports_back(tmp_path, config):
    reference, folder = reference_and_folder(tmp_path, config)
    model = from_pretrained(folder).eval()
    assert_same_logits(reference, model)
    out = export(model, tmp_path / "exported")
    assert json.loads((out / "config.json").read_text())["model_type"] == config["model_type"] or (
        config["model_type"] == "mistral")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert_same_logits(reloaded, model)


@pytest.mark.parametrize("config, message", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "lacks low_freq_factor, high_freq_factor"),
    ({"rope_scaling": {"rope_type": "linear"}}, "lacks factor"),
    ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "'longrope' is not supported"),
    ({"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window"),
    ({"model_type": "gemma"}, "model_type 'gemma' is not a supported"),
    ({"hidden_act": "gelu_new"}, "hidden_act 'gelu_new' is not supported"),
], ids=["llama3_without_bands", "linear_without_factor", "longrope", "qwen2_sliding", "gemma", "gelu_new"])
def test_configs_that_would_differ_are_refused_by_name(config, message):
    with pytest.raises(CheckpointError, match=message):
        model_config_from_hf({"model_type": "llama", **SIZES} | config)


def _lm(model: dict):
    return RT.create("system", "system.language_model", RT.parse(LanguageModelConfig, {"model": model}),
                     builder=Builder(RT))


def _block(attention: dict) -> list:
    return [{"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": 32},
                                                    {"type": "AttentionLayer", "d_model": 32, **attention}]},
            {"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": 32},
                                                    {"type": "SwiGLULayer", "d_model": 32, "d_ff": 48}]}]


@pytest.mark.parametrize("attention, kv_heads", [
    ({"n_heads": 4, "n_kv_heads": 2, "mode": "gqa"}, 2),
    ({"n_heads": 4, "n_kv_heads": 2, "mode": "standard"}, 2),
    ({"n_heads": 4}, 4),
], ids=["gqa", "standard_mode_with_fewer_kv_heads", "n_kv_heads_omitted"])
@pytest.mark.parametrize("head", [False, True], ids=["system_adds_head", "head_written"])
def test_llama_layouts_export_by_structure_whatever_their_spelling(tmp_path, attention, kv_heads, head):
    layers = [{"type": "NestedTopology", "repeat": 2, "layers": _block(attention)},
              {"type": "RMSNormLayer", "d_model": 32}]
    if head:
        layers.append({"type": "LinearLayer", "d_in": 32, "d_out": 61, "bias": False})
    torch.manual_seed(0)
    model = _lm({"type": "TransformerModel", "embedder": {"type": "token", "vocab_size": 61, "d_model": 32},
                 "topology": {"type": "StackedTopology", "layers": layers}}).eval()
    out = export(model, tmp_path / "exported")
    assert json.loads((out / "config.json").read_text())["num_key_value_heads"] == kv_heads
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert_same_logits(reloaded, model)


def test_a_layernorm_block_is_refused_with_the_reason(tmp_path):
    block = _block({"n_heads": 4})
    block[1]["layers"][0]["type"] = "LayerNormLayer"
    model = _lm({"type": "TransformerModel", "embedder": {"type": "token", "vocab_size": 61, "d_model": 32},
                 "topology": {"type": "StackedTopology", "layers": [*block, {"type": "RMSNormLayer", "d_model": 32}]}})
    with pytest.raises(CheckpointError, match=r"block 0 is not \[RMSNorm, attention\] \+ \[RMSNorm, gated MLP\]"):
        export(model, tmp_path / "exported")
