"""Reading Llama-family GGUF files into an HF-format config and state dict.

A GGUF file (llama.cpp's format) carries the model's hyper-parameters, its tensors (often
block-quantised: Q4_0, Q4_1, Q8_0, ...) and its tokenizer. :func:`read_gguf` dequantises
every tensor with the ``gguf`` package and renames it to the Hugging Face Llama layout, so
the HF importer builds the caramba model from it.

llama.cpp's converter permutes the rows of ``q_proj`` and ``k_proj`` from HF's half-split
RoPE layout to the interleaved one its kernels use; :func:`unpermute_rope_rows` undoes it
(the inverse of ``permute`` in llama.cpp's ``convert_hf_to_gguf.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from caramba import CheckpointError

__all__ = ["GGUFCheckpoint", "permute_rope_rows", "read_gguf", "unpermute_rope_rows"]

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


@dataclass
class GGUFCheckpoint:
    """What a GGUF file holds, in Hugging Face terms."""

    config: dict[str, Any]  # an HF LlamaConfig as a dict (what config.json would hold)
    state_dict: dict[str, np.ndarray]  # HF parameter names -> float32 arrays
    tokenizer: Any  # a ``tokenizers.Tokenizer`` or None
    metadata: dict[str, Any]


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF half-split rows -> llama.cpp interleaved rows (llama.cpp's ``permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp interleaved rows -> HF half-split rows (inverse of :func:`permute_rope_rows`)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_REQUIRED = object()


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _number(reader: Any, key: str, default: Any = _REQUIRED) -> Any:
    """A numeric metadata value; a missing required key or a non-number is a :class:`CheckpointError`."""
    value = _field(reader, key, default)
    if value is _REQUIRED:
        raise CheckpointError(f"the GGUF file lacks the required key '{key}'",
                              hint="it was not written for a Llama-family model; reconvert it with llama.cpp")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"the GGUF key '{key}' is {value!r}, not a number")
    return value


def read_gguf(path: str | Path, *, with_tokenizer: bool = True) -> GGUFCheckpoint:
    """Read a Llama-architecture GGUF file; raises :class:`~caramba.CheckpointError` for anything else."""
    try:
        import gguf
    except ImportError as exc:  # pragma: no cover - gguf is a dependency of this package
        raise CheckpointError("reading GGUF needs the 'gguf' package", hint="pip install gguf") from exc
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}", hint="check the path")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable GGUF file: {exc}",
                              hint="re-download it, or convert the model with llama.cpp") from exc
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{path} holds a '{arch}' model; only Llama-family GGUF files are supported",
                              hint="convert an HF checkpoint instead")
    n_head = int(_number(reader, "llama.attention.head_count"))
    n_kv = int(_number(reader, "llama.attention.head_count_kv", n_head))
    d_model = int(_number(reader, "llama.embedding_length"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    state: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        name = tensor.name
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        data = data.reshape([int(d) for d in reversed(tensor.shape)])  # GGUF lists dims fastest-first
        if name in _GLOBAL_NAMES:
            state[_GLOBAL_NAMES[name]] = data
            continue
        parts = name.split(".", 2)
        if parts[0] != "blk" or parts[2] not in _LAYER_NAMES:
            continue  # e.g. rope_freqs: recomputed from the config
        hf = f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
        if parts[2].startswith("attn_q."):
            data = unpermute_rope_rows(data, n_head)
        elif parts[2].startswith("attn_k."):
            data = unpermute_rope_rows(data, n_kv)
        state[hf] = data
    tied = "lm_head.weight" not in state
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d_model,
        "intermediate_size": int(_number(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_number(reader, "llama.block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": int(_number(reader, "llama.rope.dimension_count", d_model // n_head)),
        "vocab_size": int(_number(reader, "llama.vocab_size", len(tokens) if tokens else 0)),
        "max_position_embeddings": int(_number(reader, "llama.context_length", 2048)),
        "rms_norm_eps": float(_number(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_number(reader, "llama.rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "attention_bias": "model.layers.0.self_attn.q_proj.bias" in state,
        "hidden_act": "silu",
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
    }
    scaling = _field(reader, "llama.rope.scaling.type")
    if scaling in ("linear", "yarn"):
        config["rope_scaling"] = {"rope_type": scaling,
                                  "factor": float(_number(reader, "llama.rope.scaling.factor", 1.0))}
    metadata = {k: _field(reader, k) for k in ("general.name", "general.file_type", "general.organization")}
    tokenizer = _tokenizer(reader) if with_tokenizer and tokens else None
    return GGUFCheckpoint(config, state, tokenizer, metadata)


_CONTROL, _USER_DEFINED = 3, 4  # GGUF token types (llama.cpp's llama_token_type)


def _tokenizer(reader: Any) -> Any:
    """The byte-level BPE tokenizer a ``gpt2``-model GGUF file carries, or ``None`` for others."""
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        return None
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, <|im_end|>, ...) must match whole in a chat prompt, not as BPE pieces
    types = _field(reader, "tokenizer.ggml.token_type", [])
    special = [t for t, kind in zip(tokens, types) if kind in (_CONTROL, _USER_DEFINED)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return tok


class GGUFFormat:
    """The ``gguf`` checkpoint format: build or fill a ``system.language_model`` from a GGUF file.

    Same surface as :class:`caramba_layers.hf.HFCheckpoint` (``model_config``, ``build``,
    ``load_into``, ``tokenizer``); a file is read and dequantised once per instance.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self._read: dict[str, GGUFCheckpoint] = {}

    def _path(self, path: str | Path | None) -> str:
        path = path or (self.config.path if self.config is not None else "")
        if not path:
            raise CheckpointError("no GGUF path given", hint="set path: in the checkpoint config")
        return str(path)

    def read(self, path: str | Path | None = None) -> GGUFCheckpoint:
        key = self._path(path)
        if key not in self._read:
            self._read[key] = read_gguf(key)
        return self._read[key]

    def hf_config(self, path: str | Path | None = None) -> dict[str, Any]:
        return self.read(path).config

    def model_config(self, path: str | Path | None = None) -> dict[str, Any]:
        from caramba_layers.specs.hf import model_config_from_hf

        return model_config_from_hf(self.read(path).config)

    def state(self, path: str | Path | None = None) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(v) for k, v in self.read(path).state_dict.items()}

    def load_into(self, model: Any, path: str | Path | None = None) -> None:
        from caramba_layers.hf import load_weights

        load_weights(model, self.state(path))

    def build(self, runtime: Any = None, path: str | Path | None = None, *, device: Any = None) -> Any:
        from caramba_layers.hf import build_from_hf_config

        model = build_from_hf_config(self.read(path).config, runtime, device=device,
                                     source=f"{self._path(path)}")
        self.load_into(model, path)
        return model

    def tokenizer(self, path: str | Path | None = None) -> Any:
        key = self._path(path)
        if key in self._read:
            return self._read[key].tokenizer
        import gguf

        return _tokenizer(gguf.GGUFReader(key))  # memory-mapped: no tensor is read
