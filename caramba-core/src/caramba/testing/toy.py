"""A tiny, complete plugin: the reference implementation of every pipeline kind.

It doubles as the test double for core tests and as the smallest example of the plugin
contract. Registration here is torch-free; the modules live in
:mod:`caramba.testing.toy_modules` and are imported only when built.

Components: layer ``ToyLinear``, topology ``ToySequential``, system ``system.toy``,
dataset ``dataset.toy_regression``, objective ``objective.toy_mse``, trainer ``trainer.toy``
(plain SGD), benchmark ``toy_loss``, verifier ``toy_threshold``.

They keep to the contracts between packages: the system maps a batch dict
(``inputs``) to an output dict (``logits``); the objective is
``objective(outputs, batch, ctx) -> (loss, metrics)`` and adds ``ctx.total_aux_loss()``;
the trainer returns ``RunResult(models={"student": model})``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from caramba.graph import NodeConfig, Shape, TopologyConfig, expect_last
from caramba.manifest import Config, Scope
from caramba.manifest._schema import BenchmarkConfig, VerifierConfig
from caramba.plugins import hookimpl

_M = "caramba.testing.toy_modules"

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class ToyLinearConfig(NodeConfig, kw_only=True):
    """``y = x W^T + b``."""

    d_in: PositiveInt
    d_out: PositiveInt
    bias: bool = True

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_in, "d_in")
        return x.with_last(self.d_out)

    def num_params(self) -> int:
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)


class ToySequentialConfig(TopologyConfig, kw_only=True):
    """Children in order."""


class ToySystemConfig(Config, kw_only=True):
    """Applies ``model`` to ``batch[input_key]`` (``(B, d_in)``) and returns ``{output_key: y}``."""

    d_in: PositiveInt
    model: NodeConfig
    input_key: str = "inputs"
    output_key: str = "logits"

    def check(self, scope: Scope) -> None:
        scope.infer(self.model, Shape("B", self.d_in), "model")

    def num_params(self) -> int:
        return self.model.num_params()

    def kv_elements_per_token(self) -> int:
        return self.model.kv_elements_per_token()


class ToyRegressionConfig(Config, kw_only=True):
    n: PositiveInt = 256
    d_in: PositiveInt = 4
    d_out: PositiveInt = 1
    noise: float = 0.01
    seed: int = 0


class ToyMSEConfig(Config, kw_only=True):
    pass


class ToyTrainerRunConfig(Config, kw_only=True):
    lr: Annotated[float, msgspec.Meta(gt=0.0)] = 0.1
    batch_size: PositiveInt = 32


class ToyTrainerConfig(Config, kw_only=True):
    pass


class ToyLossConfig(BenchmarkConfig, kw_only=True):
    """Mean squared error of each model on the regression set."""


class ToyThresholdConfig(VerifierConfig, kw_only=True):
    """Passes when the run's final loss is at most ``max_loss``."""

    max_loss: float


@hookimpl
def caramba_register_layers(registry) -> None:
    registry.add("ToyLinear", config=ToyLinearConfig, factory=f"{_M}:ToyLinear", summary="a linear map")


@hookimpl
def caramba_register_topologies(registry) -> None:
    registry.add("ToySequential", config=ToySequentialConfig, factory=f"{_M}:ToySequential",
                 summary="children in order")


@hookimpl
def caramba_register_systems(registry) -> None:
    registry.add("system.toy", config=ToySystemConfig, factory=f"{_M}:ToySystem", summary="a node graph on vectors")


@hookimpl
def caramba_register_datasets(registry) -> None:
    registry.add("dataset.toy_regression", config=ToyRegressionConfig, factory=f"{_M}:ToyRegression",
                 summary="a noisy linear regression set")


@hookimpl
def caramba_register_objectives(registry) -> None:
    registry.add("objective.toy_mse", config=ToyMSEConfig, factory=f"{_M}:ToyMSE", summary="mean squared error")


@hookimpl
def caramba_register_trainers(registry) -> None:
    registry.add("trainer.toy", config=ToyTrainerConfig, factory=f"{_M}:ToyTrainer", summary="plain SGD",
                 run_config=ToyTrainerRunConfig)


@hookimpl
def caramba_register_benchmarks(registry) -> None:
    registry.add("toy_loss", config=ToyLossConfig, factory=f"{_M}:ToyLoss", summary="MSE per model")


@hookimpl
def caramba_register_verifiers(registry) -> None:
    registry.add("toy_threshold", config=ToyThresholdConfig, factory=f"{_M}:ToyThreshold",
                 summary="final loss below a bound")


__all__ = [
    "ToyLinearConfig",
    "ToyLossConfig",
    "ToyMSEConfig",
    "ToyRegressionConfig",
    "ToySequentialConfig",
    "ToySystemConfig",
    "ToyThresholdConfig",
    "ToyTrainerConfig",
    "ToyTrainerRunConfig",
]
