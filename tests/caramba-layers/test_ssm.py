"""SSMLayer: the parallel scan, recurrent decoding and Mamba's Δ initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from caramba.graph import Context, NodeConfig
from caramba.graph._caches import RecurrentState
from caramba.plugins import Runtime
from caramba.testing import LayerConformance
from caramba_layers import plugin
from caramba_layers.modules.ssm import selective_scan

RT = Runtime(autoload=False, plugins=[plugin])


def build(seed: int = 0, **fields):
    config = {"type": "SSMLayer", "d_model": 8, "d_state": 4, "d_conv": 3, "expand": 2, **fields}
    torch.manual_seed(seed)
    return RT.build(RT.parse(NodeConfig, config), "blocks.1.ssm").double()


def reference(layer, x: torch.Tensor) -> torch.Tensor:
    """Mamba-1 written out step by step in float64, straight from the paper's equations."""
    cfg = layer.config
    x = x.double()
    xz = x @ layer.in_proj.weight.double().T
    if layer.in_proj.bias is not None:
        xz = xz + layer.in_proj.bias.double()
    xs, z = xz.chunk(2, -1)
    k = cfg.d_conv
    conv_w = layer.conv1d.weight.double()[:, 0]  # (di, k)
    bsz, t, di = xs.shape
    h = torch.zeros(bsz, di, cfg.d_state, dtype=torch.float64)
    a = -torch.exp(layer.A_log.double())
    ys = []
    for i in range(t):
        window = torch.stack([xs[:, i - k + 1 + j] if i - k + 1 + j >= 0 else torch.zeros_like(xs[:, 0])
                              for j in range(k)], dim=-1)  # (B, di, k)
        u = (window * conv_w).sum(-1)
        if layer.conv1d.bias is not None:
            u = u + layer.conv1d.bias.double()
        u = F.silu(u)
        dbc = u @ layer.x_proj.weight.double().T
        dt_raw, b, c = dbc.split([cfg.rank, cfg.d_state, cfg.d_state], -1)
        dt = F.softplus(dt_raw @ layer.dt_proj.weight.double().T + layer.dt_proj.bias.double())
        h = torch.exp(dt[..., None] * a) * h + (dt * u)[..., None] * b[:, None, :]
        y = (h * c[:, None, :]).sum(-1) + layer.D.double() * u
        ys.append(y * F.silu(z[:, i]))
    y = torch.stack(ys, 1) @ layer.out_proj.weight.double().T
    return y + layer.out_proj.bias.double() if layer.out_proj.bias is not None else y


class TestSSMLayer(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.ssm"
    config = {"type": "SSMLayer", "d_model": 8, "d_state": 4, "d_conv": 4, "expand": 2, "bias": True}
    input_shape = (2, 7, 8)


def test_parallel_scan_equals_a_float64_sequential_scan():
    g = torch.Generator().manual_seed(0)
    for t in (1, 2, 5, 16, 37):
        a = torch.rand(2, t, 3, 4, generator=g, dtype=torch.float64)
        u = torch.randn(2, t, 3, 4, generator=g, dtype=torch.float64)
        h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
        h, expected = h0.clone(), []
        for i in range(t):
            h = a[:, i] * h + u[:, i]
            expected.append(h)
        torch.testing.assert_close(selective_scan(a, u, h0), torch.stack(expected, 1))


def test_parallel_scan_in_float32_stays_close_to_float64_on_long_sequences():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 300, 4, 2, generator=g, dtype=torch.float64) * 0.2 + 0.8
    u = torch.randn(1, 300, 4, 2, generator=g, dtype=torch.float64)
    exact = selective_scan(a, u)
    torch.testing.assert_close(selective_scan(a.float(), u.float()).double(), exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [False, True])
def test_layer_matches_the_papers_recurrence_in_float64(bias):
    layer = build(bias=bias)
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x, Context()), reference(layer, x))


def test_decoding_token_by_token_with_the_recurrent_state_equals_the_full_sequence():
    layer = build()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    full = layer(x, Context())
    state = RecurrentState()
    ctx = Context(caches={layer.node_path: state})
    prefill = layer(x[:, :4], ctx)
    steps = [layer(x[:, i:i + 1], ctx) for i in range(4, 9)]
    torch.testing.assert_close(torch.cat([prefill, *steps], 1), full)
    assert state.length == 9
    fields = layer.state_fields()
    assert {k: tuple(v.shape[1:]) for k, v in state.tensors.items()} == fields == {"conv": (16, 2), "ssm": (16, 4)}


def test_dt_initialisation_follows_the_paper():
    layer = build(d_model=64, dt_min=0.01, dt_max=0.05, dt_init="random", dt_scale=2.0)
    dt = F.softplus(layer.dt_proj.bias)
    assert dt.min() >= 0.01 - 1e-9 and dt.max() <= 0.05 + 1e-9
    # log-uniform: log dt is uniform on [log dt_min, log dt_max], so its mean is the midpoint.
    assert torch.log(dt).mean().item() == pytest.approx((math.log(0.01) + math.log(0.05)) / 2, abs=0.1)
    bound = 2.0 * layer.config.rank ** -0.5
    assert layer.dt_proj.weight.abs().max() <= bound and layer.dt_proj.weight.std() > bound / 4

    wide = build(d_model=64, dt_min=0.001, dt_max=0.1)
    assert F.softplus(wide.dt_proj.bias).max() > 0.05 > F.softplus(layer.dt_proj.bias).max()

    floored = build(d_model=64, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-3, dt_init="constant")
    torch.testing.assert_close(F.softplus(floored.dt_proj.bias), torch.full((128,), 1e-3, dtype=torch.float64))
    assert torch.all(floored.dt_proj.weight == floored.config.rank ** -0.5)


def test_dt_rank_auto_is_ceil_of_d_model_over_16():
    assert RT.parse(NodeConfig, {"type": "SSMLayer", "d_model": 33}).rank == 3
    assert RT.parse(NodeConfig, {"type": "SSMLayer", "d_model": 33, "dt_rank": 5}).rank == 5


def test_gradcheck():
    layer = build(d_model=4, d_state=2, expand=1)
    x = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, Context()), (x,))
