"""Hugging Face Llama-family configs ↔ caramba ``model:`` blocks. Torch-free.

:func:`model_config_from_hf` turns a ``config.json`` (either the ``rope_theta`` +
``rope_scaling`` layout or the newer ``rope_parameters`` one) into the equivalent
``system.language_model`` ``model:`` mapping::

    StackedTopology
      NestedTopology repeat: num_hidden_layers
        ResidualTopology [RMSNormLayer, AttentionLayer]      # input_layernorm, self_attn
        ResidualTopology [RMSNormLayer, SwiGLULayer]         # post_attention_layernorm, mlp
      RMSNormLayer                                           # model.norm
      LinearLayer d_model → vocab_size, no bias              # lm_head (tied or not)

:func:`hf_config_from_model` is the inverse, used for export. The weights themselves are
mapped in :mod:`caramba_layers.hf`.
"""

from __future__ import annotations

from typing import Any, Literal

from caramba import CheckpointError, Config
from caramba_layers.specs import Component

__all__ = ["HFCheckpointConfig", "hf_config_from_model", "model_config_from_hf"]

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
_ACTIVATIONS = {"silu": ("SwiGLULayer", None), "gelu": ("GLULayer", "gelu"), "relu": ("GLULayer", "relu"),
                "sigmoid": ("GLULayer", "sigmoid")}
_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
                 "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate")


class HFCheckpointConfig(Config, kw_only=True):
    """Load or save Llama-family checkpoints in Hugging Face format (config.json + safetensors).

    ``path``: a folder with ``config.json`` and ``model.safetensors`` (or a sharded
    ``model.safetensors.index.json``), or ``hf://org/name`` for a model already in the local
    Hugging Face cache (nothing is downloaded). ``dtype``: the dtype weights are loaded as.
    """

    path: str = ""
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = dict(hf.get("rope_scaling") or params)
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    if kind in ("default", None):
        return theta, None
    if kind not in ("linear", "dynamic", "yarn", "llama3"):
        raise CheckpointError(f"rope scaling type '{kind}' is not supported",
                              hint="supported: default, linear, dynamic, yarn, llama3")
    out: dict[str, Any] = {"rope_type": kind}
    out.update({k: scaling[k] for k in _SCALING_KEYS if scaling.get(k) is not None})
    if kind == "dynamic":
        out["max_position_embeddings"] = hf.get("max_position_embeddings", 2048)
    if kind == "yarn" and "factor" not in out:
        out["factor"] = hf["max_position_embeddings"] / out["original_max_position_embeddings"]
    return theta, out


def _check_fits_memory(d: int, v: int, h: int, kv: int, head_dim: int, n_layers: int, d_ff: int) -> None:
    """Refuse, before building, a config whose fp32 weights cannot fit memory (as validate does)."""
    from caramba import human_bytes, memory_budget

    per_layer = d * head_dim * (2 * h + 2 * kv) + 3 * d * d_ff + 2 * d
    params = 2 * v * d + n_layers * per_layer + d
    budget = memory_budget()
    if budget is not None and params * 4 > budget:
        raise CheckpointError(f"config.json describes about {params:,} parameters ({n_layers:,} layers): "
                              f"{human_bytes(params * 4)} of fp32 weights, over the memory budget of "
                              f"{human_bytes(budget)}", hint="check num_hidden_layers and the sizes; "
                              "CARAMBA_MEMORY_BYTES states another budget")


def model_config_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """The caramba ``model:`` mapping equivalent to a Hugging Face Llama-family ``config.json``."""
    if not isinstance(hf, dict):
        raise CheckpointError(f"config.json holds a {type(hf).__name__}, not an object of model settings",
                              hint="point at a Hugging Face model folder's config.json")
    kind = hf.get("model_type", "llama")
    if kind not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(f"model_type '{kind}' is not a supported Llama-family model",
                              hint="supported: " + ", ".join(SUPPORTED_MODEL_TYPES))
    try:
        d, v = hf["hidden_size"], hf["vocab_size"]
        h, n_layers, d_ff = hf["num_attention_heads"], hf["num_hidden_layers"], hf["intermediate_size"]
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks {exc.args[0]}") from None
    kv = hf.get("num_key_value_heads") or h
    sizes = {"hidden_size": d, "vocab_size": v, "num_attention_heads": h, "num_hidden_layers": n_layers,
             "intermediate_size": d_ff, "num_key_value_heads": kv}
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"config.json: {name} is {value!r}, not a positive integer")
    head_dim = hf.get("head_dim") or d // h
    _check_fits_memory(d, v, h, kv, head_dim, n_layers, d_ff)
    act = hf.get("hidden_act", "silu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act '{act}' is not supported", hint="supported: " + ", ".join(_ACTIVATIONS))
    theta, scaling = _rope(hf)
    eps = float(hf.get("rms_norm_eps", 1e-6))
    attn: dict[str, Any] = {"type": "AttentionLayer", "d_model": d, "n_heads": h, "n_kv_heads": kv,
                            "mode": "gqa" if kv < h else "standard", "rope_base": theta,
                            "bias": bool(hf.get("attention_bias", False)), "is_causal": True}
    if head_dim * h != d:
        attn["attn_dim"] = head_dim * h
    if scaling:
        attn["rope_scaling"] = scaling
    if hf.get("sliding_window"):
        attn["local_window"] = hf["sliding_window"]
    layer_type, activation = _ACTIVATIONS[act]
    mlp: dict[str, Any] = {"type": layer_type, "d_model": d, "d_ff": d_ff, "bias": bool(hf.get("mlp_bias", False))}
    if activation:
        mlp["activation"] = activation
    norm = {"type": "RMSNormLayer", "d_model": d, "eps": eps}
    model: dict[str, Any] = {
        "type": "TransformerModel",
        "tied_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "embedder": {"type": "token", "vocab_size": v, "d_model": d},
        "topology": {"type": "StackedTopology", "layers": [
            {"type": "NestedTopology", "repeat": n_layers, "layers": [
                {"type": "ResidualTopology", "layers": [dict(norm), attn]},
                {"type": "ResidualTopology", "layers": [dict(norm), mlp]},
            ]},
            dict(norm),
            {"type": "LinearLayer", "d_in": d, "d_out": v, "bias": False},
        ]},
    }
    if hf.get("max_position_embeddings"):
        model["block_size"] = hf["max_position_embeddings"]
    return model


