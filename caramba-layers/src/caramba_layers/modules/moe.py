"""``MoELayer``: top-k routed SwiGLU experts, executed as one batched matmul per projection.

Routing (Shazeer et al. 2017): ``p = softmax(x W_r + b_r)``, keep the top-k, renormalise.
Execution: the ``N·k`` (token, expert) slots are sorted by expert and scattered into an
``(E, C, d)`` buffer (``C`` = capacity, or the busiest expert's load when dropless); both
SwiGLU projections are then single ``bmm``s over all experts, and results are gathered
back and weight-summed per token. No Python loop runs over experts.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["MoELayer", "route"]


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Router math in at least fp32 (bf16 softmax over experts is too coarse)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(probs (N, E), weights (N, k), experts (N, k))``; weights are the renormalised top-k probs."""
    probs = _upcast(logits).softmax(dim=-1)
    top, experts = probs.topk(top_k, dim=-1)
    weights = top / top.sum(dim=-1, keepdim=True)
    return probs, weights, experts


class MoELayer(NodeModule):
    def __init__(self, config: Any) -> None:
        super().__init__(config)
        d, f, e = config.d_model, config.d_ff, config.num_experts
        self.router = nn.Linear(d, e, bias=config.bias)
        # A zero router starts every expert equally likely, so early routing is balanced.
        nn.init.zeros_(self.router.weight)
        if config.bias:
            nn.init.zeros_(self.router.bias)
        self.w_gate_up = nn.Parameter(torch.randn(e, d, 2 * f) * 0.02)
        self.w_down = nn.Parameter(torch.randn(e, f, d) * 0.02)
        self.b_gate_up = nn.Parameter(torch.zeros(e, 2 * f)) if config.bias else None
        self.b_down = nn.Parameter(torch.zeros(e, d)) if config.bias else None
        self.router.requires_grad_(config.gate_requires_grad)
        for p in (self.w_gate_up, self.b_gate_up):
            if p is not None:
                p.requires_grad_(config.up_requires_grad)
        for p in (self.w_down, self.b_down):
            if p is not None:
                p.requires_grad_(config.down_requires_grad)

    def capacity(self, n_tokens: int) -> int | None:
        cf = self.config.capacity_factor
        if cf is None:
            return None
        return max(1, math.ceil(cf * n_tokens * self.config.top_k / self.config.num_experts))

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        cfg = self.config
        shape = x.shape
        tokens = x.reshape(-1, shape[-1])  # (N, d)
        n, k, e = tokens.shape[0], cfg.top_k, cfg.num_experts

        logits = self.router(tokens)  # (N, E)
        _, weights, experts = route(logits, k)
        if ctx.training:
            self._add_aux_losses(ctx, logits, experts)

        # Slots in priority order: every token's 1st choice, then every 2nd choice, ...
        slot_expert = experts.T.reshape(-1)  # (k·N,)
        slot_token = torch.arange(n, device=x.device).repeat(k)
        slot_weight = weights.T.reshape(-1)
        order = torch.sort(slot_expert, stable=True).indices
        slot_expert, slot_token, slot_weight = slot_expert[order], slot_token[order], slot_weight[order]
        counts = torch.bincount(slot_expert, minlength=e)  # (E,)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(slot_expert.numel(), device=x.device) - starts[slot_expert]

        cap = self.capacity(n)
        if cap is None:
            cap = int(counts.max().item()) if n else 0
        else:
            keep = rank < cap
            slot_expert, slot_token, slot_weight, rank = (
                slot_expert[keep], slot_token[keep], slot_weight[keep], rank[keep])

        buf = tokens.new_zeros(e, cap, shape[-1])  # (E, C, d)
        buf[slot_expert, rank] = tokens[slot_token]
        h = torch.bmm(buf, self.w_gate_up)  # (E, C, 2f)
        if self.b_gate_up is not None:
            h = h + self.b_gate_up[:, None]
        gate, up = h.chunk(2, dim=-1)
        out = torch.bmm(F.silu(gate) * up, self.w_down)  # (E, C, d)
        if self.b_down is not None:
            out = out + self.b_down[:, None]

        y = torch.zeros_like(tokens)
        contrib = out[slot_expert, rank] * slot_weight[:, None].to(out.dtype)
        y = y.index_add(0, slot_token, contrib)
        return y.reshape(shape)

    def _add_aux_losses(self, ctx: Context, logits: torch.Tensor, experts: torch.Tensor) -> None:
        cfg = self.config
        e = cfg.num_experts
        if cfg.load_balancing and cfg.load_balancing_loss_weight > 0:
            p = (_upcast(logits) / cfg.load_balancing_loss_temperature).softmax(-1).mean(0)  # (E,)
            if cfg.load_balancing_loss_type == "switch":
                # Switch Transformer eq. 4: differentiable through P, f counts the routed slots.
                f = torch.bincount(experts.reshape(-1), minlength=e).to(p.dtype) / experts.numel()
                loss = e * torch.sum(f * p)
            elif cfg.load_balancing_loss_type == "kl":
                loss = torch.sum((1.0 / e) * (math.log(1.0 / e) - torch.log(p.clamp_min(1e-12))))
            else:
                loss = e * torch.sum((p - 1.0 / e) ** 2)
            ctx.add_aux_loss(self.node_path, "load_balancing", loss, cfg.load_balancing_loss_weight)
        if cfg.router_z_loss_weight > 0:
            # ST-MoE (Zoph et al. 2022) eq. 5: keeps router logits small.
            z = torch.logsumexp(_upcast(logits), dim=-1).square().mean()
            ctx.add_aux_loss(self.node_path, "router_z", z, cfg.router_z_loss_weight)
