"""Optimizers and schedules against values worked out by hand from their papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from caramba_trainers.optim import Lion, Schedule, build_adamw, build_sgd

GRADS = [0.5, -1.0, 0.25]


def _run(make, grads=GRADS, p0=1.0):
    p = torch.nn.Parameter(torch.tensor([p0], dtype=torch.float64))
    opt = make([p])
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(p.item())
    return out, opt.state[p]


def test_lion_matches_the_papers_update_for_three_steps():
    # lr 0.1, betas (0.9, 0.99), wd 0.1, p0 = 1, grads 0.5, -1, 0.25:
    # 1: c = 0.05 -> +1;  p = 1 * 0.99 - 0.1 = 0.89;        m = 0.005
    # 2: c = 0.0045 - 0.1 = -0.0955 -> -1;  p = 0.89 * 0.99 + 0.1 = 0.9811;  m = 0.00495 - 0.01 = -0.00505
    # 3: c = -0.004545 + 0.025 = 0.020455 -> +1;  p = 0.9811 * 0.99 - 0.1 = 0.871289;  m = -0.0024995
    ps, state = _run(lambda params: Lion(params, lr=0.1, betas=(0.9, 0.99), weight_decay=0.1))
    assert ps == pytest.approx([0.89, 0.9811, 0.871289], abs=1e-12)
    assert state["exp_avg"].item() == pytest.approx(-0.0024995, abs=1e-12)


def test_lion_sign_comes_from_the_interpolation_not_the_momentum():
    # m after step 1 is +0.01 (beta2 EMA of g=1); at step 2 with g = -0.5:
    # c = 0.9 * 0.01 + 0.1 * (-0.5) = -0.041 -> the step goes up although m > 0.
    ps, _ = _run(lambda params: Lion(params, lr=0.1, betas=(0.9, 0.99)), grads=[1.0, -0.5], p0=0.0)
    assert ps == pytest.approx([-0.1, 0.0], abs=1e-12)


def test_adamw_matches_hand_computed_values_for_three_steps():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.1 (decoupled: p *= 1 - lr*wd before the Adam step).
    # m_t = 0.9 m + 0.1 g; v_t = 0.999 v + 0.001 g^2; p -= lr * (m_t / (1-0.9^t)) / (sqrt(v_t / (1-0.999^t)) + eps)
    # 1: m = 0.05, v = 0.00025, mhat = 0.5, vhat = 0.25 -> p = 0.99 - 0.1 * 0.5/0.50000001 = 0.890000002
    # 2: p = 0.99 p = 0.8811000020; m = -0.055, v = 0.00124975, mhat = -0.28947368, vhat = 0.62518759
    #    -> p = 0.8811000020 + 0.1 * 0.28947368 / 0.79068805 = 0.9177103542
    # 3: p = 0.99 p = 0.9085332507; m = -0.0245, v = 0.00131100025, mhat = -0.09040590, vhat = 0.43743737
    #    -> p = 0.9085332507 + 0.1 * 0.09040590 / 0.66138897 = 0.9222023168
    ps, _ = _run(lambda params: build_adamw(params, lr=0.1, betas=(0.9, 0.999), weight_decay=0.1))
    assert ps == pytest.approx([0.890000002, 0.9177103542, 0.9222023168], abs=1e-10)


def test_sgd_nesterov_matches_hand_computed_values():
    # momentum 0.9, lr 0.1: b1 = 0.5, step g + 0.9 b = 0.95 -> p = 0.905
    # b2 = 0.45 - 1 = -0.55, step -1 + 0.9 * -0.55 = -1.495 -> p = 1.0545
    ps, _ = _run(lambda params: build_sgd(params, lr=0.1, momentum=0.9, nesterov=True), grads=GRADS[:2])
    assert ps == pytest.approx([0.905, 1.0545], abs=1e-12)


@pytest.mark.parametrize(("kind", "expected"), [
    # warmup 2 of 10 steps, min_lr_ratio 0.1; after warmup p = (s - 2) / 8.
    ("constant", {0: 0.5, 1: 1.0, 2: 1.0, 6: 1.0, 10: 1.0}),
    ("linear", {0: 0.5, 1: 1.0, 2: 1.0, 4: 0.775, 6: 0.55, 10: 0.1}),
    ("cosine", {0: 0.5, 1: 1.0, 2: 1.0, 4: 0.1 + 0.45 * (1 + math.sqrt(0.5)), 6: 0.55, 10: 0.1}),
])
def test_schedules_match_hand_computed_multipliers(kind, expected):
    sched = Schedule(kind, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    assert {s: sched.multiplier(s) for s in expected} == pytest.approx(expected, abs=1e-12)


def test_schedule_drives_the_optimizer_lr_for_three_steps():
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = build_sgd([p], lr=1.0, momentum=0.0)
    sched = Schedule.linear(total_steps=4, warmup_steps=1, min_lr_ratio=0.0)
    for step in range(3):
        sched.apply(opt, step, base_lr=0.1)
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
    # multipliers: step 0 warmup 1/1; step 1 p = 0 -> 1; step 2 p = 1/3 -> 2/3. p = -(0.1 + 0.1 + 0.0666...)
    assert p.item() == pytest.approx(-0.1 * (1 + 1 + 2 / 3), abs=1e-12)


def test_fused_adamw_is_chosen_on_cuda_only_by_default():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert not build_adamw(p, lr=0.1, device="cpu").defaults["fused"]
    assert build_adamw(p, lr=0.1, device="cpu", fused=True).defaults["fused"]