def hf_config_from_model(model: Any) -> dict[str, Any]:
    """A Llama ``config.json`` for a caramba ``TransformerModelConfig`` of the Llama layout.

    Raises :class:`~caramba.CheckpointError` when the model is not of that layout (a DBA
    attention, a LayerNorm, a missing residual...): the mapping is checked by rebuilding
    the caramba config from the result and comparing the two.
    """
    import msgspec

    from caramba_layers.specs.attention import AttentionLayerConfig
    from caramba_layers.specs.glu import GLULayerConfig, SwiGLULayerConfig
    from caramba_layers.specs.norm import RMSNormLayerConfig

    leaves = list(_leaves(model.topology))
    attn = next((n for n in leaves if isinstance(n, AttentionLayerConfig)), None)
    mlp = next((n for n in leaves if isinstance(n, SwiGLULayerConfig | GLULayerConfig)), None)
    norm = next((n for n in leaves if isinstance(n, RMSNormLayerConfig)), None)
    if attn is None or mlp is None or norm is None or attn.decoupled:
        raise CheckpointError("only Llama-shaped models export to Hugging Face format: RMSNorm, standard or "
                              "GQA attention and a gated MLP per block")
    hf: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.d_model,
        "intermediate_size": mlp.d_ff,
        "num_hidden_layers": sum(isinstance(n, AttentionLayerConfig) for n in leaves),
        "num_attention_heads": attn.n_heads,
        "num_key_value_heads": attn.kv_heads,
        "head_dim": attn.head_dim,
        "hidden_act": getattr(mlp, "activation", "silu"),
        "max_position_embeddings": model.block_size or 2048,
        "rms_norm_eps": norm.eps,
        "rope_theta": attn.rope_base,
        "rope_scaling": None,
        "attention_bias": attn.bias,
        "mlp_bias": mlp.bias,
        "tie_word_embeddings": model.tied_embeddings,
    }
    if attn.rope_scaling is not None:
        scaling = msgspec.to_builtins(attn.rope_scaling)
        if scaling["rope_type"] != "dynamic":
            scaling.pop("max_position_embeddings", None)
        else:
            hf["max_position_embeddings"] = scaling.pop("max_position_embeddings")
        hf["rope_scaling"] = scaling
    if attn.local_window:
        hf["model_type"], hf["architectures"] = "mistral", ["MistralForCausalLM"]
        hf["sliding_window"] = attn.local_window
    expected = model_config_from_hf(hf)
    if _signature_of_plain(expected, model) is False:
        raise CheckpointError("the model is not of the Llama layout (embedding, N × [residual(RMSNorm, attention), "
                              "residual(RMSNorm, MLP)], RMSNorm, LM head), so it cannot be exported to Hugging Face "
                              "format")
    return hf


def _leaves(node: Any) -> Any:
    if not hasattr(node, "layers"):
        yield node
        return
    for child in node.children():
        yield from _leaves(child)


def _signature(node: Any) -> Any:
    """Node types and fields in pre-order, with ``repeat`` expanded."""
    import msgspec

    if hasattr(node, "layers"):
        return (node.type, tuple(_signature(c) for c in node.children()))
    fields = msgspec.to_builtins(node)
    return (node.type, tuple(sorted((k, repr(v)) for k, v in fields.items())))


def _signature_of_plain(expected: dict[str, Any], model: Any) -> bool:
    import caramba_layers.plugin
    from caramba import Runtime
    from caramba_layers.specs.language_model import TransformerModelConfig

    rebuilt = Runtime(autoload=False, plugins=[caramba_layers.plugin]).parse(TransformerModelConfig, expected)
    same_topology = _signature(rebuilt.topology) == _signature(model.topology)
    return same_topology and rebuilt.embedder == model.embedder and rebuilt.tied_embeddings == model.tied_embeddings


COMPONENTS = [
    Component("checkpoint_format", "hf", HFCheckpointConfig, "caramba_layers.hf:HFCheckpoint",
              "Hugging Face Llama-family checkpoints (config.json + safetensors)"),
]
