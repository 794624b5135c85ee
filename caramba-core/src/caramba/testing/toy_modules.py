"""Torch halves of :mod:`caramba.testing.toy`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caramba.graph import Context
from caramba.graph.modules import NodeModule, TopologyModule
from caramba.pipeline import Benchmark, BenchmarkResult, RunResult, Trainer, Verifier, VerifyResult


class ToyLinear(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.linear = nn.Linear(config.d_in, config.d_out, bias=config.bias)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.linear(x)


class ToySequential(TopologyModule):
    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, ctx)
        return x


class ToySystem(nn.Module):
    def __init__(self, config: Any, builder: Any) -> None:
        super().__init__()
        self.model = builder.build(config.model, "model")

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        return self.model(x, ctx or Context())


class ToyRegression:
    def __init__(self, config: Any) -> None:
        g = torch.Generator().manual_seed(config.seed)
        self.x = torch.randn(config.n, config.d_in, generator=g)
        w = torch.randn(config.d_in, config.d_out, generator=g)
        self.y = self.x @ w + config.noise * torch.randn(config.n, config.d_out, generator=g)


class ToyMSE:
    def __init__(self, config: Any) -> None:
        pass

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.mean((pred - target) ** 2)


class ToyTrainer(Trainer):
    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        run = session.run
        train = run.train or session.runtime.get("trainer", "trainer.toy").extras["run_config"]()
        torch.manual_seed(run.seed)
        model = session.build_system()
        data = session.create("dataset", session.target.data)
        loss_fn = session.create("objective", session.target.objective)
        opt = torch.optim.SGD(model.parameters(), lr=train.lr)
        g = torch.Generator().manual_seed(run.seed)
        loss = torch.tensor(float("nan"))
        for step in range(1, run.steps + 1):
            idx = torch.randint(0, data.x.shape[0], (train.batch_size,), generator=g)
            loss = loss_fn(model(data.x[idx]), data.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            session.log(step, {"loss": loss.item()})
        return RunResult(models={"model": model}, metrics={"loss": loss.item()})


class ToyLoss(Benchmark):
    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        data = session.create("dataset", session.target.data)
        rows = []
        with torch.no_grad():
            for role, model in models.items():
                rows.append({"model": session.label(role), "mse": float(torch.mean((model(data.x) - data.y) ** 2))})
        return BenchmarkResult("toy_loss", rows, {r["model"]: r["mse"] for r in rows})


class ToyThreshold(Verifier):
    def __init__(self, config: Any) -> None:
        self.config = config

    def verify(self, session: Any, result: RunResult) -> VerifyResult:
        loss = result.metrics["loss"]
        ok = loss <= self.config.max_loss
        return VerifyResult("toy_threshold", ok, {"loss": loss}, f"loss {loss:.4g} vs max {self.config.max_loss}")
