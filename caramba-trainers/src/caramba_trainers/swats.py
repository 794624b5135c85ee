"""SWATS: start with Adam, switch to SGD (Keskar & Socher 2017, "Improving Generalization
Performance by Switching from Adam to SGD", Algorithm 1).

In the Adam phase each step ``p_k`` (the bias-corrected Adam update) is projected on the
gradient: ``gamma_k = (p_k . p_k) / (-p_k . g_k)`` is the SGD learning rate whose step,
projected on ``p_k``, equals Adam's. ``lambda_k`` is its ``beta2`` EMA; once the
bias-corrected estimate ``Lambda = lambda_k / (1 - beta2^k)`` agrees with ``gamma_k`` to
within ``switch_tol`` (from the second step on), the optimizer switches for good to SGD
with momentum::

    v_k = beta1 v_{k-1} + g_k          (v starts at zero)
    w_k = w_{k-1} - (1 - beta1) Lambda v_k

The dot products run over every parameter, as the paper treats the weights as one vector.
The phase, ``Lambda`` and the switch step live in the param groups (``swats_*`` keys), so
``state_dict()`` carries them and a checkpoint resumes in the right phase. A schedule that
changes ``lr`` after the switch scales ``Lambda`` by the same factor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["SWATS", "build_swats"]


class SWATS(torch.optim.Optimizer):
    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, switch_tol: float = 1e-9) -> None:
        if lr <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid SWATS settings lr={lr}, betas={betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "switch_tol": switch_tol, "swats_k": 0, "swats_lambda": 0.0,
                                  "swats_sgd_lr": None, "swats_lr_at_switch": None, "swats_switch_step": None})

    @property
    def phase(self) -> str:
        return "sgd" if self.param_groups[0]["swats_sgd_lr"] is not None else "adam"

    @property
    def sgd_lr(self) -> float | None:
        """``Lambda``, the SGD learning rate chosen at the switch (``None`` before it)."""
        return self.param_groups[0]["swats_sgd_lr"]

    @property
    def switch_step(self) -> int | None:
        return self.param_groups[0]["swats_switch_step"]

    def _grad(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return p.grad if not group["weight_decay"] else p.grad.add(p, alpha=group["weight_decay"])

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            group["swats_k"] += 1
        if self.phase == "sgd":
            self._sgd_step()
        else:
            self._adam_step()
        return loss

    def _sgd_step(self) -> None:
        for group in self.param_groups:
            beta1 = group["betas"][0]
            lr = group["swats_sgd_lr"] * group["lr"] / group["swats_lr_at_switch"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                v = state["momentum_buffer"]
                v.mul_(beta1).add_(self._grad(p, group))
                p.add_(v, alpha=-(1.0 - beta1) * lr)

    def _adam_step(self) -> None:
        pg = torch.zeros((), dtype=torch.float64)
        pp = torch.zeros((), dtype=torch.float64)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            k = group["swats_k"]
            step_size = group["lr"] * (1.0 - beta2 ** k) ** 0.5 / (1.0 - beta1 ** k)
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self._grad(p, group)
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, a = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1.0 - beta1)
                a.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                update = m / (a.sqrt() + group["eps"]) * -step_size
                p.add_(update)
                pg += (update.double() * g.double()).sum().cpu()
                pp += (update.double() * update.double()).sum().cpu()
        if float(pg) == 0.0:
            return
        gamma = float(pp) / -float(pg)
        first = self.param_groups[0]
        beta2, k = first["betas"][1], first["swats_k"]
        lam = beta2 * first["swats_lambda"] + (1.0 - beta2) * gamma
        estimate = lam / (1.0 - beta2 ** k)
        switch = k > 1 and abs(estimate - gamma) < first["switch_tol"]
        for group in self.param_groups:
            group["swats_lambda"] = lam
            if switch:
                group.update(swats_sgd_lr=estimate, swats_lr_at_switch=group["lr"], swats_switch_step=k)


def build_swats(params: Any, *, lr: float, weight_decay: float = 0.0, betas: Any = None, eps: float = 1e-8,
                **_: Any) -> SWATS:
    return SWATS(params, lr=lr, betas=tuple(betas or (0.9, 0.999)), eps=eps, weight_decay=weight_decay)
