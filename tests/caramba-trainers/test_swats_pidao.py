"""SWATS and PIDAO follow their papers' update rules, checked on hand-worked steps."""

from __future__ import annotations

import math

import pytest
import torch

from caramba_trainers.pidao import PIDAO
from caramba_trainers.swats import SWATS


def _run(opt_factory, grads, p0=1.0):
    p = torch.nn.Parameter(torch.tensor([p0], dtype=torch.float64))
    opt = opt_factory([p])
    out = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        out.append(p.item())
    return out, opt


def test_swats_switches_at_step_two_under_a_constant_gradient_with_lambda_lr_over_g():
    # Constant g = 0.5, lr 0.1, eps 0: the bias-corrected Adam step is exactly -lr, so every
    # projection gamma_k = |p|^2 / (-p.g) = 0.01 / 0.05 = 0.2, and its bias-corrected EMA is 0.2:
    # the criterion holds at k = 2 (k > 1), Lambda = 0.2.
    # Steps 1, 2 (Adam): p = 0.9, 0.8.  Step 3 (SGD): v = 0.5, p = 0.8 - (1 - 0.9) 0.2 0.5 = 0.79.
    # Step 4: v = 0.9 0.5 + 0.5 = 0.95, p = 0.79 - 0.1 0.2 0.95 = 0.771.
    ps, opt = _run(lambda ps: SWATS(ps, lr=0.1, betas=(0.9, 0.999), eps=0.0), [0.5] * 4)
    assert ps == pytest.approx([0.9, 0.8, 0.79, 0.771], abs=1e-12)
    assert opt.phase == "sgd" and opt.switch_step == 2
    assert opt.sgd_lr == pytest.approx(0.2, abs=1e-12)


def test_swats_stays_with_adam_while_the_projected_lr_moves():
    # lr 0.1, betas (0.9, 0.999), eps 0, grads 0.5, -1, 0.25 on one weight: Algorithm 1 recomputed
    # below in plain float arithmetic. Step 1 is -lr (p = 0.9, gamma = 0.2); from step 2 on the
    # bias-corrected EMA of gamma trails gamma by far more than the 1e-9 tolerance, so no switch.
    g = [0.5, -1.0, 0.25]
    lr, b1, b2 = 0.1, 0.9, 0.999
    m = a = lam = 0.0
    w = 1.0
    expected = []
    for k, gk in enumerate(g, start=1):
        m = b1 * m + (1 - b1) * gk
        a = b2 * a + (1 - b2) * gk * gk
        p = -lr * math.sqrt(1 - b2 ** k) / (1 - b1 ** k) * m / math.sqrt(a)
        w += p
        gamma = p * p / (-p * gk)
        lam = b2 * lam + (1 - b2) * gamma
        assert k == 1 or abs(lam / (1 - b2 ** k) - gamma) > 1e-9
        expected.append(w)
    ps, opt = _run(lambda ps: SWATS(ps, lr=lr, betas=(b1, b2), eps=0.0), g)
    assert ps == pytest.approx(expected, abs=1e-12)
    assert expected[0] == pytest.approx(0.9, abs=1e-12)
    assert opt.phase == "adam" and opt.sgd_lr is None


def test_swats_phase_and_lambda_survive_a_state_dict_round_trip():
    _, opt = _run(lambda ps: SWATS(ps, lr=0.1, eps=0.0), [0.5] * 3)
    p2 = torch.nn.Parameter(torch.tensor([0.79], dtype=torch.float64))
    fresh = SWATS([p2], lr=0.1, eps=0.0)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.phase == "sgd" and fresh.sgd_lr == pytest.approx(0.2) and fresh.switch_step == 2


def test_pidao_matches_the_semi_implicit_pid_steps_by_hand():
    # h = 0.1, a = 1, kp = 2, ki = 0.5, kd = 0.25, x0 = 1, g = 0.5 then -1:
    # 1: z = 0.05; y = (0 - 0.1 (2 - 0.25) 0.5 - 0.1 0.5 0.05) / 1.1 = -0.09 / 1.1 = -0.081818...
    #    x = 1 + 0.1 y - 0.1 0.25 0.5 = 0.979318181818...
    # 2: z = 0.05 - 0.1 = -0.05; y = (-0.0818181818 + 0.175 + 0.0025) / 1.1 = 0.0869834711
    #    x = 0.9793181818 + 0.00869834711 + 0.025 = 1.0130165289
    ps, opt = _run(lambda ps: PIDAO(ps, lr=0.1, damping=1.0, kp=2.0, ki=0.5, kd=0.25), [0.5, -1.0])
    assert ps == pytest.approx([0.9793181818181818, 1.0130165289256198], abs=1e-12)
    state = next(iter(opt.state.values()))
    assert state["integral"].item() == pytest.approx(-0.05, abs=1e-15)
    assert state["velocity"].item() == pytest.approx(0.0869834710743802, abs=1e-12)


def test_pidao_terms_separately_p_i_and_d():
    # P alone (a = ki = kd = 0): y = -h kp g accumulates like heavy ball without friction:
    # x1 = 1 - 0.1 * 0.1 * 2 * 0.5 = 0.99.
    ps, _ = _run(lambda ps: PIDAO(ps, lr=0.1, damping=0.0, kp=2.0, ki=0.0, kd=0.0), [0.5])
    assert ps == pytest.approx([0.99], abs=1e-15)
    # I alone: z = h g = 0.05, y = -h ki z = -0.1 * 1 * 0.05, x = 1 + 0.1 y = 0.9995.
    ps, _ = _run(lambda ps: PIDAO(ps, lr=0.1, damping=0.0, kp=0.0, ki=1.0, kd=0.0), [0.5])
    assert ps == pytest.approx([0.9995], abs=1e-15)
    # D alone (a = 0): y = +h a kd g = 0, x = 1 - h kd g = 1 - 0.1 * 0.5 = 0.95.
    ps, _ = _run(lambda ps: PIDAO(ps, lr=0.1, damping=0.0, kp=0.0, ki=0.0, kd=1.0), [0.5])
    assert ps == pytest.approx([0.95], abs=1e-15)


def test_adafactor_swats_and_pidao_are_registered_optimizers(runtime):
    for name in ("swats", "pidao", "adafactor"):
        factory = runtime.get("optimizer", name).load()
        p = torch.nn.Parameter(torch.ones(4, 4))
        opt = factory([p], lr=0.01, weight_decay=0.0, betas=None, eps=1e-8, momentum=0.9, nesterov=False)
        p.grad = torch.ones(4, 4)
        opt.step()
        assert (p < 1).all(), name
