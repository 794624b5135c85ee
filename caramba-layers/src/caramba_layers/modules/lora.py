"""LoRA (Hu et al. 2021, arXiv:2106.09685) as a layer and as a pass over a built model.

``apply_lora(model, targets=["q_proj", "v_proj"], r=8, alpha=16)`` replaces every matching
``nn.Linear`` with a :class:`LoRALinear` that *is* an ``nn.Linear`` holding the same
``weight``/``bias`` tensors (so base checkpoint keys are unchanged) plus ``lora_A (r, d_in)``
and ``lora_B (d_out, r)``; it freezes every other parameter. ``merge_lora`` folds
``B A · alpha/r`` into the weights for inference and ``unmerge_lora`` takes it out again.
Adapters are saved alone (``save_adapters``: safetensors + a JSON of the settings) and
loaded onto a model built from the same manifest (``load_adapters``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import CarambaError, CheckpointError, Context, atomic_write_bytes, atomic_write_json
from caramba.nn import NodeModule

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "LoRALinear",
    "LoRALinearLayer",
    "apply_lora",
    "apply_lora_config",
    "load_adapters",
    "lora_modules",
    "lora_state_dict",
    "merge_lora",
    "save_adapters",
    "unmerge_lora",
]

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
_FORMAT = "caramba-lora"


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a frozen base and a low-rank update ``B A · alpha / r``.

    ``A`` is Kaiming-uniform and ``B`` zero, so a fresh adapter leaves the output unchanged.
    """

    def __init__(self, in_features: int, out_features: int, *, r: int = 8, alpha: float = 16.0,
                 dropout: float = 0.0, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._add_adapter(r, alpha, dropout)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, r: int, alpha: float, dropout: float = 0.0) -> LoRALinear:
        """Wrap ``linear``, sharing its parameters (no copy)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight = linear.weight
        new.bias = linear.bias
        new._add_adapter(r, alpha, dropout)
        return new

    def _add_adapter(self, r: int, alpha: float, dropout: float) -> None:
        w = self.weight
        self.r, self.alpha, self.dropout_p = r, float(alpha), float(dropout)
        self.scaling = self.alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout)
        self.merged = False
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)

    def delta(self) -> torch.Tensor:
        """The weight update ``B A · alpha / r``: ``(d_out, d_in)``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta().to(self.weight.dtype)
            self.merged = False

    def settings(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout_p,
                "in_features": self.in_features, "out_features": self.out_features}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        # x: (..., d_in) → (..., r) → (..., d_out)
        return y + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}, merged={self.merged}"


