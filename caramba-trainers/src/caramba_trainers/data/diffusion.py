"""``dataset.diffusion_vector``: vectors ``x0`` and their DDPM forward-process samples.

A batch holds ``x0`` (B, D), ``t`` (B,) int64 in ``[0, timesteps)``, ``eps`` (B, D) ~ N(0, I),
``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (Ho et al. 2020, eq. 4), also as ``inputs``,
and ``t_frac = t / timesteps`` (B,) float. The noise is a function of (seed, step), so
a batch is as reproducible as any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from caramba import require
from caramba_trainers.data.base import ArrayDataset, rng_for
from caramba_trainers.data.supervised import load_npy
from caramba_trainers.data_checks import DATASETS_EXTRA

__all__ = ["DiffusionVectorDataset", "alpha_bars"]


def alpha_bars(timesteps: int, schedule: str, beta_start: float, beta_end: float) -> np.ndarray:
    """Cumulative ``prod(1 - beta)``: linear betas (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021)."""
    if schedule == "linear":
        betas = np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
        return np.cumprod(1.0 - betas)
    s = 0.008
    f = np.cos((np.arange(timesteps + 1) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    return np.cumprod(1.0 - betas)


def _source(config: Any) -> np.ndarray:
    if config.source == "npy":
        return np.asarray(load_npy(config.x_path, "x_path"), dtype=np.float32)
    require("sklearn", package="scikit-learn", extra=DATASETS_EXTRA,
            needed_by="dataset.diffusion_vector with a digits source")
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float64)
    if config.source == "digits":
        return (x / 8.0 - 1.0).astype(np.float32)  # pixels 0..16 -> [-1, 1]
    # digits_2d: the first two principal components, standardised (a real 2-D distribution).
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    z = x @ vt[:2].T
    return ((z - z.mean(axis=0)) / z.std(axis=0)).astype(np.float32)


class DiffusionVectorDataset(ArrayDataset):
    def __init__(self, config: Any) -> None:
        x0 = _source(config)
        self.timesteps = config.timesteps
        self.abar = alpha_bars(config.timesteps, config.beta_schedule, config.beta_start, config.beta_end)
        super().__init__({"x0": x0}, val_frac=config.val_frac, split_seed=config.split_seed,
                         meta={"d_in": int(x0.shape[1]), "timesteps": config.timesteps})

    def _noised(self, out: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        x0 = out["x0"]
        t = rng.integers(0, self.timesteps, size=len(x0))
        eps = torch.from_numpy(rng.standard_normal(tuple(x0.shape)).astype(np.float32))
        ab = torch.from_numpy(self.abar[t].astype(np.float32))[:, None]
        x_t = ab.sqrt() * x0 + (1.0 - ab).sqrt() * eps
        t_frac = torch.from_numpy((t / self.timesteps).astype(np.float32))
        return {"x0": x0, "x_t": x_t, "inputs": x_t, "t": torch.from_numpy(t.astype(np.int64)),
                "t_frac": t_frac, "eps": eps}

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict[str, torch.Tensor]:
        return self._noised(super().batch(split, index, batch_size, seed=seed), rng_for(seed, index, 0xD1FF))

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Iterator[dict]:
        for i, out in enumerate(super().iter_batches(split, batch_size, limit=limit)):
            yield self._noised(out, rng_for(i, 0x7A1))  # fixed noise: val losses are comparable
