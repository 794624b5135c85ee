"""PIDAO: gradient descent driven by a PID controller (Chen et al. 2024, "Accelerated optimization
in deep learning with a proportional-integral-derivative controller", Nat. Commun. 15, 10263).

The continuous-time system is a damped heavy ball whose force is a PID law on the gradient::

    x'' + a x' + kp grad f(x) + ki integral(grad f) + kd d/dt grad f(x) = 0

written as ``x' = y - kd g``, ``y' = -a y - (kp - a kd) g - ki z``, ``z' = g``. The published
semi-implicit discretisation (PIDAO-SI), with step ``h = lr`` and ``g`` the gradient plus the
L2 term ``weight_decay * x``::

    z_{k+1} = z_k + h g_k                                               # I: integral
    y_{k+1} = (y_k - h (kp - a kd) g_k - h ki z_{k+1}) / (1 + a h)       # P and damping, implicit in a
    x_{k+1} = x_k + h y_{k+1} - h kd g_k                                # D enters through -kd g

Defaults are the authors' discrete-time settings (``a = 100/9, kp = 1000/9, ki = 0.1, kd = 1``),
whose steady step is about ``-10 lr g``, so lr is an SGD-like learning rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["PIDAO", "build_pidao"]


class PIDAO(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-2, *, damping: float = 100 / 9,
                 kp: float = 1000 / 9, ki: float = 0.1, kd: float = 1.0, weight_decay: float = 0.0) -> None:
        if lr <= 0 or damping < 0:
            raise ValueError(f"invalid PIDAO settings lr={lr}, damping={damping}")
        super().__init__(params, {"lr": lr, "damping": damping, "kp": kp, "ki": ki, "kd": kd,
                                  "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            h, a = group["lr"], group["damping"]
            kp, ki, kd = group["kp"], group["ki"], group["kd"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "integral" not in state:
                    state["integral"] = torch.zeros_like(p)
                    state["velocity"] = torch.zeros_like(p)
                z, y = state["integral"], state["velocity"]
                z.add_(g, alpha=h)
                y.add_(g, alpha=-h * (kp - a * kd)).add_(z, alpha=-h * ki).div_(1.0 + a * h)
                p.add_(y, alpha=h).add_(g, alpha=-h * kd)
        return loss


def build_pidao(params: Any, *, lr: float, weight_decay: float = 0.0, **_: Any) -> PIDAO:
    return PIDAO(params, lr=lr, weight_decay=weight_decay)
