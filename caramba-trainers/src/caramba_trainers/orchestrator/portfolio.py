"""The portfolio: strategies resolved against the run's ``train:`` block, their optimizers,
schedules, and the carry-over of optimizer state when the run switches between them.

State moves with the switch where a sensible mapping exists (Keskar & Socher 2017 seed SGD
from Adam in the same spirit):

| from -> to | carried |
|---|---|
| same optimizer | every per-parameter state tensor, as is (and SWATS's phase) |
| AdamW/Adam/SWATS(Adam phase) -> SGD | ``momentum_buffer = exp_avg / (1 - momentum)`` (same steady-state step) |
| AdamW/Adam/SWATS(Adam phase), Lion -> Lion | ``exp_avg`` (both are EMAs of the gradient) |
| SGD -> Lion | ``exp_avg = momentum_buffer * (1 - momentum)`` |
| anything else | nothing: the new optimizer starts fresh |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from caramba import UsageError, did_you_mean
from caramba_trainers.optim import Lion, Schedule, build_schedule, param_groups
from caramba_trainers.orchestrator.specs import DEFAULT_PORTFOLIO, StrategyConfig

__all__ = ["Portfolio", "Strategy", "carry_state"]

@dataclass(frozen=True)
class Strategy:
    """A fully resolved strategy: what to build and how to schedule and clip it."""

    name: str
    optimizer: str
    lr: float
    weight_decay: float
    betas: tuple[float, float] | None
    eps: float
    momentum: float
    nesterov: bool
    scheduler: str
    warmup_steps: int
    min_lr_ratio: float
    clipping: str
    max_grad_norm: float
    description: str = ""

    @classmethod
    def resolve(cls, cfg: Any, train: Any) -> Strategy:
        def pick(field: str) -> Any:
            value = getattr(cfg, field)
            return getattr(train, field) if value is None else value

        clipping = cfg.clipping or ("global_norm" if train.grad_clip_norm > 0 else "none")
        betas = pick("betas")
        return cls(name=cfg.name, optimizer=cfg.optimizer, lr=pick("lr"), weight_decay=pick("weight_decay"),
                   betas=tuple(betas) if betas is not None else None, eps=pick("eps"), momentum=pick("momentum"),
                   nesterov=pick("nesterov"), scheduler=pick("scheduler"), warmup_steps=pick("warmup_steps"),
                   min_lr_ratio=pick("min_lr_ratio"), clipping=clipping,
                   max_grad_norm=cfg.max_grad_norm or train.grad_clip_norm or 1.0, description=cfg.description)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


class Portfolio:
    """The run's strategies in manifest order, with their optimizer factories and schedules."""

    def __init__(self, runtime: Any, strategies: list[Strategy], *, total_steps: int, where: str) -> None:
        self.strategies = strategies
        self.names = [s.name for s in strategies]
        self.factories = []
        self.schedules: list[Schedule] = []
        for i, s in enumerate(strategies):
            path = f"{where}.orchestrator.portfolio[{i}]"
            for kind, name, field in (("optimizer", s.optimizer, "optimizer"), ("scheduler", s.scheduler, "scheduler")):
                if runtime.registry(kind).find(name) is None:
                    known = sorted(n for e in runtime.registry(kind) for n in (e.name, *e.aliases))
                    raise UsageError(f"strategy '{s.name}' names unknown {kind} '{name}'", path=f"{path}.{field}",
                                     hint=f"{did_you_mean(name, known)} (caramba ls {kind} lists them)")
            self.factories.append(runtime.get("optimizer", s.optimizer).load())
            self.schedules.append(build_schedule(runtime, s.scheduler, total_steps=total_steps,
                                                 warmup_steps=s.warmup_steps, min_lr_ratio=s.min_lr_ratio))

    @classmethod
    def from_config(cls, runtime: Any, train: Any, *, total_steps: int, where: str) -> Portfolio:
        orch = train.orchestrator
        if orch.portfolio:
            strategies = [Strategy.resolve(c, train) for c in orch.portfolio]
        else:
            strategies = [Strategy.resolve(StrategyConfig(name=n, optimizer=o, lr=train.lr * k, clipping=c, **extra),
                                           train) for n, o, k, c, extra in DEFAULT_PORTFOLIO]
        return cls(runtime, strategies, total_steps=total_steps, where=where)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def build(self, i: int, model: nn.Module, device: Any) -> torch.optim.Optimizer:
        s = self.strategies[i]
        return self.factories[i](param_groups(model, s.weight_decay), lr=s.lr, weight_decay=s.weight_decay,
                                 betas=s.betas, eps=s.eps, momentum=s.momentum, nesterov=s.nesterov, device=device)

    def apply_lr(self, i: int, optimizer: torch.optim.Optimizer, step: int) -> float:
        return self.schedules[i].apply(optimizer, step, self.strategies[i].lr)


def _family(optimizer: torch.optim.Optimizer) -> str:
    from caramba_trainers.swats import SWATS

    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return "adam"
    if isinstance(optimizer, SWATS):
        return "adam" if optimizer.phase == "adam" else "swats-sgd"
    if isinstance(optimizer, torch.optim.SGD):
        return "sgd"
    if isinstance(optimizer, Lion):
        return "lion"
    return type(optimizer).__qualname__


def _momentum(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0].get("momentum", 0.0))


def carry_state(old: torch.optim.Optimizer, new: torch.optim.Optimizer, *, same_strategy_optimizer: bool) -> str:
    """Move ``old``'s per-parameter state into the freshly built ``new``; returns what was carried."""
    src, dst = _family(old), _family(new)
    params = [p for g in new.param_groups for p in g["params"]]
    moved = 0
    with torch.no_grad():
        for p in params:
            state = old.state.get(p)
            if not state:
                continue
            if same_strategy_optimizer and type(old) is type(new):
                new.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
            elif src == "adam" and dst == "sgd" and _momentum(new) > 0:
                new.state[p] = {"momentum_buffer": state["exp_avg"] / (1.0 - _momentum(new))}
            elif src in ("adam", "lion") and dst == "lion":
                new.state[p] = {"exp_avg": state["exp_avg"].clone()}
            elif src == "sgd" and dst == "lion" and "momentum_buffer" in state and state["momentum_buffer"] is not None:
                new.state[p] = {"exp_avg": state["momentum_buffer"] * (1.0 - _momentum(old))}
            else:
                continue
            moved += 1
    if same_strategy_optimizer and type(old) is type(new):
        for g_old, g_new in zip(old.param_groups, new.param_groups, strict=True):
            g_new.update({k: v for k, v in g_old.items() if k.startswith("swats_")})  # SWATS's phase
        return "all state" if moved else "fresh"
    if not moved:
        return "fresh"
    return f"{src} -> {dst}"
