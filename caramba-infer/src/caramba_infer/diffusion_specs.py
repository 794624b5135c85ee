"""Torch-free config of the ``diffusion_samples`` benchmark (see :mod:`caramba_infer.diffusion`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import BenchmarkConfig

__all__ = ["DiffusionSamplesConfig"]


class DiffusionSamplesConfig(BenchmarkConfig, kw_only=True):
    """Sample a generative model and score the samples against the held-out split.

    ``n_samples: 0`` draws as many samples as there are held-out rows. ``steps`` and ``eta``
    apply to ``method: ddim``; ``ddpm`` walks every training timestep.
    """

    n_samples: Annotated[int, msgspec.Meta(ge=0)] = 0
    method: Literal["ddpm", "ddim"] = "ddpm"
    steps: Annotated[int, msgspec.Meta(gt=0)] = 50
    eta: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    seed: int = 0
    split: Literal["val", "test"] = "val"
    max_rows: Annotated[int, msgspec.Meta(gt=0)] = 2000