class LoRALinearLayer(NodeModule):
    """The ``LoRALinearLayer`` node: ``self.linear`` is a :class:`LoRALinear` (keys like ``LinearLayer``)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.linear = LoRALinear(config.d_in, config.d_out, r=config.r, alpha=config.alpha,
                                 dropout=config.dropout, bias=config.bias)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.linear(x)


# -- LoRA as a pass over a built model ---------------------------------------------------------


def _matches(name: str, targets: Iterable[str]) -> bool:
    return any(name == t or name.endswith("." + t) or fnmatchcase(name, t) for t in targets)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _freeze_all_but_adapters(model: nn.Module, train_also: Sequence[str]) -> None:
    for name, p in model.named_parameters():
        is_adapter = name.endswith((".lora_A", ".lora_B")) or name in ("lora_A", "lora_B")
        p.requires_grad_(is_adapter or _matches(name.rpartition(".")[0], train_also) or _matches(name, train_also))


def apply_lora(model: nn.Module, targets: Sequence[str], *, r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0, train_also: Sequence[str] = ()) -> list[str]:
    """Wrap every ``nn.Linear`` whose module path matches a target; return the wrapped paths.

    Freezes all parameters except the adapters (and those under ``train_also`` patterns).
    Raises :class:`~caramba.CarambaError` when no module matches: a LoRA that adapts
    nothing is always a mistake.
    """
    wrapped = []
    for name, module in list(model.named_modules()):
        if name and type(module) is nn.Linear and _matches(name, targets):
            _set_submodule(model, name, LoRALinear.from_linear(module, r=r, alpha=alpha, dropout=dropout))
            wrapped.append(name)
    if not wrapped:
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise CarambaError(f"lora targets {list(targets)} match no nn.Linear in the model",
                           path="lora.targets",
                           hint="linear layers are: " + (", ".join(linears[:12]) or "none")
                           + (" ..." if len(linears) > 12 else ""))
    _freeze_all_but_adapters(model, train_also)
    return wrapped


def apply_lora_config(model: nn.Module, config: Any) -> list[str]:
    """Apply a :class:`~caramba_layers.specs.lora.LoRAConfig` (a system's ``lora:`` block)."""
    return apply_lora(model, config.targets, r=config.r, alpha=config.alpha, dropout=config.dropout,
                      train_also=config.train_also)


def merge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for m in lora_modules(model).values():
        m.unmerge()


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors: ``{"<path>.lora_A": (r, d_in), "<path>.lora_B": (d_out, r)}``."""
    out = {}
    for name, m in lora_modules(model).items():
        prefix = f"{name}." if name else ""
        out[prefix + "lora_A"] = m.lora_A.detach()
        out[prefix + "lora_B"] = m.lora_B.detach()
    return out


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into the folder ``path`` (atomically)."""
    from safetensors.torch import save

    folder = Path(path)
    modules = lora_modules(model)
    if not modules:
        raise CarambaError("the model has no LoRA adapters to save", hint="apply_lora(model, targets=...) first")
    tensors = {k: v.contiguous().cpu() for k, v in lora_state_dict(model).items()}
    atomic_write_bytes(folder / ADAPTER_WEIGHTS, save(tensors))
    atomic_write_json(folder / ADAPTER_CONFIG, {
        "format": _FORMAT, "version": 1,
        "modules": {name: m.settings() for name, m in modules.items()},
    })
    return folder


def load_adapters(model: nn.Module, path: str | Path, *, train_also: Sequence[str] = ()) -> list[str]:
    """Load adapters saved by :func:`save_adapters` onto a model with the same base layout.

    Plain ``nn.Linear`` modules named in the file are wrapped first; every tensor must fit.
    Returns the adapted module paths.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        meta = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except FileNotFoundError as exc:
        raise CheckpointError(f"no LoRA adapters at {folder}: {exc.filename} is missing",
                              hint="save them with save_adapters(model, folder)") from exc
    except (json.JSONDecodeError, SafetensorError) as exc:
        raise CheckpointError(f"corrupt LoRA adapters at {folder}: {exc}") from exc
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{folder / ADAPTER_CONFIG} is not a caramba LoRA adapter config")
    names = list(meta["modules"])
    for name, s in meta["modules"].items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"adapter for '{name}' but the model has no such module",
                                  path=name, hint="build the model from the manifest the adapters were trained on"
                                  ) from None
        if type(module) is nn.Linear:
            module = LoRALinear.from_linear(module, r=s["r"], alpha=s["alpha"], dropout=s["dropout"])
            _set_submodule(model, name, module)
        if not isinstance(module, LoRALinear):
            raise CheckpointError(f"adapter for '{name}' but that module is a {type(module).__name__}, "
                                  "not a linear layer", path=name)
        if (module.r, module.in_features, module.out_features) != (s["r"], s["in_features"], s["out_features"]):
            raise CheckpointError(
                f"adapter for '{name}' has r={s['r']} on a {s['in_features']}→{s['out_features']} linear; the "
                f"model's is r={module.r} on {module.in_features}→{module.out_features}", path=name)
        merged = module.merged
        module.unmerge()
        with torch.no_grad():
            for key in ("lora_A", "lora_B"):
                full = f"{name}.{key}" if name else key
                if full not in tensors:
                    raise CheckpointError(f"{folder / ADAPTER_WEIGHTS} lacks '{full}'", path=full)
                getattr(module, key).copy_(tensors[full])
        module.scaling = s["alpha"] / s["r"]
        module.alpha = float(s["alpha"])
        if merged:
            module.merge()
    _freeze_all_but_adapters(model, train_also)
    return names
