"""Configs of the plain building blocks: ``DenseLayer``, ``Conv2dLayer``, ``RNNLayer`` (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import NodeConfig, Scope, Shape, ShapeError, expect_last
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "Conv2dLayerConfig", "DenseLayerConfig", "RNNLayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]
Pair = Positive | Annotated[list[Positive], msgspec.Meta(min_length=2, max_length=2)]

_M = "caramba_layers.modules.dense"


class DenseLayerConfig(NodeConfig, kw_only=True):
    """``dropout(activation(norm(x W^T + b)))``: one MLP block."""

    d_in: Positive
    d_out: Positive
    bias: bool = True
    activation: Literal["relu", "gelu", "silu"] | None = None
    normalization: Literal["layer_norm", "rms_norm"] | None = None
    dropout: Probability = 0.0

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_in, "d_in")
        return x.with_last(self.d_out)

    def num_params(self) -> int:
        linear = self.d_in * self.d_out + (self.d_out if self.bias else 0)
        norm = {"layer_norm": 2 * self.d_out, "rms_norm": self.d_out, None: 0}[self.normalization]
        return linear + norm


def _pair(v: int | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


class Conv2dLayerConfig(NodeConfig, kw_only=True):
    """``torch.nn.Conv2d`` on ``(B, C, H, W)`` (or unbatched ``(C, H, W)``) inputs."""

    in_channels: Positive
    out_channels: Positive
    kernel_size: Pair
    stride: Pair = 1
    padding: NonNegative | list[NonNegative] | Literal["same", "valid"] = 0
    dilation: Pair = 1
    groups: Positive = 1
    bias: bool = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"

    def check(self, scope: Scope) -> None:
        if self.in_channels % self.groups or self.out_channels % self.groups:
            scope.error("groups", f"in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                        f"must be divisible by groups ({self.groups})")
        if isinstance(self.padding, list) and len(self.padding) != 2:
            scope.error("padding", "padding must be an int, a pair [h, w], 'same' or 'valid'")
        if self.padding == "same" and _pair(self.stride) != (1, 1):
            scope.error("padding", "padding: same needs stride 1 (as in torch.nn.Conv2d)")

    def infer(self, x: Shape, scope: Scope) -> Shape:
        if x.rank not in (3, 4):
            raise ShapeError(f"Conv2dLayer expects (B, C, H, W) or (C, H, W), got {x}", field="in_channels")
        c = x[-3]
        if isinstance(c, int) and c != self.in_channels:
            raise ShapeError(f"input has {c} channels but in_channels is {self.in_channels}",
                             field="in_channels", hint=f"set in_channels: {c}")
        k, s, d = _pair(self.kernel_size), _pair(self.stride), _pair(self.dilation)
        if self.padding == "same":
            p = None
        elif self.padding == "valid":
            p = (0, 0)
        else:
            p = _pair(self.padding)  # type: ignore[arg-type]
        out: list[int | str] = []
        for i, size in enumerate(x[-2:]):
            if p is None or isinstance(size, str):
                out.append(size)
                continue
            n = (size + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
            if n <= 0:
                raise ShapeError(f"input size {size} is too small for kernel_size {k[i]}", field="kernel_size")
            out.append(n)
        return Shape(*x[:-3], self.out_channels, *out)

    def num_params(self) -> int:
        k = _pair(self.kernel_size)
        w = self.out_channels * (self.in_channels // self.groups) * k[0] * k[1]
        return w + (self.out_channels if self.bias else 0)


class RNNLayerConfig(NodeConfig, kw_only=True):
    """A torch RNN (LSTM, GRU, Elman) over ``(B, T, input_size)``; returns the output sequence."""

    cell_type: Literal["lstm", "gru", "rnn_tanh", "rnn_relu"] = "lstm"
    input_size: Positive
    hidden_size: Positive
    num_layers: Positive = 1
    bias: bool = True
    batch_first: bool = True
    dropout: Probability = 0.0
    bidirectional: bool = False
    proj_size: NonNegative = 0

    def check(self, scope: Scope) -> None:
        if self.proj_size and self.cell_type != "lstm":
            scope.error("proj_size", "proj_size is only supported by cell_type: lstm")
        if self.dropout and self.num_layers == 1:
            scope.error("dropout", "dropout acts between stacked layers; it needs num_layers > 1")
        if self.proj_size >= self.hidden_size:
            scope.error("proj_size", f"proj_size ({self.proj_size}) must be smaller than hidden_size "
                        f"({self.hidden_size})")

    @property
    def out_features(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)

    def infer(self, x: Shape, scope: Scope) -> Shape:
        if x.rank not in (2, 3):
            raise ShapeError(f"RNNLayer expects (B, T, input_size) or (T, input_size), got {x}", field="input_size")
        expect_last(x, self.input_size, "input_size")
        return x.with_last(self.out_features)

    def num_params(self) -> int:
        gates = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}[self.cell_type]
        h, real_h = self.hidden_size, self.proj_size or self.hidden_size
        dirs = 2 if self.bidirectional else 1
        total = 0
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else real_h * dirs
            per_dir = gates * h * (d_in + real_h) + (2 * gates * h if self.bias else 0)
            per_dir += self.proj_size * h
            total += per_dir * dirs
        return total


COMPONENTS = [
    Component("layer", "DenseLayer", DenseLayerConfig, f"{_M}:DenseLayer",
              "linear map with optional norm, activation and dropout"),
    Component("layer", "Conv2dLayer", Conv2dLayerConfig, f"{_M}:Conv2dLayer", "2-D convolution (torch Conv2d)"),
    Component("layer", "RNNLayer", RNNLayerConfig, f"{_M}:RNNLayer",
              "LSTM / GRU / Elman RNN returning the output sequence"),
]
