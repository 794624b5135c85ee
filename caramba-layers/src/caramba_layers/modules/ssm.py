"""``SSMLayer``: Mamba-1 (Gu & Dao 2023, arXiv:2312.00752) with a parallel scan and a decode state.

Per channel ``c`` and state ``n``: ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t``,
``y_t = C_t · h_t + D x_t``. The recurrence is affine, so it composes associatively
(``(a1, u1) ∘ (a2, u2) = (a1 a2, a2 u1 + u2)``) and :func:`selective_scan` evaluates it
with a Hillis–Steele scan: ``ceil(log2 T)`` tensor steps instead of ``T`` Python steps.
Decoding carries ``{"conv": last d_conv-1 inputs, "ssm": h}`` in a
:class:`~caramba.nn.RecurrentState`, so any split of a sequence into calls
gives the same output as one call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context
from caramba.nn import NodeModule

__all__ = ["SSMLayer", "selective_scan", "sequential_scan"]


def selective_scan(a: torch.Tensor, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """All states of ``h_t = a_t h_{t-1} + u_t``; ``a, u: (B, T, ...)``, ``h0: (B, ...)``.

    Inclusive Hillis–Steele scan over time. Products of decays only shrink (``0 < a ≤ 1``
    for Mamba), so no step can overflow, unlike a cumulative-sum-in-log-space formulation.
    """
    if h0 is not None:
        u = torch.cat([a[:, :1] * h0[:, None] + u[:, :1], u[:, 1:]], dim=1)
    t = a.shape[1]
    offset = 1
    while offset < t:
        # (a, u)[t] ∘= (a, u)[t - offset]; positions before ``offset`` see the identity (1, 0).
        a_prev = torch.cat([torch.ones_like(a[:, :offset]), a[:, :-offset]], dim=1)
        u_prev = torch.cat([torch.zeros_like(u[:, :offset]), u[:, :-offset]], dim=1)
        u = a * u_prev + u
        a = a * a_prev
        offset *= 2
    return u


def sequential_scan(a: torch.Tensor, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """The same recurrence one step at a time (the reference; used for single-token decode)."""
    h = torch.zeros_like(u[:, 0]) if h0 is None else h0
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + u[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


class SSMLayer(NodeModule):
    static_decode = True  # reads ctx.decode: state updated in place, padding skipped

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        d, di, n, r = config.d_model, config.d_inner, config.d_state, config.rank
        self.in_proj = nn.Linear(d, 2 * di, bias=config.bias)
        self.conv1d = nn.Conv1d(di, di, config.d_conv, groups=di, bias=config.conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.out_proj = nn.Linear(di, d, bias=config.bias)
        # S4D-real initialisation: A_n = -(n + 1) for every channel.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.reset_dt()
        self._scan_kernel: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None

    # -- kernels (bound by caramba.select_kernels, never chosen in forward) --
    def kernel_ops(self) -> tuple[str, ...]:
        return ("selective_scan",)

    def use_kernel(self, op: str, fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        """``selective_scan(x, dt, A, B, C, D, h0) -> (y (B, T, di), last state (B, di, N))``."""
        self._scan_kernel = fn

    @torch.no_grad()
    def reset_dt(self) -> None:
        """Mamba's Δ initialisation (paper §3.6, reference ``mamba_simple.py``)."""
        cfg = self.config
        std = cfg.rank ** -0.5 * cfg.dt_scale
        if cfg.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        u = torch.rand(cfg.d_inner)
        dt = torch.exp(u * (math.log(cfg.dt_max) - math.log(cfg.dt_min)) + math.log(cfg.dt_min))
        dt = dt.clamp(min=cfg.dt_init_floor)
        # softplus(dt + log(1 - exp(-dt))) == dt: the inverse softplus, stable for small dt.
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def state_fields(self) -> dict[str, tuple[int, ...]]:
        cfg = self.config
        return {"conv": (cfg.d_inner, cfg.d_conv - 1), "ssm": (cfg.d_inner, cfg.d_state)}

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        cfg = self.config
        state = ctx.cache(self.node_path)
        prev = state.tensors if state is not None else None
        bsz, t, _ = x.shape

        xz = self.in_proj(x)  # (B, T, 2·di)
        xs, z = xz.chunk(2, dim=-1)
        keep = None
        if ctx.decode is not None:
            # Left padding of a batch: a pad token neither enters the conv window nor moves the state.
            keep = (ctx.decode.slots[None, :] >= ctx.decode.pad[:, None]).unsqueeze(-1).to(xs.dtype)  # (B, T, 1)
            xs = xs * keep
        xs = xs.transpose(1, 2)  # (B, di, T)
        # Causal depthwise conv: the d_conv-1 inputs before this call (zeros at the start).
        window = prev["conv"] if prev is not None else xs.new_zeros(bsz, cfg.d_inner, cfg.d_conv - 1)
        padded = torch.cat([window.to(xs.dtype), xs], dim=-1)  # (B, di, d_conv-1+T)
        xs = F.silu(self.conv1d(padded)).transpose(1, 2)  # (B, T, di)

        dbc = self.x_proj(xs)
        dt, b, c = dbc.split([cfg.rank, cfg.d_state, cfg.d_state], dim=-1)  # (B,T,r) (B,T,N) (B,T,N)
        dt = F.softplus(self.dt_proj(dt))  # (B, T, di)
        if keep is not None:
            dt = dt * keep  # decay exp(0) = 1 and no drive: the state passes a pad token unchanged
        a = -torch.exp(self.A_log.to(xs.dtype))  # (di, N)
        h0 = prev["ssm"].to(xs.dtype) if prev is not None else None
        if self._scan_kernel is not None:  # fused: never materialises (B, T, di, N)
            y, last = self._scan_kernel(xs, dt, a, b, c, self.D, h0)
        else:
            decay = torch.exp(dt[..., None] * a)  # (B, T, di, N)
            drive = (dt * xs)[..., None] * b[:, :, None, :]  # (B, T, di, N)
            scan = sequential_scan if t == 1 else selective_scan
            h = scan(decay, drive, h0)  # (B, T, di, N)
            y = torch.einsum("btdn,btn->btd", h, c) + self.D * xs
            last = h[:, -1]
        y = y * F.silu(z)

        if state is not None:
            conv, ssm = padded[..., padded.shape[-1] - (cfg.d_conv - 1):].detach(), last.detach().to(xs.dtype)
            if ctx.decode is not None and prev is not None:
                prev["conv"].copy_(conv)  # in place: the decoder keeps these addresses fixed
                prev["ssm"].copy_(ssm)
            else:
                state.tensors = {"conv": conv, "ssm": ssm}
            if ctx.decode is None:
                state.length += t
        return self.out_proj(y)
