"""MoELayer against a float64 per-token loop; load balancing and capacity as specified."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from caramba.errors import ManifestError
from caramba.graph import Context, NodeConfig
from caramba.plugins import Runtime
from caramba.testing import LayerConformance
from caramba_layers import plugin

RT = Runtime(autoload=False, plugins=[plugin])


def build(seed: int = 0, **fields):
    config = {"type": "MoELayer", "d_model": 6, "num_experts": 4, "top_k": 2, "d_ff": 5, **fields}
    torch.manual_seed(seed)
    layer = RT.build(RT.parse(NodeConfig, config), "blocks.0.moe").double()
    with torch.no_grad():  # a non-zero router so routing depends on the token
        layer.router.weight.normal_()
        if layer.router.bias is not None:
            layer.router.bias.normal_(std=0.1)
        if layer.b_gate_up is not None:
            layer.b_gate_up.normal_(std=0.1)
            layer.b_down.normal_(std=0.1)
    return layer


def reference(layer, x: torch.Tensor, capacity: int | None = None) -> torch.Tensor:
    """Token by token, expert by expert, in float64; first choices claim capacity first."""
    w_r, b_r = layer.router.weight.double(), layer.router.bias
    tokens = x.reshape(-1, x.shape[-1]).double()
    k, e = layer.config.top_k, layer.config.num_experts
    choices = []
    for t in tokens:
        logits = t @ w_r.T + (b_r.double() if b_r is not None else 0)
        p = torch.softmax(logits, -1)
        top = sorted(range(e), key=lambda j: -p[j].item())[:k]
        total = sum(p[j] for j in top)
        choices.append([(j, p[j] / total) for j in top])
    load = [0] * e
    out = torch.zeros_like(tokens)
    for rank in range(k):
        for i, t in enumerate(tokens):
            j, w = choices[i][rank]
            if capacity is not None and load[j] >= capacity:
                continue
            load[j] += 1
            h = t @ layer.w_gate_up[j].double()
            if layer.b_gate_up is not None:
                h = h + layer.b_gate_up[j].double()
            f = layer.config.d_ff
            y = (F.silu(h[:f]) * h[f:]) @ layer.w_down[j].double()
            if layer.b_down is not None:
                y = y + layer.b_down[j].double()
            out[i] += w * y
    return out.reshape(x.shape)


class TestMoELayer(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.moe"
    config = {"type": "MoELayer", "d_model": 8, "num_experts": 4, "top_k": 2, "d_ff": 6,
              "router_z_loss_weight": 0.001, "capacity_factor": 1.25}
    input_shape = (2, 5, 8)


@pytest.mark.parametrize("bias", [True, False])
def test_moe_matches_a_float64_per_token_reference(bias):
    layer = build(bias=bias)
    x = torch.randn(3, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x, Context()), reference(layer, x))


def test_capacity_drops_second_choices_first_then_later_tokens():
    layer = build(capacity_factor=0.5, top_k=2)
    x = torch.randn(1, 9, 6, dtype=torch.float64)
    cap = layer.capacity(9)
    assert cap == math.ceil(0.5 * 9 * 2 / 4) == 3
    y = layer(x, Context())
    torch.testing.assert_close(y, reference(layer, x, capacity=cap))
    assert not torch.allclose(y, reference(layer, x))  # something really was dropped


def test_a_token_whose_every_slot_is_dropped_outputs_zero():
    layer = build(capacity_factor=0.01, top_k=1, bias=False, num_experts=2)
    with torch.no_grad():  # every token prefers expert 0 with capacity 1: only token 0 is served
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 1.0
    x = torch.randn(5, 6, dtype=torch.float64)
    x[:, 0] = x[:, 0].abs() + 1.0
    y = layer(x, Context())
    assert y[0].abs().sum() > 0
    torch.testing.assert_close(y[1:], torch.zeros(4, 6, dtype=torch.float64))


def test_dropless_serves_every_token_even_when_one_expert_takes_all():
    layer = build(bias=False, top_k=1)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[2, 0] = 5.0
    x = torch.randn(12, 6, dtype=torch.float64)
    x[:, 0] = x[:, 0].abs() + 1.0
    torch.testing.assert_close(layer(x, Context()), reference(layer, x))


def test_switch_loss_equals_its_formula_and_is_one_at_perfect_balance():
    layer = build(top_k=1, bias=False)
    with torch.no_grad():
        layer.router.weight.zero_()
    ctx = Context(training=True)
    layer(torch.randn(8, 6, dtype=torch.float64), ctx)
    (aux,) = ctx.aux_losses
    assert (aux.path, aux.name, aux.weight) == ("blocks.0.moe", "load_balancing", 0.01)
    # Uniform router probabilities: E · Σ f_e · (1/E) = Σ f_e = 1 for any routing.
    assert aux.value.item() == pytest.approx(1.0)

    layer = build()
    x = torch.randn(10, 6, dtype=torch.float64)
    ctx = Context(training=True)
    layer(x, ctx)
    p = torch.softmax(x @ layer.router.weight.T + layer.router.bias, -1)
    f = torch.zeros(4, dtype=torch.float64)
    for j in p.topk(2, -1).indices.reshape(-1):
        f[j] += 1 / 20
    assert ctx.aux_losses[0].value.item() == pytest.approx(4 * (f * p.mean(0)).sum().item())


@pytest.mark.parametrize("kind", ["switch", "kl", "mse"])
def test_aux_loss_changes_the_router_gradient(kind):
    x = torch.randn(2, 6, 6, dtype=torch.float64)
    grads = []
    for balance in (False, True):
        layer = build(load_balancing=balance, load_balancing_loss_type=kind, load_balancing_loss_weight=0.5)
        ctx = Context(training=True)
        loss = layer(x, ctx).square().mean() + ctx.total_aux_loss()
        loss.backward()
        grads.append(layer.router.weight.grad.clone())
        assert len(ctx.aux_losses) == int(balance)
    assert not torch.allclose(grads[0], grads[1])


def test_router_z_loss_is_mean_squared_logsumexp():
    layer = build(load_balancing=False, router_z_loss_weight=0.1)
    x = torch.randn(5, 6, dtype=torch.float64)
    ctx = Context(training=True)
    layer(x, ctx)
    logits = x @ layer.router.weight.T + layer.router.bias
    (z,) = ctx.aux_losses
    assert z.name == "router_z" and z.weight == 0.1
    torch.testing.assert_close(z.value, torch.logsumexp(logits, -1).square().mean())


def test_no_aux_losses_outside_training():
    layer = build(router_z_loss_weight=0.1)
    ctx = Context(training=False)
    layer(torch.randn(3, 6, dtype=torch.float64), ctx)
    assert ctx.aux_losses == []


def test_requires_grad_fields_freeze_their_parameters():
    layer = build(gate_requires_grad=False, down_requires_grad=False)
    assert not layer.router.weight.requires_grad and not layer.w_down.requires_grad
    assert layer.w_gate_up.requires_grad


def test_top_k_larger_than_num_experts_is_a_manifest_error():
    with pytest.raises(ManifestError, match="top_k"):
        RT.parse(NodeConfig, {"type": "MoELayer", "d_model": 4, "d_ff": 4, "num_experts": 2, "top_k": 3})


def test_gradcheck():
    layer = build(capacity_factor=2.0)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t, Context()), (x,))
