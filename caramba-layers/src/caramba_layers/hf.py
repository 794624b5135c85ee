"""Hugging Face Llama-family checkpoints: import into and export from ``system.language_model``.

    model = from_pretrained("path/to/llama")           # config.json + (sharded) safetensors
    export(model, "out/")                               # back to config.json + model.safetensors

Weights are matched by *role*, not by module path: the built model's layers are walked in
order, and each block's ``[RMSNorm, attention, RMSNorm, MLP]`` gets Llama's
``input_layernorm, self_attn, post_attention_layernorm, mlp`` names. Weights are read
with safetensors only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caramba import CheckpointError, atomic_write_bytes, atomic_write_json
from caramba.nn import NodeModule, TopologyModule
from caramba_layers.modules.attention import AttentionLayer
from caramba_layers.modules.basic import DropoutLayer, LinearLayer
from caramba_layers.modules.embedders import TokenEmbedder
from caramba_layers.modules.glu import GLULayer
from caramba_layers.modules.norm import RMSNormLayer
from caramba_layers.specs.hf import hf_config_from_model, model_config_from_hf

__all__ = ["HFCheckpoint", "LlamaLayout", "build_from_hf_config", "check_dtype", "export", "from_pretrained",
           "llama_layout", "llama_parameters", "load_state", "load_weights", "read_config", "resolve"]

_IGNORED = ("rotary_emb.inv_freq",)  # buffers some older checkpoints carry; recomputed here


def resolve(path: str | Path) -> Path:
    """A local checkpoint folder; ``hf://org/name`` must already be in the Hugging Face cache."""
    text = str(path)
    if text.startswith("hf://"):
        repo = text[len("hf://"):]
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo, local_files_only=True))
        except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
            raise CheckpointError(f"'{repo}' is not in the local Hugging Face cache ({type(exc).__name__})",
                                  hint="download it once (huggingface-cli download), or pass a local folder") from None
    folder = Path(text)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder at {folder}", hint="pass a folder with config.json")
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder."""
    file = resolve(path) / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file} does not exist", hint="an HF checkpoint folder holds config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} holds a {type(config).__name__}, not an object of model settings",
                              hint="point at a Hugging Face model folder's config.json")
    return config


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors`` or of the shards a ``model.safetensors.index.json`` lists."""
    from safetensors.torch import load_file

    folder = resolve(path)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
            if any(not isinstance(n, str) or Path(n).name != n for n in names):
                raise ValueError("shards are named by plain file names in the same folder")
            files = [folder / name for name in names]
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{index} is not a weight index ({type(exc).__name__}: {exc})",
                                  hint='expected {"weight_map": {"tensor name": "shard file name", ...}}') from None
    else:
        raise CheckpointError(f"{folder} has neither model.safetensors nor model.safetensors.index.json",
                              hint="only safetensors checkpoints are read (never pickles)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as exc:  # noqa: BLE001 - a corrupt or missing shard
            raise CheckpointError(f"cannot read {file}: {exc}") from None
    return state


@dataclass
class LlamaLayout:
    """The modules of a Llama-layout model by role: ``blocks[i] = (norm1, attention, norm2, mlp)``."""

    embed: TokenEmbedder
    blocks: list[tuple[RMSNormLayer, AttentionLayer, RMSNormLayer, GLULayer]]
    final_norm: RMSNormLayer
    head: nn.Linear


def llama_layout(model: nn.Module, *, allow_decoupled: bool = False) -> LlamaLayout:
    """Find the Llama roles in a ``system.language_model`` (DBA attention allowed on request)."""
    leaves = [m for m in model.modules()
              if isinstance(m, NodeModule) and not isinstance(m, TopologyModule | DropoutLayer)]

    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"the model is not of the Llama layout: {why}",
                               hint="embedding, N × [RMSNorm, attention, RMSNorm, MLP], RMSNorm, LM head")

    if not leaves or not isinstance(leaves[0], TokenEmbedder):
        raise fail("it does not start with a token embedder")
    rest = leaves[1:]
    if rest and isinstance(rest[-1], LinearLayer):
        rest = rest[:-1]  # the head, found again below through model.head
    if not rest or not isinstance(rest[-1], RMSNormLayer):
        raise fail("the last layer before the head is not an RMSNormLayer")
    *flat, final = rest
    if len(flat) % 4:
        raise fail(f"{len(flat)} layers between embedding and final norm is not a multiple of 4")
    blocks = []
    for i in range(len(flat) // 4):
        norm1, attn, norm2, mlp = flat[4 * i: 4 * i + 4]
        if not (isinstance(norm1, RMSNormLayer) and isinstance(attn, AttentionLayer)
                and isinstance(norm2, RMSNormLayer) and isinstance(mlp, GLULayer)):
            raise fail(f"block {i} is not [RMSNorm, attention, RMSNorm, gated MLP]")
        if attn.decoupled and not allow_decoupled:
            raise fail(f"block {i} has decoupled (DBA) attention, which has no Llama equivalent")
        blocks.append((norm1, attn, norm2, mlp))
    return LlamaLayout(leaves[0], blocks, final, model.head)


def llama_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{Llama name: caramba parameter}`` for a Llama-layout ``system.language_model``."""
    layout = llama_layout(model)
    names: dict[str, torch.Tensor] = {"model.embed_tokens.weight": layout.embed.embedding.weight}
    for i, (norm1, attn, norm2, mlp) in enumerate(layout.blocks):
        p = f"model.layers.{i}."
        names[p + "input_layernorm.weight"] = norm1.weight
        names[p + "post_attention_layernorm.weight"] = norm2.weight
        for hf_name, linear in (("self_attn.q_proj", attn.q_proj), ("self_attn.k_proj", attn.k_proj),
                                ("self_attn.v_proj", attn.v_proj), ("self_attn.o_proj", attn.out_proj),
                                ("mlp.gate_proj", mlp.w_gate), ("mlp.up_proj", mlp.w_up),
                                ("mlp.down_proj", mlp.w_down)):
            names[p + hf_name + ".weight"] = linear.weight
            if linear.bias is not None:
                names[p + hf_name + ".bias"] = linear.bias
    names["model.norm.weight"] = layout.final_norm.weight
    names["lm_head.weight"] = layout.head.weight
    return names


def check_dtype(name: str, value: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse integer or boolean checkpoint data for floating-point weights (precision changes are fine)."""
    if target.is_floating_point() and not (value.is_floating_point() or value.is_complex()):
        raise CheckpointError(f"{name} holds {value.dtype} data in the checkpoint, but the model's weight is "
                              f"{target.dtype}", hint="the checkpoint is not a model's weights, or was exported "
                              "wrongly; integer data is never converted to weights")


@torch.no_grad()
def load_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a Llama state dict into ``model`` (dtype converted); every tensor must fit exactly."""
    params = llama_parameters(model)
    tied = model.head.weight is params["model.embed_tokens.weight"]
    missing = [n for n in params if n not in state and not (tied and n == "lm_head.weight")]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {len(missing)} tensors the model needs, e.g. {missing[:3]}",
                              hint="is it a checkpoint of the same architecture and size?")
    unexpected = [n for n in state if n not in params and not n.endswith(_IGNORED)]
    if unexpected:
        raise CheckpointError(f"the checkpoint has {len(unexpected)} tensors the model has no place for, "
                              f"e.g. {unexpected[:3]}", hint="check num_hidden_layers and attention_bias/mlp_bias")
    for name, param in params.items():
        if name not in state:
            continue
        value = state[name]
        if tuple(value.shape) != tuple(param.shape):
            raise CheckpointError(f"{name} is {tuple(value.shape)} in the checkpoint but {tuple(param.shape)} in "
                                  "the model")
        check_dtype(name, value, param)
        if tied and name == "lm_head.weight" and not torch.equal(value, state["model.embed_tokens.weight"]):
            raise CheckpointError("the model ties its LM head to the embedding, but the checkpoint's lm_head.weight "
                                  "differs from model.embed_tokens.weight", hint="set tied_embeddings: false")
        param.copy_(value.to(param.dtype))


def build_from_hf_config(hf: dict[str, Any], runtime: Any = None, *, device: Any = None,
                         dtype: torch.dtype | None = None, source: str = "config.json") -> nn.Module:
    """Build (without weights) the ``system.language_model`` an HF ``config.json`` describes."""
    import caramba_layers.plugin
    from caramba import Runtime
    from caramba.nn import Builder
    from caramba_layers.specs.language_model import LanguageModelConfig

    runtime = runtime or Runtime(autoload=False, plugins=[caramba_layers.plugin])
    config = runtime.parse(LanguageModelConfig, {"model": model_config_from_hf(hf)}, source=source)
    factory = runtime.get("system", "system.language_model").load()
    return factory(config, Builder(runtime, device=device, dtype=dtype))


def from_pretrained(path: str | Path, runtime: Any = None, *, device: Any = None,
                    dtype: torch.dtype | None = None) -> nn.Module:
    """Build a ``system.language_model`` from an HF checkpoint folder and load its weights."""
    model = build_from_hf_config(read_config(path), runtime, device=device, dtype=dtype,
                                 source=f"{path}/config.json")
    load_weights(model, load_state(path))
    return model


def export(model: nn.Module, path: str | Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for a Llama-layout model; returns the folder."""
    from safetensors.torch import save

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    hf = hf_config_from_model(model.config.model)
    params = llama_parameters(model)
    tied = model.head.weight is params["model.embed_tokens.weight"]
    tensors = {name: p.detach().to(dtype or p.dtype).contiguous().cpu().clone() for name, p in params.items()
               if not (tied and name == "lm_head.weight")}
    hf["torch_dtype"] = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    atomic_write_bytes(folder / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    atomic_write_json(folder / "config.json", hf)
    return folder


class HFCheckpoint:
    """The ``hf`` checkpoint format: what trainers use to load a teacher through the registry.

    ``model_config(path)`` gives the ``model:`` mapping, ``build(runtime)`` a loaded model,
    ``load_into(model)`` fills an already built one, ``save(model, path)`` exports.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self.dtype = getattr(torch, config.dtype) if config is not None else torch.float32

    def _path(self, path: str | Path | None) -> str | Path:
        path = path or (self.config.path if self.config is not None else "")
        if not path:
            raise CheckpointError("no checkpoint path given", hint="set path: in the checkpoint config")
        return path

    def hf_config(self, path: str | Path | None = None) -> dict[str, Any]:
        return read_config(self._path(path))

    def model_config(self, path: str | Path | None = None) -> dict[str, Any]:
        return model_config_from_hf(self.hf_config(path))

    def state(self, path: str | Path | None = None) -> dict[str, torch.Tensor]:
        return load_state(self._path(path))

    def tokenizer(self, path: str | Path | None = None) -> Any:
        """The folder's ``tokenizer.json`` as a ``tokenizers.Tokenizer``, or ``None`` without one."""
        file = resolve(self._path(path)) / "tokenizer.json"
        if not file.exists():
            return None
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(file))

    def build(self, runtime: Any = None, path: str | Path | None = None, *, device: Any = None) -> nn.Module:
        return from_pretrained(self._path(path), runtime, device=device, dtype=self.dtype)

    def load_into(self, model: nn.Module, path: str | Path | None = None) -> None:
        load_weights(model, load_state(self._path(path)))

    def save(self, model: nn.Module, path: str | Path) -> Path:
        return export(model, path)
