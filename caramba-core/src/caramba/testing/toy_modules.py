"""Torch halves of :mod:`caramba.testing.toy`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from caramba.graph import Context
from caramba.graph._modules import NodeModule, TopologyModule
from caramba.pipeline import Benchmark, BenchmarkResult, RunResult, Trainer, Verifier, VerifyResult


class ToyLinear(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.linear = nn.Linear(config.d_in, config.d_out, bias=config.bias)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        y: torch.Tensor = self.linear(x)
        return y


class ToySequential(TopologyModule):
    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        for layer in self.layers:
            x = layer(x, ctx)
        return x


class ToySystem(nn.Module):
    """``system.toy``: ``{input_key: (B, d_in)}`` in, ``{output_key: (B, d_out)}`` out."""

    def __init__(self, config: Any, builder: Any) -> None:
        super().__init__()
        self.config = config
        self.model = builder.build(config.model, "model")

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        y = self.model(batch[self.config.input_key], ctx or Context())
        return {self.config.output_key: y}


class ToyRegression:
    """``n`` points of ``y = x W + noise``; batches are ``{"inputs", "targets"}``."""

    def __init__(self, config: Any) -> None:
        g = torch.Generator().manual_seed(config.seed)
        self.x = torch.randn(config.n, config.d_in, generator=g)
        w = torch.randn(config.d_in, config.d_out, generator=g)
        self.y = self.x @ w + config.noise * torch.randn(config.n, config.d_out, generator=g)

    def __len__(self) -> int:
        return self.x.shape[0]

    def all(self) -> dict[str, torch.Tensor]:
        return {"inputs": self.x, "targets": self.y}

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(0, len(self), (batch_size,), generator=generator)
        return {"inputs": self.x[idx], "targets": self.y[idx]}


class ToyMSE:
    """``objective.toy_mse``: mean squared error of ``outputs["logits"]`` against ``batch["targets"]``."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                 ctx: Context | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        mse = torch.mean((outputs["logits"] - batch["targets"]) ** 2)
        loss = mse + (ctx or Context()).total_aux_loss()
        return loss, {"mse": float(mse.detach())}


class ToyTrainer(Trainer):
    """``trainer.toy``: plain SGD for ``run.steps`` steps; the trained model is the ``student``."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        run = session.run
        train = run.train or session.runtime.get("trainer", "trainer.toy").run_config()
        torch.manual_seed(run.seed)
        model = session.build_system()
        data = session.create("dataset", session.target.data)
        objective = session.create("objective", session.target.objective)
        opt = torch.optim.SGD(model.parameters(), lr=train.lr)
        g = torch.Generator().manual_seed(run.seed)
        loss = torch.tensor(float("nan"))
        for step in range(1, run.steps + 1):
            batch = data.sample(train.batch_size, g)
            ctx = Context(training=True)
            loss, metrics = objective(model(batch, ctx), batch, ctx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            session.log(step, {"loss": loss.item(), **metrics})
        return RunResult(models={"student": model}, metrics={"loss": loss.item()})


class ToyLoss(Benchmark):
    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        batch = session.create("dataset", session.target.data).all()
        rows = []
        with torch.no_grad():
            for role, model in models.items():
                mse = torch.mean((model(batch, Context())["logits"] - batch["targets"]) ** 2)
                rows.append({"model": session.label(role), "mse": float(mse)})
        return BenchmarkResult("toy_loss", rows, {r["model"]: r["mse"] for r in rows})


class ToyThreshold(Verifier):
    def __init__(self, config: Any) -> None:
        self.config = config

    def verify(self, session: Any, result: RunResult) -> VerifyResult:
        loss = result.metrics["loss"]
        ok = loss <= self.config.max_loss
        return VerifyResult("toy_threshold", ok, {"loss": loss}, f"loss {loss:.4g} vs max {self.config.max_loss}")
