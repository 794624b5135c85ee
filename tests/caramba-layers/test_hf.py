"""Hugging Face Llama import/export against transformers' own LlamaForCausalLM."""

from __future__ import annotations

import json

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.errors import CheckpointError
from caramba_layers.hf import HFCheckpoint, export, from_pretrained, load_state
from caramba_layers.specs.hf import hf_config_from_model, model_config_from_hf

transformers = pytest.importorskip("transformers")

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}


def tiny_llama(tmp_path, *, tied, scaling=LLAMA3_SCALING, bias=False, shard=False):
    config = transformers.LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=50000.0,
        rope_scaling=scaling, tie_word_embeddings=tied, attention_bias=bias, mlp_bias=bias)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms, so a wrongly mapped norm weight shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    folder = tmp_path / "hf"
    model.save_pretrained(folder, max_shard_size="20KB" if shard else "5GB")
    return model, folder


def ids(seed=0):
    return torch.randint(0, 61, (2, 11), generator=torch.Generator().manual_seed(seed))


def assert_rel(actual, expected, tol):
    err = ((actual - expected).abs().max() / expected.abs().max()).item()
    assert err < tol, f"relative error {err:.3g} >= {tol}"


@pytest.mark.parametrize("tied", [False, True])
def test_imported_llama_gives_transformers_logits(tmp_path, tied):
    reference, folder = tiny_llama(tmp_path, tied=tied)
    model = from_pretrained(folder).eval()
    x = ids()
    with torch.no_grad():
        expected = reference(x).logits
        got = model({"input_ids": x})["logits"]
    assert_rel(got, expected, 1e-5)
    assert (model.head.weight is model.embedder.embedding.weight) == tied


def test_attention_bias_and_sharded_checkpoints_import(tmp_path):
    reference, folder = tiny_llama(tmp_path, tied=False, scaling=None, bias=True, shard=True)
    assert (folder / "model.safetensors.index.json").exists()
    model = from_pretrained(folder).eval()
    with torch.no_grad():
        assert_rel(model({"input_ids": ids(1)})["logits"], reference(ids(1)).logits, 1e-5)


@pytest.mark.parametrize("tied", [False, True])
def test_export_round_trips_through_transformers_and_caramba(tmp_path, tied):
    _, folder = tiny_llama(tmp_path, tied=tied)
    model = from_pretrained(folder).eval()
    out = export(model, tmp_path / "exported")
    again = from_pretrained(out).eval()
    reloaded = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    x = ids(2)
    with torch.no_grad():
        logits = model({"input_ids": x})["logits"]
        torch.testing.assert_close(again({"input_ids": x})["logits"], logits, rtol=0, atol=0)
        assert_rel(reloaded(x).logits, logits, 1e-5)
    assert set(load_state(out)) == set(load_state(folder)) - ({"lm_head.weight"} if tied else set())


def test_config_mapping_carries_gqa_rope_norm_and_tying():
    hf = {"model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
          "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
          "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
          "tie_word_embeddings": True, "max_position_embeddings": 131072, "head_dim": 16}
    model = model_config_from_hf(hf)
    block = model["topology"]["layers"][0]
    attn = block["layers"][0]["layers"][1]
    assert block["repeat"] == 3
    assert (attn["n_heads"], attn["n_kv_heads"], attn["mode"], attn["rope_base"]) == (8, 2, "gqa", 500000.0)
    assert attn["rope_scaling"]["factor"] == 32.0
    assert attn["attn_dim"] == 8 * 16  # head_dim 16 is wider than hidden_size / heads
    assert block["layers"][0]["layers"][0]["eps"] == 1e-6
    assert model["tied_embeddings"] is True
    parsed = RT.parse(caramba_layers_lm_config(), {"model": model})
    back = hf_config_from_model(parsed.model)
    assert back["num_key_value_heads"] == 2 and back["rope_scaling"]["rope_type"] == "llama3"
    assert back["rope_theta"] == 500000.0 and back["num_hidden_layers"] == 3


def caramba_layers_lm_config():
    from caramba_layers.specs.language_model import LanguageModelConfig

    return LanguageModelConfig


def test_a_dba_model_does_not_export_as_llama(tmp_path):
    _, folder = tiny_llama(tmp_path, tied=False)
    model_cfg = model_config_from_hf(json.loads((folder / "config.json").read_text()))
    attn = model_cfg["topology"]["layers"][0]["layers"][0]["layers"][1]
    attn.update(mode="decoupled", sem_dim=16, geo_dim=16)
    del attn["n_kv_heads"]
    parsed = RT.parse(caramba_layers_lm_config(), {"model": model_cfg})
    with pytest.raises(CheckpointError, match="Llama"):
        hf_config_from_model(parsed.model)


def test_missing_and_mismatched_tensors_are_checkpoint_errors(tmp_path):
    _, folder = tiny_llama(tmp_path, tied=False)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="lacks"):
        from_pretrained(folder)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        from_pretrained(tmp_path / "nowhere")


def test_hf_is_a_registered_checkpoint_format(tmp_path):
    reference, folder = tiny_llama(tmp_path, tied=True)
    entry = RT.get("checkpoint_format", "hf")
    fmt = RT.create("checkpoint_format", "hf", RT.parse(entry.config, {"path": str(folder)}))
    assert isinstance(fmt, HFCheckpoint)
    model = fmt.build(RT).eval()
    with torch.no_grad():
        assert_rel(model({"input_ids": ids()})["logits"], reference(ids()).logits, 1e-5)
