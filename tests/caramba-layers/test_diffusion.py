"""DDPM: the schedule and q_sample in closed form, both samplers, and a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch

from caramba.errors import ManifestError
from caramba.graph import Builder
from caramba.plugins import Runtime
from caramba_layers import plugin
from caramba_layers.modules.diffusion import (
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    timestep_embedding,
)

RT = Runtime(autoload=False, plugins=[plugin])


@pytest.fixture
def one_thread():
    """Small matmuls on a busy 2-core machine run far faster on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def denoiser(seed: int = 0, **fields):
    entry = RT.get("system", "system.diffusion_denoiser")
    cfg = RT.parse(entry.config, {"d_in": 2, "d_hidden": 32, "time_dim": 16, "n_layers": 2,
                                  "num_train_timesteps": 50, **fields})
    torch.manual_seed(seed)
    return cfg, entry.load()(cfg, builder=Builder(RT))


def test_q_sample_matches_the_closed_form():
    sched = NoiseSchedule(10, "linear", 0.1, 0.5)
    betas = [0.1 + (0.5 - 0.1) * i / 9 for i in range(10)]
    x0 = torch.randn(4, 3, dtype=torch.float64)
    eps = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 3, 7, 9])
    xt = sched.q_sample(x0, t, eps)
    for row, step in enumerate(t.tolist()):
        abar = math.prod(1 - b for b in betas[: step + 1])
        expected = math.sqrt(abar) * x0[row] + math.sqrt(1 - abar) * eps[row]
        torch.testing.assert_close(xt[row], expected)


def test_cosine_schedule_follows_nichol_and_dhariwal():
    sched = NoiseSchedule(100, "cosine")

    def f(t: float) -> float:
        return math.cos((t / 100 + 0.008) / 1.008 * math.pi / 2) ** 2
    for step in (0, 10, 50, 90):
        assert sched.alpha_bars[step].item() == pytest.approx(f(step + 1) / f(0), rel=1e-9)


def gaussian_eps(scale: float, sched: NoiseSchedule):
    """The exact ε-predictor for data x0 ~ N(0, scale² I): E[ε | x_t] = sqrt(1-ᾱ) x_t / (ᾱ s² + 1 - ᾱ)."""
    def eps(x, t):
        ab = sched.alpha_bars[t].to(x.dtype)[:, None]
        return (1 - ab).sqrt() * x / (ab * scale**2 + 1 - ab)
    return eps


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_samplers_with_the_exact_denoiser_recover_the_data_distribution(method):
    sched = NoiseSchedule(200, "linear", 1e-4, 0.05)
    g = torch.Generator().manual_seed(0)
    if method == "ddpm":
        x = ddpm_sample(gaussian_eps(0.5, sched), (4000, 2), sched, generator=g, dtype=torch.float64)
    else:
        x = ddim_sample(gaussian_eps(0.5, sched), (4000, 2), sched, steps=40, generator=g, dtype=torch.float64)
    assert x.shape == (4000, 2)
    assert x.std().item() == pytest.approx(0.5, abs=0.03)
    assert x.mean().abs().item() < 0.03


def test_system_predicts_eps_for_noised_batches_and_noises_x0_batches_itself():
    cfg, model = denoiser()
    assert cfg.num_params() == sum(p.numel() for p in model.parameters())
    x_t, t = torch.randn(5, 2), torch.randint(0, 50, (5,))
    out = model({"x_t": x_t, "t": t, "eps": torch.randn(5, 2)})
    assert list(out) == ["pred_eps"] and out["pred_eps"].shape == (5, 2)
    torch.testing.assert_close(out["pred_eps"], model.eps(x_t, t))
    x0 = torch.randn(5, 2)
    torch.manual_seed(3)
    out = model({"x0": x0})
    assert set(out) == {"pred_eps", "eps", "x_t", "t"}
    torch.testing.assert_close(out["x_t"], model.schedule.q_sample(x0, out["t"], out["eps"]))


def test_sampling_returns_the_right_shape_and_is_reproducible():
    _, model = denoiser()
    a = model.sample(7, generator=torch.Generator().manual_seed(1))
    b = model.sample(7, generator=torch.Generator().manual_seed(1))
    assert a.shape == (7, 2) and torch.equal(a, b) and torch.isfinite(a).all()
    c = model.sample(3, method="ddim", steps=10, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert c.shape == (3, 2)


def test_timestep_embedding_is_cos_then_sin_of_geometric_frequencies():
    emb = timestep_embedding(torch.tensor([0, 5]), 4)
    freqs = [1.0, 10000 ** -0.5]
    expected = [[math.cos(5 * f) for f in freqs] + [math.sin(5 * f) for f in freqs]]
    torch.testing.assert_close(emb[1:], torch.tensor(expected))
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_tiny_training_on_a_two_cluster_2d_toy_lowers_the_loss(one_thread):
    _, model = denoiser(num_train_timesteps=100)
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])

    def data(n):
        return centers[torch.randint(0, 2, (n,), generator=g)] + 0.2 * torch.randn(n, 2, generator=g)

    fixed = {"x0": data(512)}
    eval_t = torch.randint(0, 100, (512,), generator=g)
    eval_eps = torch.randn(512, 2, generator=g)
    eval_batch = {"x_t": model.schedule.q_sample(fixed["x0"], eval_t, eval_eps), "t": eval_t}

    def eval_loss():
        with torch.no_grad():
            return torch.mean((model(eval_batch)["pred_eps"] - eval_eps) ** 2).item()

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(200):
        out = model({"x0": data(64)})
        loss = torch.mean((out["pred_eps"] - out["eps"]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.7 * before, (before, after)


def test_bad_schedule_fields_are_manifest_errors():
    with pytest.raises(ManifestError, match="time_dim"):
        denoiser(time_dim=15)
    with pytest.raises(ManifestError, match="beta_start"):
        denoiser(beta_start=0.5, beta_end=0.1)
