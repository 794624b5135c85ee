"""Gradient clipping of a strategy: none, global norm, or adaptive per parameter (AdaGC).

AdaGC (Wang et al. 2025, "AdaGC: Improving Training Stability for Large Language Model
Pretraining") clips each parameter tensor ``i`` against its own history::

    g_i <- g_i * min(1, ratio * gamma_i / ||g_i||)
    gamma_i <- beta * gamma_i + (1 - beta) * ||g_i||     (the norm after clipping)

For the first ``warmup`` steps gradients are clipped by global norm instead, while ``gamma``
learns the scale. ``gamma`` is tracked at every step whatever the mode, so a switch into
AdaGC starts from the run's own history. Its state is a list of floats (JSON).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["GradientClipper"]

_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


class GradientClipper:
    """Called by the optimizer step on the model: clips in place, returns the global norm before."""

    def __init__(self, params: list[nn.Parameter], *, beta: float = 0.98, ratio: float = 1.05,
                 warmup: int = 100) -> None:
        self.params = params
        self.beta, self.ratio, self.warmup = beta, ratio, warmup
        self.mode = "none"
        self.max_norm = 1.0
        self.gamma: torch.Tensor | None = None  # (n_params,) float32
        self.steps = 0

    def configure(self, mode: str, max_norm: float) -> None:
        self.mode, self.max_norm = mode, max_norm

    def norm(self) -> float:
        """The global gradient norm (what the spike detector watches), without clipping."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))

    def __call__(self, model: nn.Module) -> float:
        ps = self.params
        zero = torch.zeros((), device=ps[0].device)
        norms = torch.stack([torch.linalg.vector_norm(p.grad.float()) if p.grad is not None else zero for p in ps])
        total = torch.linalg.vector_norm(norms)
        if self.mode == "global_norm" or (self.mode == "adagc" and (self.gamma is None or self.steps < self.warmup)):
            factors = torch.clamp(self.max_norm / (total + _EPS), max=1.0).expand_as(norms)
        elif self.mode == "adagc":
            factors = torch.clamp(self.ratio * self.gamma.to(norms.device) / (norms + _EPS), max=1.0)
        else:
            factors = torch.ones_like(norms)
        for p, f in zip(ps, factors, strict=True):
            if p.grad is not None:
                p.grad.mul_(f.to(p.grad.dtype))
        clipped = norms * factors
        if self.gamma is None:
            self.gamma = clipped
        else:
            self.gamma = self.beta * self.gamma.to(norms.device) + (1 - self.beta) * clipped
        self.steps += 1
        return float(total)

    def state_dict(self) -> dict[str, Any]:
        return {"gamma": None if self.gamma is None else self.gamma.tolist(), "steps": self.steps,
                "mode": self.mode, "max_norm": self.max_norm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        g = state["gamma"]
        device = self.params[0].device
        self.gamma = None if g is None else torch.tensor(g, dtype=torch.float32, device=device)
        self.steps = int(state["steps"])
        self.mode, self.max_norm = state["mode"], float(state["max_norm"])
