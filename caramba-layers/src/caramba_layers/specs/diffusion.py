"""Config of ``system.diffusion_denoiser``: a DDPM ε-prediction MLP on vectors (torch-free)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, Scope
from caramba_layers.specs import Component

__all__ = ["COMPONENTS", "DiffusionDenoiserConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]


class DiffusionDenoiserConfig(Config, kw_only=True):
    """``ε_θ(x_t, t)``: an MLP on ``[x_t, emb(t)]`` with a sinusoidal time embedding (Ho et al. 2020).

    The schedule (``num_train_timesteps``, ``beta_schedule``, ``beta_start``, ``beta_end``)
    must equal the dataset's when the dataset noises the batch (``dataset.diffusion_vector``).
    """

    d_in: Positive
    d_hidden: Positive = 256
    time_dim: Positive = 64
    n_layers: Positive = 2
    num_train_timesteps: Positive = 1000
    beta_schedule: Literal["linear", "cosine"] = "linear"
    beta_start: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 1e-4
    beta_end: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.02

    def check(self, scope: Scope) -> None:
        if self.time_dim % 2:
            scope.error("time_dim", f"time_dim must be even (sin and cos halves), got {self.time_dim}")
        if self.beta_start > self.beta_end:
            scope.error("beta_start", f"beta_start ({self.beta_start}) exceeds beta_end ({self.beta_end})")

    def num_params(self) -> int:
        d, h, e = self.d_in, self.d_hidden, self.time_dim
        return (e * e + e) + ((d + e) * h + h) + (self.n_layers - 1) * (h * h + h) + (h * d + d)

    def kv_elements_per_token(self) -> int:
        return 0

    def input_width(self) -> tuple[str, int]:
        """``(field, width)``: validate checks it against the dataset's input width."""
        return ("d_in", self.d_in)


COMPONENTS = [
    Component("system", "system.diffusion_denoiser", DiffusionDenoiserConfig,
              "caramba_layers.modules.diffusion:DiffusionDenoiser",
              "DDPM eps-prediction MLP with DDPM and DDIM samplers"),
]
