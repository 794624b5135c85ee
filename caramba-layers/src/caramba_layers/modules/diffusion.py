"""DDPM on vectors: noise schedule, ``q_sample``, ancestral and DDIM sampling, and the MLP denoiser.

Ho et al. 2020 (arXiv:2006.11239): ``q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 − ᾱ_t) I)``, the
network predicts ε, and ancestral sampling draws
``x_{t-1} = (x_t − β_t / sqrt(1 − ᾱ_t) ε) / sqrt(α_t) + σ_t z`` with ``σ_t² = β̃_t``.
DDIM (Song et al. 2021, arXiv:2010.02502, eq. 12) walks a subsequence of timesteps;
``eta = 0`` is deterministic.

``system.diffusion_denoiser`` batch contract (training):

* ``{"x_t", "t", "eps", ...}`` (``dataset.diffusion_vector``): returns ``{"pred_eps": ε_θ(x_t, t)}``;
* ``{"x0"}`` only: the system draws ``t ~ U{0..T-1}`` and ``ε ~ N(0, I)`` from the torch
  RNG (seed it for reproducibility), noises ``x0`` and returns
  ``{"pred_eps", "eps", "x_t", "t"}``.

Either way the loss is ``mse(pred_eps, eps)`` (``objective.diffusion_eps``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import CarambaError, Context

__all__ = ["DiffusionDenoiser", "NoiseSchedule", "ddim_sample", "ddpm_sample", "timestep_embedding"]


class NoiseSchedule(nn.Module):
    """``β_t``, ``α_t = 1 − β_t`` and ``ᾱ_t = Π_{s≤t} α_s`` for ``t = 0..T-1`` (float64 buffers)."""

    def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        t = num_train_timesteps
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, t, dtype=torch.float64)
        else:  # cosine (Nichol & Dhariwal 2021, eq. 17), clipped at 0.999
            s = 0.008
            f = torch.cos((torch.arange(t + 1, dtype=torch.float64) / t + s) / (1 + s) * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(0.0, 0.999)
        self.num_train_timesteps = t
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas", 1.0 - betas, persistent=False)
        self.register_buffer("alpha_bars", torch.cumprod(1.0 - betas, 0), persistent=False)

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # (B,) → (B, 1, ..., 1) in like's dtype, for broadcasting over features
        return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε`` (Ho et al. 2020, eq. 4)."""
        ab = self._at(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer sinusoids of integer timesteps: ``(B,) → (B, dim)``, ``[cos | sin]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@torch.no_grad()
def ddpm_sample(eps_fn: Any, shape: tuple[int, ...], schedule: NoiseSchedule, *,
                generator: torch.Generator | None = None, device: Any = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ancestral sampling from ``x_T ~ N(0, I)`` through all ``T`` steps; ``eps_fn(x, t) → ε``."""
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    for step in reversed(range(schedule.num_train_timesteps)):
        t = torch.full((shape[0],), step, device=x.device, dtype=torch.long)
        eps = eps_fn(x, t)
        beta, alpha, ab = (float(v[step]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars))
        mean = (x - beta / math.sqrt(1 - ab) * eps) / math.sqrt(alpha)
        if step == 0:
            return mean
        ab_prev = float(schedule.alpha_bars[step - 1])
        var = beta * (1 - ab_prev) / (1 - ab)  # posterior variance β̃_t (eq. 7)
        z = torch.randn(shape, generator=generator, device=x.device, dtype=dtype)
        x = mean + math.sqrt(var) * z
    return x


@torch.no_grad()
def ddim_sample(eps_fn: Any, shape: tuple[int, ...], schedule: NoiseSchedule, *, steps: int = 50,
                eta: float = 0.0, generator: torch.Generator | None = None, device: Any = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DDIM over ``steps`` evenly spaced timesteps; ``eta = 1`` recovers DDPM-like noise."""
    T = schedule.num_train_timesteps
    if not 1 <= steps <= T:
        raise CarambaError(f"DDIM steps must be in 1..{T}, got {steps}")
    times = torch.linspace(T - 1, 0, steps).round().long().tolist()
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    for i, step in enumerate(times):
        t = torch.full((shape[0],), step, device=x.device, dtype=torch.long)
        eps = eps_fn(x, t)
        ab = float(schedule.alpha_bars[step])
        ab_prev = float(schedule.alpha_bars[times[i + 1]]) if i + 1 < len(times) else 1.0
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(shape, generator=generator, device=x.device, dtype=dtype)
    return x


class DiffusionDenoiser(nn.Module):
    """``system.diffusion_denoiser``: ``ε_θ(x_t, t)`` plus :meth:`sample`."""

    def __init__(self, config: Any, builder: Any = None) -> None:
        super().__init__()
        self.config = config
        self.schedule = NoiseSchedule(config.num_train_timesteps, config.beta_schedule, config.beta_start,
                                      config.beta_end)
        e, h = config.time_dim, config.d_hidden
        self.time_mlp = nn.Linear(e, e)
        layers: list[nn.Module] = [nn.Linear(config.d_in + e, h), nn.SiLU()]
        for _ in range(config.n_layers - 1):
            layers += [nn.Linear(h, h), nn.SiLU()]
        layers.append(nn.Linear(h, config.d_in))
        self.net = nn.Sequential(*layers)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise: ``x_t (B, d_in)``, ``t (B,)`` integer timesteps → ``(B, d_in)``."""
        emb = F.silu(self.time_mlp(timestep_embedding(t, self.config.time_dim).to(x_t.dtype)))
        return self.net(torch.cat([x_t, emb], dim=-1))

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        if "x_t" in batch and "t" in batch:
            return {"pred_eps": self.eps(batch["x_t"], batch["t"])}
        if "x0" not in batch:
            raise CarambaError(f"system.diffusion_denoiser needs batch 'x0' (or 'x_t' and 't'), got {sorted(batch)}",
                               hint="use dataset.diffusion_vector, or a dataset yielding x0")
        x0 = batch["x0"]
        t = torch.randint(0, self.schedule.num_train_timesteps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.schedule.q_sample(x0, t, eps)
        return {"pred_eps": self.eps(x_t, t), "eps": eps, "x_t": x_t, "t": t}

    @torch.no_grad()
    def sample(self, n: int, *, method: str = "ddpm", steps: int = 50, eta: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new vectors ``(n, d_in)`` by ancestral DDPM or DDIM (``steps``, ``eta``)."""
        p = next(self.parameters())
        shape = (n, self.config.d_in)
        if method == "ddpm":
            return ddpm_sample(self.eps, shape, self.schedule, generator=generator, device=p.device, dtype=p.dtype)
        if method == "ddim":
            return ddim_sample(self.eps, shape, self.schedule, steps=steps, eta=eta, generator=generator,
                               device=p.device, dtype=p.dtype)
        raise CarambaError(f"unknown sampling method '{method}'", hint="use 'ddpm' or 'ddim'")
