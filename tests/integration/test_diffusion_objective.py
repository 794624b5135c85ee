"""objective.diffusion_eps with system.diffusion_denoiser, for both batch contracts."""

from __future__ import annotations

import torch

import caramba
from caramba.pipeline._session import TargetSession

MANIFEST = """
version: 2
targets:
  - name: t
    data: dataset.diffusion_vector
    system: {ref: system.diffusion_denoiser, config: {d_in: 2, d_hidden: 16, time_dim: 8, n_layers: 1}}
    objective: objective.diffusion_eps
    trainer: trainer.standard
"""


def _parts():
    rt = caramba.Runtime()
    manifest = rt.load_manifest_text(MANIFEST)
    session = TargetSession(rt, manifest, manifest.target("t"), None)
    return session.build_system(), session.create("objective", manifest.target("t").objective)


def test_an_x0_only_batch_is_scored_against_the_noise_the_system_drew() -> None:
    model, objective = _parts()
    torch.manual_seed(0)
    outputs = model({"x0": torch.randn(6, 2)})
    loss, _ = objective(outputs, {"x0": torch.randn(6, 2)})
    expected = ((outputs["pred_eps"] - outputs["eps"]) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_a_noised_batch_is_scored_against_its_own_noise() -> None:
    model, objective = _parts()
    batch = {"x_t": torch.randn(6, 2), "t": torch.arange(6), "eps": torch.randn(6, 2)}
    outputs = model(batch)
    loss, _ = objective(outputs, batch)
    torch.testing.assert_close(loss, ((outputs["pred_eps"] - batch["eps"]) ** 2).mean())
