"""Optimizers and learning-rate schedules.

Optimizer factories take ``(params, *, lr, weight_decay, betas, eps, momentum, nesterov,
fused, device)`` and ignore what does not apply; :func:`build_optimizer` looks one up by
its registered name. A :class:`Schedule` is a pure function of the step, so its state is
the step counter alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["Lion", "Schedule", "build_adafactor", "build_adamw", "build_lion", "build_optimizer", "build_sgd",
           "param_groups"]


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Alg. 2).

    Per step, with gradient ``g`` and momentum ``m``::

        c = beta1 * m + (1 - beta1) * g          # interpolation, used only for the sign
        p = p * (1 - lr * wd) - lr * sign(c)     # decoupled weight decay
        m = beta2 * m + (1 - beta2) * g          # the EMA kept across steps

    ``m`` is updated once per step, after the parameter (the original code updated it twice).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if lr <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid Lion settings lr={lr}, betas={betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                c = m.mul(beta1).add_(p.grad, alpha=1.0 - beta1)
                if wd:
                    p.mul_(1.0 - lr * wd)
                p.add_(c.sign_(), alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: biases, norm gains and other 1-D parameters are not decayed."""
    decay, keep = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else keep).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    return groups


def _fused_ok(device: Any, fused: bool | None) -> bool:
    if fused is not None:
        return fused
    return torch.device(device).type == "cuda"


def build_adamw(params: Any, *, lr: float, weight_decay: float = 0.0, betas: Any = None, eps: float = 1e-8,
                fused: bool | None = None, device: Any = "cpu", **_: Any) -> torch.optim.Optimizer:
    kw: dict[str, Any] = {"fused": True} if _fused_ok(device, fused) else {}
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas or (0.9, 0.999)), eps=eps,
                             weight_decay=weight_decay, **kw)


def build_sgd(params: Any, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
              nesterov: bool = False, **_: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def build_lion(params: Any, *, lr: float, weight_decay: float = 0.0, betas: Any = None, **_: Any) -> Lion:
    return Lion(params, lr=lr, betas=tuple(betas or (0.9, 0.99)), weight_decay=weight_decay)


def build_optimizer(runtime: Any, name: str, model: torch.nn.Module, train: Any,
                    device: Any = "cpu") -> torch.optim.Optimizer:
    """The optimizer a run's ``train:`` block names, over ``model``'s trainable parameters."""
    factory = runtime.get("optimizer", name).load()
    return factory(param_groups(model, train.weight_decay), lr=train.lr, weight_decay=train.weight_decay,
                   betas=train.betas, eps=train.eps, momentum=train.momentum, nesterov=train.nesterov,
                   fused=train.fused_optimizer, device=device)


class Schedule:
    """Learning-rate multiplier of the step: linear warmup, then constant, linear or cosine decay.

    ``multiplier(s)`` is the factor for optimizer step ``s`` (0-based): ``(s + 1) / warmup``
    during warmup, then with progress ``p = (s - warmup) / (total - warmup)`` in [0, 1]:
    constant ``1``; linear ``1 - (1 - r) p``; cosine ``r + (1 - r)(1 + cos(pi p)) / 2``
    (Loshchilov & Hutter 2017), where ``r`` is ``min_lr_ratio``.
    """

    def __init__(self, kind: str, *, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> None:
        self.kind = kind
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio

    @classmethod
    def constant(cls, **kw: Any) -> Schedule:
        return cls("constant", **kw)

    @classmethod
    def linear(cls, **kw: Any) -> Schedule:
        return cls("linear", **kw)

    @classmethod
    def cosine(cls, **kw: Any) -> Schedule:
        return cls("cosine", **kw)

    def multiplier(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        p = min(1.0, (step - self.warmup_steps) / span)
        r = self.min_lr_ratio
        if self.kind == "linear":
            return 1.0 - (1.0 - r) * p
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * p))

    def apply(self, optimizer: torch.optim.Optimizer, step: int, base_lr: float) -> float:
        """Set every group's ``lr`` for optimizer step ``step``; returns it."""
        lr = base_lr * self.multiplier(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr_ratio": self.min_lr_ratio}


def build_schedule(runtime: Any, name: str, *, total_steps: int, warmup_steps: int,
                   min_lr_ratio: float) -> Schedule:
    factory = runtime.get("scheduler", name).load()
    return factory(total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)


def build_adafactor(params: Any, *, lr: float, weight_decay: float = 0.0, **_: Any) -> torch.optim.Optimizer:
    """torch's Adafactor (Shazeer & Stern 2018): factored second moments, no first moment."""
    return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
