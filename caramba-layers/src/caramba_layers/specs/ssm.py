"""Config of ``SSMLayer``: a Mamba-1 selective state-space block (torch-free)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from caramba import NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "SSMLayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]


class SSMLayerConfig(NodeConfig, kw_only=True):
    """Mamba-1 block (Gu & Dao 2023): ``d_inner = expand · d_model``.

    ``dt_proj``'s bias is the inverse softplus of ``dt ~ LogUniform[dt_min, dt_max]`` floored
    at ``dt_init_floor``; its weight is ``dt_scale · dt_rank^-0.5`` (``dt_init: constant``) or
    uniform in ± that (``random``). ``dt_rank: auto`` is ``ceil(d_model / 16)``.
    """

    d_model: Positive
    d_state: Positive = 16
    d_conv: Positive = 4
    expand: Positive = 2
    dt_rank: Positive | Literal["auto"] = "auto"
    dt_min: PositiveFloat = 0.001
    dt_max: PositiveFloat = 0.1
    dt_init: Literal["random", "constant"] = "random"
    dt_scale: PositiveFloat = 1.0
    dt_init_floor: PositiveFloat = 1e-4
    bias: bool = False
    conv_bias: bool = True

    def check(self, scope: Scope) -> None:
        if self.dt_min > self.dt_max:
            scope.error("dt_min", f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max})")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else self.dt_rank

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def num_params(self) -> int:
        d, di, n, r = self.d_model, self.d_inner, self.d_state, self.rank
        in_proj = d * 2 * di + (2 * di if self.bias else 0)
        conv = di * self.d_conv + (di if self.conv_bias else 0)
        x_proj = di * (r + 2 * n)
        dt_proj = r * di + di
        out_proj = di * d + (d if self.bias else 0)
        return in_proj + conv + x_proj + dt_proj + di * n + di + out_proj


COMPONENTS = [
    Component("layer", "SSMLayer", SSMLayerConfig, "caramba_layers.modules.ssm:SSMLayer",
              "Mamba-1 selective state-space block with a recurrent decode state"),
]
