"""``DenseLayer``, ``Conv2dLayer`` and ``RNNLayer``: thin, exact wrappers over torch modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["Conv2dLayer", "DenseLayer", "RNNLayer", "activation"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str | None) -> nn.Module:
    return nn.Identity() if name is None else _ACTIVATIONS[name]()


class DenseLayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.linear = nn.Linear(config.d_in, config.d_out, bias=config.bias)
        if config.normalization == "layer_norm":
            self.norm: nn.Module = nn.LayerNorm(config.d_out)
        elif config.normalization == "rms_norm":
            self.norm = nn.RMSNorm(config.d_out)
        else:
            self.norm = nn.Identity()
        self.act = activation(config.activation)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.drop(self.act(self.norm(self.linear(x))))


class Conv2dLayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        padding = tuple(config.padding) if isinstance(config.padding, list) else config.padding
        self.conv = nn.Conv2d(
            config.in_channels, config.out_channels, _t(config.kernel_size), stride=_t(config.stride),
            padding=padding, dilation=_t(config.dilation), groups=config.groups, bias=config.bias,
            padding_mode=config.padding_mode,
        )

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.conv(x)


def _t(v: int | list[int]) -> int | tuple[int, ...]:
    return tuple(v) if isinstance(v, list) else v


class RNNLayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        common = {"input_size": config.input_size, "hidden_size": config.hidden_size,
                  "num_layers": config.num_layers, "bias": config.bias, "batch_first": config.batch_first,
                  "dropout": config.dropout, "bidirectional": config.bidirectional}
        if config.cell_type == "lstm":
            self.rnn: nn.RNNBase = nn.LSTM(**common, proj_size=config.proj_size)
        elif config.cell_type == "gru":
            self.rnn = nn.GRU(**common)
        else:
            self.rnn = nn.RNN(**common, nonlinearity=config.cell_type.removeprefix("rnn_"))

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        # Only the output sequence flows on; the final hidden state is not a graph output.
        out, _ = self.rnn(x)
        return out
