"""Rotary position embedding (RoFormer, arXiv:2104.09864) with Llama 3, linear, dynamic-NTK and YaRN scaling.

The rotation uses the half-split layout of Llama and Hugging Face (feature ``i`` pairs with
``i + dim/2``), so query/key weights from those checkpoints work without permutation. The
frequency formulas follow ``transformers.modeling_rope_utils``; the tests check them against it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["RotaryEmbedding", "inv_frequencies"]


def inv_frequencies(dim: int, base: float, scaling: Any = None,
                   seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """``(inv_freq (dim/2,) float64, attention_factor)`` for a rotary dim, base and optional scaling.

    ``seq_len`` (the number of positions a call covers) matters only for ``dynamic``.
    """
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    inv_freq = 1.0 / (base ** exponents)
    kind = getattr(scaling, "rope_type", None)
    if kind is None:
        return inv_freq, 1.0
    factor = scaling.factor
    if kind == "linear":
        return inv_freq / factor, 1.0
    if kind == "dynamic":
        # Dynamic NTK (reddit.com/r/LocalLLaMA, bloc97/emozilla): grow the base past the trained length.
        limit = scaling.max_position_embeddings
        seq_len = max(seq_len or limit, limit)
        grown = base * ((factor * seq_len / limit) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / (grown ** exponents), 1.0
    if kind == "llama3":
        old = scaling.original_max_position_embeddings
        low_wavelen = old / scaling.low_freq_factor
        high_wavelen = old / scaling.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        return torch.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        return _yarn(dim, base, scaling)
    raise ValueError(f"unknown rope_type {kind!r}")


def _yarn(dim: int, base: float, s: Any) -> tuple[torch.Tensor, float]:
    """YaRN (arXiv:2309.00071): interpolate low frequencies, keep high ones, ramp between."""
    factor = s.factor

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = s.attention_factor
    if attention is None:
        attention = mscale(factor, s.mscale) / mscale(factor, s.mscale_all_dim) if s.mscale and s.mscale_all_dim \
            else mscale(factor)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(s.original_max_position_embeddings / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    extrapolation = 1.0 / pos_freqs
    interpolation = 1.0 / (factor * pos_freqs)
    keep = 1 - ramp  # 1 where frequencies stay as trained
    return interpolation * (1 - keep) + extrapolation * keep, float(attention)


class RotaryEmbedding(nn.Module):
    """Rotates the last ``dim`` features of ``(B, T, heads, dim)`` tensors by absolute positions."""

    def __init__(self, dim: int, base: float = 10000.0, scaling: Any = None) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"RoPE needs an even dim, got {dim}")
        self.dim = dim
        self.base = base
        self.scaling = scaling
        inv_freq, attention = inv_frequencies(dim, base, scaling)
        self.attention_factor = attention
        # Kept in float64 and rounded once per call to the working precision (float32, or
        # float64 for float64 inputs), so float64 tests see exact frequencies.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _frequencies(self, positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        inv_freq = self.inv_freq
        if getattr(self.scaling, "rope_type", None) == "dynamic":
            seq_len = int(positions.max()) + 1
            inv_freq = inv_frequencies(self.dim, self.base, self.scaling, seq_len)[0].to(inv_freq.device)
        work = torch.float64 if dtype == torch.float64 else torch.float32
        return inv_freq.to(work)

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` of shape ``(..., T, 1, dim)`` for integer ``positions`` of shape ``(T,)`` or ``(B, T)``."""
        inv_freq = self._frequencies(positions, dtype)
        angles = positions.to(inv_freq.dtype)[..., None] * inv_freq  # (..., T, dim/2)
        emb = torch.cat((angles, angles), dim=-1)
        cos = (emb.cos() * self.attention_factor).to(dtype)
        sin = (emb.sin() * self.attention_factor).to(dtype)
        return cos.unsqueeze(-2), sin.unsqueeze(-2)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: (B, T, heads, dim); positions: (T,) or (B, T)
        cos, sin = self.cos_sin(positions, x.dtype)
        if cos.dim() == 3:  # (T, 1, dim) → broadcast over the batch
            cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
        return x * cos + rotate_half(x) * sin


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
