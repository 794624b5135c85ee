"""Config of ``MoELayer``: top-k routed SwiGLU experts with working load balancing (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import NodeConfig, Scope, Shape, expect_last
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "MoELayerConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0.0)]


class MoELayerConfig(NodeConfig, kw_only=True):
    """Mixture of SwiGLU experts (Shazeer et al. 2017; Switch, Fedus et al. 2021).

    Router ``Linear(d_model, E)`` → softmax → top-k → the k weights renormalised to sum 1.
    In training the layer adds to the context (so every objective sees them):

    * ``load_balancing`` (weight ``load_balancing_loss_weight``): ``switch`` is
      ``E · Σ_e f_e · P_e`` (1.0 at perfect balance), ``kl`` is ``KL(uniform ‖ P)``, ``mse`` is
      ``E · Σ_e (P_e − 1/E)²``; ``P`` is the mean router probability at
      ``load_balancing_loss_temperature``, ``f`` the fraction of routed slots per expert;
    * ``router_z_loss`` (weight ``router_z_loss_weight``, ST-MoE): ``mean(logsumexp(logits)²)``.

    ``capacity_factor``: each expert takes at most ``ceil(capacity_factor · N · k / E)`` token
    slots per call; first choices of all tokens are served before second choices, earlier
    tokens first; a dropped slot contributes nothing (the residual carries the token).
    ``null`` is dropless.
    """

    d_model: Positive
    num_experts: Positive = 8
    top_k: Positive = 2
    d_ff: Positive
    bias: bool = True
    gate_requires_grad: bool = True
    up_requires_grad: bool = True
    down_requires_grad: bool = True
    load_balancing: bool = True
    load_balancing_loss_weight: NonNegativeFloat = 0.01
    load_balancing_loss_type: Literal["switch", "kl", "mse"] = "switch"
    load_balancing_loss_temperature: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0
    router_z_loss_weight: NonNegativeFloat = 0.0
    capacity_factor: Annotated[float, msgspec.Meta(gt=0.0)] | None = None

    def check(self, scope: Scope) -> None:
        if self.top_k > self.num_experts:
            scope.error("top_k", f"top_k ({self.top_k}) cannot exceed num_experts ({self.num_experts})")

    def infer(self, x: Shape, scope: Scope) -> Shape:
        return expect_last(x, self.d_model, "d_model")

    def num_params(self) -> int:
        d, f, e = self.d_model, self.d_ff, self.num_experts
        total = 0
        if self.gate_requires_grad:
            total += d * e + (e if self.bias else 0)
        if self.up_requires_grad:
            total += e * d * 2 * f + (e * 2 * f if self.bias else 0)
        if self.down_requires_grad:
            total += e * f * d + (e * d if self.bias else 0)
        return total


COMPONENTS = [
    Component("layer", "MoELayer", MoELayerConfig, "caramba_layers.modules.moe:MoELayer",
              "top-k routed SwiGLU experts with load-balancing and z losses"),
]
