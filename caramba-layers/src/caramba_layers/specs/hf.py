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

#: What transformers assumes for each field a ``config.json`` may leave out, per ``model_type``
#: (read from its config classes; ``tests/caramba-layers/test_hf.py`` checks this table against them).
#: A field the importer reads is either here, required, or refused: never a default of our own.
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"max_position_embeddings": 2048, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "num_key_value_heads": None,
              "head_dim": None, "sliding_window": None},
    "mistral": {"max_position_embeddings": 4096 * 32, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
                "num_key_value_heads": 8, "head_dim": None, "sliding_window": 4096},
    # Qwen2: q/k/v projections carry a bias and o_proj none (fixed by the architecture, not configurable).
    "qwen2": {"max_position_embeddings": 32768, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu",
              "tie_word_embeddings": False, "attention_bias": True, "mlp_bias": False, "num_key_value_heads": 32,
              "head_dim": None, "sliding_window": None},
}
SUPPORTED_MODEL_TYPES = tuple(HF_DEFAULTS)
#: HF ``hidden_act`` -> (caramba MLP layer, its activation).
_ACTIVATIONS = {"silu": ("SwiGLULayer", None), "gelu": ("GLULayer", "gelu"), "relu": ("GLULayer", "relu"),
                "sigmoid": ("GLULayer", "sigmoid"), "gelu_pytorch_tanh": ("GLULayer", "gelu_tanh")}
_HF_ACTIVATION = {"silu": "silu", "gelu": "gelu", "relu": "relu", "sigmoid": "sigmoid",
                  "gelu_tanh": "gelu_pytorch_tanh"}
_SCALING_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
                 "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate")
#: Keys transformers requires for each scaling type (it fails without them; so do we, never guessing).
_SCALING_REQUIRED = {"linear": ("factor",), "dynamic": ("factor",), "yarn": (),
                     "llama3": ("factor", "low_freq_factor", "high_freq_factor")}


class HFCheckpointConfig(Config, kw_only=True):
    """Load or save Llama-family checkpoints in Hugging Face format (config.json + safetensors).

    ``path``: a folder with ``config.json`` and ``model.safetensors`` (or a sharded
    ``model.safetensors.index.json``), or ``hf://org/name`` for a model already in the local
    Hugging Face cache (nothing is downloaded). ``dtype``: the dtype weights are loaded as.
    """

    path: str = ""
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"


def _field(hf: dict[str, Any], name: str) -> Any:
    """``config.json``'s value, or transformers' default for the model type when it is left out."""
    if name in hf:
        return hf[name]
    return HF_DEFAULTS[hf.get("model_type", "llama")][name]


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    params = dict(hf.get("rope_parameters") or {})
    kind_defaults = HF_DEFAULTS[hf.get("model_type", "llama")]
    theta = float(params.pop("rope_theta", None) or hf.get("rope_theta") or kind_defaults["rope_theta"])
    scaling = dict(hf.get("rope_scaling") or params)
    kind = scaling.pop("rope_type", scaling.pop("type", "default"))
    if kind in ("default", None):
        return theta, None
    if kind not in _SCALING_REQUIRED:
        raise CheckpointError(f"rope scaling type '{kind}' is not supported",
                              hint="supported: default, " + ", ".join(_SCALING_REQUIRED))
    missing = [k for k in _SCALING_REQUIRED[kind] if scaling.get(k) is None]
    if missing:
        raise CheckpointError(f"rope_scaling of type '{kind}' lacks {', '.join(missing)}",
                              hint="transformers requires it too; add it to config.json")
    out: dict[str, Any] = {"rope_type": kind}
    out.update({k: scaling[k] for k in _SCALING_KEYS if scaling.get(k) is not None})
    max_positions = _field(hf, "max_position_embeddings")
    if kind in ("yarn", "llama3"):
        # As transformers: a top-level original_max_position_embeddings wins (Phi-3 style), then
        # the scaling's own, then max_position_embeddings.
        out["original_max_position_embeddings"] = (hf.get("original_max_position_embeddings")
                                                   or out.get("original_max_position_embeddings") or max_positions)
    if kind == "dynamic":
        out["max_position_embeddings"] = max_positions
    if kind == "yarn" and "factor" not in out:
        out["factor"] = max_positions / out["original_max_position_embeddings"]
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


