"""The fused selective scan against a float64 sequential scan, values and gradients."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from caramba_kernels.scan import selective_scan

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
# (batch, time, channels, states) and the steps per backward chunk: time crosses chunk boundaries.
SHAPE, CHUNK = ((2, 300, 96, 16), 64) if ON_GPU else ((2, 9, 20, 4), 4)


def reference(x, dt, A, B, C, D, h0):
    """float64 ``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t``, ``y_t = C_t·h_t + D x_t``, one step at a time."""
    h = h0
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * x[:, t])
    return torch.stack(ys, 1), h


def inputs(dtype=torch.float32):
    bsz, T, di, N = SHAPE
    torch.manual_seed(0)
    x = torch.randn(bsz, T, di)
    dt = torch.nn.functional.softplus(torch.randn(bsz, T, di) - 2)
    A = -torch.exp(torch.randn(di, N) * 0.5)
    B, C = torch.randn(bsz, T, N), torch.randn(bsz, T, N)
    D = torch.randn(di)
    h0 = torch.randn(bsz, di, N)
    return [t.to(DEVICE, dtype).requires_grad_() for t in (x, dt, A, B, C, D, h0)]


def test_outputs_and_last_state_match_float64():
    args = inputs()
    y, h = selective_scan(*args)
    y_ref, h_ref = reference(*(a.detach().double() for a in args))
    assert (y.double() - y_ref).abs().max() < 1e-4 * y_ref.abs().max()
    assert (h.double() - h_ref).abs().max() < 1e-4 * h_ref.abs().max()


def test_gradients_of_every_input_match_float64():
    args = inputs()
    y, h = selective_scan(*args, chunk=CHUNK)
    gy, gh = torch.randn_like(y), torch.randn_like(h)
    grads = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), args)
    ref_args = [a.detach().double().requires_grad_() for a in args]
    y_ref, h_ref = reference(*ref_args)
    ref = torch.autograd.grad((y_ref * gy.double()).sum() + (h_ref * gh.double()).sum(), ref_args)
    for name, got, want in zip(("x", "dt", "A", "B", "C", "D", "h0"), grads, ref):
        assert (got.double() - want).abs().max() <= 1e-4 * want.abs().max() + 1e-6, name


def test_one_step_from_a_state_is_the_decode_update():
    args = [a.detach() for a in inputs()]
    x, dt, A, B, C, D, h0 = args
    y_all, h_all = selective_scan(x, dt, A, B, C, D, h0)
    y_first, h_first = selective_scan(x[:, :-1], dt[:, :-1], A, B[:, :-1], C[:, :-1], D, h0)
    y_step, h_step = selective_scan(x[:, -1:], dt[:, -1:], A, B[:, -1:], C[:, -1:], D, h_first)
    assert torch.allclose(y_step, y_all[:, -1:], atol=1e-5) and torch.allclose(h_step, h_all, atol=1e-5)
