"""System configs built on the layers here: ``system.generic``, ``system.mlp_classifier``, ``system.gcn``.

Torch-free. A system's ``check(scope)`` runs shape inference over its model when the manifest
is validated; ``num_params`` and ``kv_elements_per_token`` feed ``--dry-run``.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

import msgspec

from caramba import Config, NodeConfig, Scope, Shape
from caramba_layers.specs import Component
from caramba_layers.specs.lora import LoRAConfig

__all__ = ["COMPONENTS", "GCNSystemConfig", "GenericSystemConfig", "MLPClassifierConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]
Dim = Positive | Annotated[str, msgspec.Meta(min_length=1)]

_M = "caramba_layers.modules.generic"


class GenericSystemConfig(Config, kw_only=True):
    """Any node graph as a system: ``{output_key: model(batch[input_key])}``.

    ``input_shape`` is the shape of ``batch[input_key]`` (symbols allowed: ``["B", 64]``) and
    drives validation. Batch entries named in ``extra_keys`` that are present go to
    ``ctx.extras`` (``adj`` for graph layers). ``lora:`` adapts the built model (see
    ``caramba_layers.modules.lora``).
    """

    model: NodeConfig
    input_shape: Annotated[list[Dim], msgspec.Meta(min_length=1)]
    input_key: str = "inputs"
    output_key: str = "logits"
    extra_keys: list[str] = msgspec.field(default_factory=lambda: ["adj"])
    lora: LoRAConfig | None = None

    def check(self, scope: Scope) -> None:
        scope.infer(self.model, Shape(*self.input_shape), "model")

    def num_params(self) -> int:
        return self.model.num_params()

    def kv_elements_per_token(self) -> int:
        return self.model.kv_elements_per_token()


class MLPClassifierConfig(Config, kw_only=True):
    """``n_layers`` hidden ``DenseLayer``s (``d_hidden``, activation, dropout), then a linear head.

    Batch ``{input_key: (B, d_in)}`` → ``{output_key: (B, n_classes)}``.
    """

    d_in: Positive
    d_hidden: Positive
    n_layers: NonNegative = 2
    n_classes: Positive
    dropout: Probability = 0.0
    activation: Literal["relu", "gelu", "silu"] = "relu"
    input_key: str = "inputs"
    output_key: str = "logits"

    def num_params(self) -> int:
        widths = [self.d_in] + [self.d_hidden] * self.n_layers + [self.n_classes]
        return sum(a * b + b for a, b in pairwise(widths))

    def kv_elements_per_token(self) -> int:
        return 0

    def input_width(self) -> tuple[str, int]:
        """``(field, width)``: validate checks it against the dataset's input width."""
        return ("d_in", self.d_in)


class GCNSystemConfig(Config, kw_only=True):
    """Kipf & Welling's two-layer GCN: ``gcn(dropout → d_hidden) → ReLU → gcn(dropout → n_classes)``.

    Batch ``{input_key: (N, d_in), adj_key: (N, N)}`` → ``{output_key: (N, n_classes)}``.
    """

    d_in: Positive
    d_hidden: Positive
    n_classes: Positive
    dropout: Probability = 0.0
    input_key: str = "inputs"
    adj_key: str = "adj"
    output_key: str = "logits"

    def num_params(self) -> int:
        return self.d_in * self.d_hidden + self.d_hidden + self.d_hidden * self.n_classes + self.n_classes

    def kv_elements_per_token(self) -> int:
        return 0

    def input_width(self) -> tuple[str, int]:
        """``(field, width)``: validate checks it against the dataset's input width."""
        return ("d_in", self.d_in)


COMPONENTS = [
    Component("system", "system.generic", GenericSystemConfig, f"{_M}:GenericSystem",
              "any node graph applied to one batch entry"),
    Component("system", "system.mlp_classifier", MLPClassifierConfig, f"{_M}:MLPClassifier",
              "MLP classifier built from DenseLayers"),
    Component("system", "system.gcn", GCNSystemConfig, f"{_M}:GCNSystem", "two-layer GCN node classifier"),
]