def _sliding_window(hf: dict[str, Any]) -> int | None:
    """Mistral slides every layer's window; Qwen2 only with use_sliding_window (not supported)."""
    if hf.get("model_type") == "qwen2":
        layer_types = hf.get("layer_types") or []
        if hf.get("use_sliding_window") or "sliding_attention" in layer_types:
            raise CheckpointError("Qwen2 with use_sliding_window (sliding attention on some layers only) is not "
                                  "supported", hint="set use_sliding_window: false, as released Qwen2 models do")
        return None
    return _field(hf, "sliding_window")


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
    kv = _field(hf, "num_key_value_heads") or h
    sizes = {"hidden_size": d, "vocab_size": v, "num_attention_heads": h, "num_hidden_layers": n_layers,
             "intermediate_size": d_ff, "num_key_value_heads": kv}
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(f"config.json: {name} is {value!r}, not a positive integer")
    head_dim = _field(hf, "head_dim") or d // h
    _check_fits_memory(d, v, h, kv, head_dim, n_layers, d_ff)
    act = _field(hf, "hidden_act")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"hidden_act '{act}' is not supported", hint="supported: " + ", ".join(_ACTIVATIONS))
    theta, scaling = _rope(hf)
    eps = float(_field(hf, "rms_norm_eps"))
    qwen2 = kind == "qwen2"
    attn: dict[str, Any] = {"type": "AttentionLayer", "d_model": d, "n_heads": h, "n_kv_heads": kv,
                            "mode": "gqa" if kv < h else "standard", "rope_base": theta,
                            "bias": bool(_field(hf, "attention_bias")), "is_causal": True}
    if qwen2:
        attn["out_bias"] = False
    if head_dim * h != d:
        attn["attn_dim"] = head_dim * h
    if scaling:
        attn["rope_scaling"] = scaling
    window = _sliding_window(hf)
    if window:
        attn["local_window"] = window
    layer_type, activation = _ACTIVATIONS[act]
    mlp: dict[str, Any] = {"type": layer_type, "d_model": d, "d_ff": d_ff, "bias": bool(_field(hf, "mlp_bias"))}
    if activation:
        mlp["activation"] = activation
    norm = {"type": "RMSNormLayer", "d_model": d, "eps": eps}
    model: dict[str, Any] = {
        "type": "TransformerModel",
        "tied_embeddings": bool(_field(hf, "tie_word_embeddings")),
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
    model["block_size"] = _field(hf, "max_position_embeddings")
    return model


def hf_config_from_model(model: Any) -> dict[str, Any]:
    """A Hugging Face ``config.json`` for a caramba ``TransformerModelConfig`` of the Llama layout.

    The layout is recognised by structure, whatever the spelling: token embedding, N blocks
    of ``residual(RMSNorm, attention)`` then ``residual(RMSNorm, gated MLP)`` (in any
    nesting of sequential topologies), a final RMSNorm, and the LM head (written or added by
    the system). ``mode: standard`` with fewer KV heads is GQA, an omitted ``n_kv_heads``
    is one per query head. Raises :class:`~caramba.CheckpointError` naming what does not
    fit (a DBA attention, a LayerNorm, blocks that differ...). The result is checked by
    importing it again and comparing every block's meaning.
    """
    blocks, final_norm = _llama_blocks(model)
    norm, attn, _, mlp = blocks[0]
    hf: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.d_model,
        "intermediate_size": mlp.d_ff,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": attn.n_heads,
        "num_key_value_heads": attn.kv_heads,
        "head_dim": attn.head_dim,
        "hidden_act": _HF_ACTIVATION[getattr(mlp, "activation", "silu")],
        "max_position_embeddings": model.block_size or 2048,
        "rms_norm_eps": norm.eps,
        "rope_theta": attn.rope_base,
        "rope_scaling": None,
        "attention_bias": attn.bias,
        "mlp_bias": mlp.bias,
        "tie_word_embeddings": model.tied_embeddings,
    }
    if attn.rope_scaling is not None:
        import msgspec

        scaling = msgspec.to_builtins(attn.rope_scaling)
        if scaling["rope_type"] != "dynamic":
            scaling.pop("max_position_embeddings", None)
        else:
            hf["max_position_embeddings"] = scaling.pop("max_position_embeddings")
        hf["rope_scaling"] = scaling
    if attn.bias and attn.out_bias is False and not mlp.bias:
        # Qwen2's layout: biased q/k/v, unbiased o_proj; no sliding window.
        hf["model_type"], hf["architectures"] = "qwen2", ["Qwen2ForCausalLM"]
        hf["use_sliding_window"] = False
        del hf["attention_bias"], hf["mlp_bias"]
    elif attn.local_window:
        hf["model_type"], hf["architectures"] = "mistral", ["MistralForCausalLM"]
        hf["sliding_window"] = attn.local_window
    elif hf["model_type"] == "llama" and attn.out_bias is not None and attn.out_bias != attn.bias:
        raise CheckpointError("the attention's out_bias differs from bias, which no supported Hugging Face "
                              "model_type expresses except Qwen2 (bias: true, out_bias: false, mlp bias: false)")
    rebuilt = _parse_model(model_config_from_hf(hf))
    if _meaning(*_llama_blocks(rebuilt)) != _meaning(blocks, final_norm):
        raise CheckpointError("the model cannot be written as a Hugging Face config without changing what it "
                              "computes", hint="only the Llama, Mistral and Qwen2 layouts export")
    return hf


