"""Attention configs: standard, grouped-query (GQA) and decoupled bottleneck attention (DBA).

Torch-free. The module lives in :mod:`caramba_layers.modules.attention`; the rotary
embedding it uses in :mod:`caramba_layers.modules.rope`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["AttentionLayerConfig", "RopeScaling"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]


class RopeScaling(Config, kw_only=True):
    """RoPE frequency scaling, with the field names of Hugging Face's ``rope_scaling``.

    ``linear``: every frequency divided by ``factor`` (position interpolation).
    ``dynamic``: NTK-aware base growth once a call sees more than ``max_position_embeddings``
    positions. ``yarn``: per-band interpolation plus an attention temperature
    (arXiv:2309.00071). ``llama3``: the Llama 3.1 piecewise rescale.
    """

    rope_type: Literal["linear", "dynamic", "yarn", "llama3"]
    factor: Annotated[float, msgspec.Meta(gt=0.0)] = 8.0
    # llama3
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: Positive = 8192
    # dynamic
    max_position_embeddings: Positive = 2048
    # yarn
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True

    def check(self, scope: Scope) -> None:
        if self.rope_type == "llama3" and self.high_freq_factor <= self.low_freq_factor:
            scope.error("high_freq_factor", "high_freq_factor must be larger than low_freq_factor")


class AttentionLayerConfig(NodeConfig, kw_only=True):
    """Multi-head self-attention: ``mode`` standard, gqa or decoupled (DBA).

    Standard/GQA: ``q_proj: d_model→attn_dim``, ``k_proj, v_proj: d_model→n_kv_heads·head_dim``,
    ``out_proj: attn_dim→d_model`` with ``head_dim = attn_dim / n_heads``; RoPE on q and k.

    Decoupled (DBA): per head, a semantic and a geometric query/key,
    ``s = q_sem·k_sem/√d_s + q_geo·k_geo/√d_g`` with RoPE on the geometric part only;
    ``sem_dim``/``geo_dim`` are totals over the ``n_heads`` query heads and ``attn_dim`` is
    the value width. ``kv_groups`` lets groups of query heads share one semantic key,
    geometric key and value (as GQA does), which shrinks the KV cache by
    ``n_heads / kv_groups``; ``n_kv_heads`` is not used by DBA itself (it is the teacher's
    GQA layout when a DBA student is upcycled from a standard model).
    """

    d_model: Positive
    n_heads: Positive
    n_kv_heads: Positive | None = None
    mode: Literal["standard", "gqa", "decoupled"] = "standard"
    attn_dim: Positive | None = None
    sem_dim: Positive | None = None
    geo_dim: Positive | None = None
    kv_groups: Positive | None = None
    rope_enabled: bool = True
    rope_base: Annotated[float, msgspec.Meta(gt=0.0)] = 10000.0
    rope_scaling: RopeScaling | None = None
    rope_semantic: bool = False
    tie_qk: bool = False
    null_attn: bool = False
    decoupled_gate: bool = False
    decoupled_gate_dynamic: bool = False
    is_causal: bool = True
    dropout_p: Probability = 0.0
    bias: bool = False
    out_bias: bool | None = None  # the output projection's bias; null: as ``bias`` (Qwen2: bias, no out_bias)
    learned_temp: bool = False
    q_chunk: Positive | None = None
    local_window: Positive | None = None

    # -- derived sizes -------------------------------------------------------------------
    @property
    def decoupled(self) -> bool:
        return self.mode == "decoupled"

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_heads`` (standard/GQA) or ``kv_groups`` (DBA)."""
        if self.decoupled:
            return self.kv_groups or self.n_heads
        return self.n_kv_heads or self.n_heads

    @property
    def v_dim(self) -> int:
        """Width of the concatenated value heads of all query heads (``attn_dim``)."""
        return self.attn_dim or self.d_model

    @property
    def head_dim(self) -> int:
        """Query/key/value head width of standard and GQA attention."""
        return self.v_dim // self.n_heads

    @property
    def sem_head_dim(self) -> int:
        return (self.sem_dim or 0) // self.n_heads

    @property
    def geo_head_dim(self) -> int:
        return (self.geo_dim or 0) // self.n_heads

    @property
    def v_head_dim(self) -> int:
        return self.v_dim // self.n_heads

    def cache_fields(self) -> dict[str, tuple[int, ...]]:
        """Per-token tensors a KV cache holds for this layer: ``{name: (heads, width)}``."""
        g = self.kv_heads
        if self.decoupled:
            return {"k_sem": (g, self.sem_head_dim), "k_geo": (g, self.geo_head_dim), "v": (g, self.v_head_dim)}
        return {"k": (g, self.head_dim), "v": (g, self.head_dim)}

    # -- NodeConfig ----------------------------------------------------------------------
    def check(self, scope: Scope) -> None:
        """Heads, groups and RoPE widths, checked when the config decodes (so it never builds wrong)."""
        for problem in self.problems():
            scope.error(*problem)

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def problems(self) -> list[tuple[str, str, str]]:
        """Every inconsistency between fields as ``(field, message, hint)``."""
        out: list[tuple[str, str, str]] = []
        h = self.n_heads
        if self.v_dim % h:
            name = "attn_dim" if self.attn_dim else "d_model"
            out.append((name, f"{name} ({self.v_dim}) is not divisible by n_heads ({h})",
                        f"pick n_heads among the divisors of {self.v_dim}"))
        dba_only = ("sem_dim", "geo_dim", "kv_groups", "rope_semantic", "tie_qk", "null_attn",
                    "decoupled_gate", "decoupled_gate_dynamic")
        if not self.decoupled:
            kv = self.kv_heads
            if h % kv:
                out.append(("n_kv_heads", f"n_kv_heads ({kv}) does not divide n_heads ({h})",
                            "each key/value head serves n_heads / n_kv_heads query heads"))
            if self.mode == "gqa" and self.n_kv_heads is None:
                out.append(("n_kv_heads", "mode: gqa needs n_kv_heads", "set n_kv_heads below n_heads"))
            if self.rope_enabled and not self.v_dim % h and self.head_dim % 2:
                out.append(("n_heads", f"RoPE needs an even head dim, got {self.head_dim}",
                            "change attn_dim or n_heads, or set rope_enabled: false"))
            defaults = {f.name: f.default for f in msgspec.structs.fields(type(self))}
            for name in dba_only:
                if getattr(self, name) != defaults[name]:
                    out.append((name, f"{name} is only used by mode: decoupled", "remove it or set mode: decoupled"))
            return out
        for name in ("sem_dim", "geo_dim"):
            value = getattr(self, name)
            if value is None:
                out.append((name, f"mode: decoupled needs {name}", f"set {name} to a multiple of n_heads"))
            elif value % h:
                out.append((name, f"{name} ({value}) is not divisible by n_heads ({h})",
                            "sem_dim and geo_dim are totals over the query heads"))
        g = self.kv_heads
        if h % g:
            out.append(("kv_groups", f"kv_groups ({g}) does not divide n_heads ({h})",
                        "each key/value group serves n_heads / kv_groups query heads"))
        if self.tie_qk and g != h:
            out.append(("tie_qk", ("tie_qk shares the query projection as the semantic key, so it needs "
                                   "kv_groups equal to n_heads"), "remove kv_groups or tie_qk"))
        if self.decoupled_gate_dynamic and not self.decoupled_gate:
            out.append(("decoupled_gate_dynamic", ("decoupled_gate_dynamic adds an input term to the gate, "
                                                   "so it needs decoupled_gate: true"), "set decoupled_gate: true"))
        if self.rope_enabled and self.geo_dim and not self.geo_dim % h and self.geo_head_dim % 2:
            out.append(("geo_dim", (f"RoPE needs an even geometric head dim, got {self.geo_head_dim} "
                                    f"(geo_dim {self.geo_dim} / n_heads {h})"), "make geo_dim / n_heads even"))
        if (self.rope_enabled and self.rope_semantic and self.sem_dim and not self.sem_dim % h
                and self.sem_head_dim % 2):
            out.append(("sem_dim", f"rope_semantic needs an even semantic head dim, got {self.sem_head_dim}",
                        "make sem_dim / n_heads even"))
        return out

    def num_params(self) -> int:
        d, h, b = self.d_model, self.n_heads, int(self.bias)
        if not self.decoupled:
            q = self.v_dim
            kv = self.kv_heads * self.head_dim
            temp = h if self.learned_temp else 0
            return d * q + b * q + 2 * (d * kv + b * kv) + q * d + b * d + temp
        g = self.kv_heads
        ds, dg, dv = self.sem_head_dim, self.geo_head_dim, self.v_head_dim
        total = 0
        for width in (h * ds, h * dg, g * dg, g * dv):  # q_sem, q_geo, k_geo, v_proj
            total += d * width + b * width
        if not self.tie_qk:
            total += d * g * ds + b * g * ds  # k_sem
        total += h * dv * d + b * d  # out_proj
        if self.null_attn:
            total += g * (ds + dg + dv)
        if self.decoupled_gate:
            total += h
        if self.decoupled_gate_dynamic:
            total += d * h
        if self.learned_temp:
            total += h
        return total

    def kv_elements_per_token(self) -> int:
        """Cached elements per token, V included: standard/GQA ``2·kv·hd``, DBA ``g·(d_s+d_g+d_v)``."""
        return sum(heads * width for heads, width in self.cache_fields().values())


COMPONENTS = [
    Component("layer", "AttentionLayer", AttentionLayerConfig, "caramba_layers.modules.attention:AttentionLayer",
              "multi-head self-attention: standard, GQA or decoupled bottleneck (DBA)"),
]
