"""Malformed files a run reads besides its manifest: a checkpoint folder's config and weight
index, a GGUF file missing required keys, a token file of Python objects. Each is refused
with an error naming the file and what was expected; none is a traceback."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from caramba import CarambaError, CheckpointError
from caramba_layers.gguf import read_gguf
from caramba_layers.hf import load_state, read_config
from caramba_layers.specs.hf import model_config_from_hf

LLAMA = {"model_type": "llama", "hidden_size": 64, "vocab_size": 128, "num_attention_heads": 4,
         "num_hidden_layers": 2, "intermediate_size": 128}


@pytest.mark.parametrize(("text", "shown"), [
    ("[1, 2, 3]", "holds a list, not an object of model settings"),
    ('{"hidden_size": ', "is not valid JSON"),
])
def test_a_config_that_is_not_an_object_is_refused(tmp_path, text, shown):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=shown):
        read_config(tmp_path)


@pytest.mark.parametrize(("text", "shown"), [
    ("not json", "is not a weight index"),
    ("[]", "is not a weight index"),
    ('{"weight_map": {"w": "../../outside.safetensors"}}', "plain file names"),
])
def test_a_weight_index_that_is_not_one_is_refused(tmp_path, text, shown):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    (tmp_path / "model.safetensors.index.json").write_text(text)
    with pytest.raises(CheckpointError, match=shown):
        load_state(tmp_path)


def test_a_config_with_a_hundred_million_layers_is_refused_before_building(monkeypatch):
    monkeypatch.setenv("CARAMBA_MEMORY_BYTES", str(8 * 2**30))
    with pytest.raises(CheckpointError, match=r"100,000,000 layers\): .* over the memory budget of 8.0 GiB"):
        model_config_from_hf({**LLAMA, "num_hidden_layers": 10**8})


@pytest.mark.parametrize("value", ["12", -3, 2.5])
def test_a_config_size_that_is_not_a_positive_integer_is_refused(value):
    with pytest.raises(CheckpointError, match="num_hidden_layers is .* not a positive integer"):
        model_config_from_hf({**LLAMA, "num_hidden_layers": value})


def test_a_gguf_file_missing_a_required_key_names_it(tmp_path):
    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_embedding_length(64)  # no head count, no block count
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="lacks the required key 'llama.attention.head_count'"):
        read_gguf(path, with_tokenizer=False)


def test_a_token_file_of_python_objects_is_refused_without_unpickling(tmp_path):
    from caramba_trainers.data.tokens import TokenDataset
    from caramba_trainers.specs import TokensConfig

    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.array([1, "two", None], dtype=object), allow_pickle=True)
    with pytest.raises(CarambaError, match=f"token file '{tokens}' cannot be read as tokens"):
        TokenDataset(TokensConfig(path=str(tokens), block_size=8))


def test_too_few_tokens_are_counted_plainly(tmp_path):
    from caramba_trainers.data.base import BlockDataset

    with pytest.raises(CarambaError, match="10 tokens leave 0 for the train split, fewer than block_size"):
        BlockDataset(np.arange(10), block_size=16, val_frac=0.1, vocab_size=16)


def test_integer_data_is_never_loaded_into_float_weights(cli, manifest, tmp_path):
    from caramba_trainers.checkpoint import find_latest, save_checkpoint

    assert cli("run", manifest, "--out", tmp_path / "first").code == 0
    trained = find_latest(tmp_path / "first" / "faults" / "mlp" / "runs" / "r" / "checkpoints")
    name = next(iter(trained.model))
    ints = {k: (v.to(torch.int32) if k == name else v) for k, v in trained.model.items()}
    bad = save_checkpoint(tmp_path / "ints", 6, model_state=ints)

    outcome = cli("run", manifest, "--out", tmp_path / "second",
                  "-s", f"targets[0].runs[0].train.init_checkpoint={bad}")
    outcome.assert_clean_failure(2, f"{bad}: {name} holds torch.int32 data in the checkpoint, but the model's "
                                    "weight is torch.float32")