_SEQUENTIAL = ("StackedTopology", "SequentialTopology", "NestedTopology")


def _llama_blocks(model: Any) -> tuple[list[tuple[Any, Any, Any, Any]], Any]:
    """``([(norm1, attention, norm2, mlp), ...], final_norm)`` of a Llama-layout model config."""
    from caramba_layers.specs.attention import AttentionLayerConfig
    from caramba_layers.specs.basic import LinearLayerConfig
    from caramba_layers.specs.glu import GLULayerConfig, SwiGLULayerConfig
    from caramba_layers.specs.norm import RMSNormLayerConfig

    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"only Llama-layout models export to Hugging Face format: {why}",
                               hint="embedding, N × [residual(RMSNorm, attention), residual(RMSNorm, gated MLP)], "
                                    "RMSNorm, LM head")

    items = list(_flatten(model.topology))
    if items and isinstance(items[-1], LinearLayerConfig):
        head = items.pop()  # written out; the system adds one when it is not
        if head.bias or head.d_out != model.vocab_size:
            raise fail("the LM head has a bias or does not map to the vocabulary")
    if not items or not isinstance(items[-1], RMSNormLayerConfig):
        raise fail("the last layer before the LM head is not an RMSNormLayer")
    final = items.pop()
    blocks = []
    for i in range(0, len(items), 2):
        pair = items[i:i + 2]
        parts = [_residual_pair(p) for p in pair]
        first, second = parts if len(parts) == 2 else (None, None)
        if first is None or second is None:
            raise fail(f"item {i} is not a residual (RMSNorm, layer)")
        (norm1, attn), (norm2, mlp) = first, second
        if not (isinstance(norm1, RMSNormLayerConfig) and isinstance(attn, AttentionLayerConfig)
                and isinstance(norm2, RMSNormLayerConfig) and isinstance(mlp, SwiGLULayerConfig | GLULayerConfig)):
            raise fail(f"block {i // 2} is not [RMSNorm, attention] + [RMSNorm, gated MLP]")
        if attn.decoupled or not attn.rope_enabled or not attn.is_causal:
            raise fail(f"block {i // 2}'s attention is not causal RoPE attention (DBA has no Llama equivalent)")
        if attn.null_attn or attn.learned_temp or attn.tie_qk or attn.rope_semantic:
            raise fail(f"block {i // 2}'s attention uses null_attn/learned_temp/tie_qk, which Llama has not")
        blocks.append((norm1, attn, norm2, mlp))
    if not blocks:
        raise fail("it has no blocks")
    return blocks, final


def _flatten(node: Any) -> Any:
    """Leaves and residual topologies in order, through any nesting of sequential topologies."""
    if getattr(node, "type", None) in _SEQUENTIAL:
        for child in node.children():
            yield from _flatten(child)
    elif getattr(node, "type", None) == "DropoutLayer":
        return
    else:
        yield node


def _residual_pair(node: Any) -> tuple[Any, Any] | None:
    if getattr(node, "type", None) != "ResidualTopology":
        return None
    inner = [leaf for child in node.children() for leaf in _flatten(child)]
    return (inner[0], inner[1]) if len(inner) == 2 else None


def _meaning(blocks: list[tuple[Any, Any, Any, Any]], final: Any) -> Any:
    """What each block computes, independent of how its config is spelled."""
    import msgspec

    def attention(a: Any) -> tuple[Any, ...]:
        return (a.d_model, a.n_heads, a.kv_heads, a.head_dim, a.bias, a.bias if a.out_bias is None else a.out_bias,
                a.rope_base, msgspec.to_builtins(a.rope_scaling), a.local_window)

    def mlp(m: Any) -> tuple[Any, ...]:
        return (m.d_model, m.d_ff, getattr(m, "activation", "silu"), m.bias)

    return [(n1.eps, attention(a), n2.eps, mlp(m)) for n1, a, n2, m in blocks], final.eps


def _parse_model(model: dict[str, Any]) -> Any:
    import caramba_layers.plugin
    from caramba import Runtime
    from caramba_layers.specs.language_model import TransformerModelConfig

    return Runtime(autoload=False, plugins=[caramba_layers.plugin]).parse(TransformerModelConfig, model)


COMPONENTS = [
    Component("checkpoint_format", "hf", HFCheckpointConfig, "caramba_layers.hf:HFCheckpoint",
              "Hugging Face Llama-family checkpoints (config.json + safetensors)"),
]
