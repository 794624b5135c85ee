"""The orchestrator's parts against values worked by hand: spike detectors and phases, AdaGC
clipping, optimizer-state carry-over, and the manifest checks of the orchestrator block."""

from __future__ import annotations

import math

import pytest
import torch

from caramba import ManifestError
from caramba_trainers.optim import Lion
from caramba_trainers.orchestrator.clipping import GradientClipper
from caramba_trainers.orchestrator.portfolio import carry_state
from caramba_trainers.orchestrator.specs import TelemetryConfig
from caramba_trainers.orchestrator.telemetry import SpikeDetector, Telemetry


def test_spike_detector_keeps_west_ema_statistics_and_flags_only_far_values():
    d = SpikeDetector(z=2.0, ratio=1.5, decay=0.5, min_history=2)
    assert not d.observe(1.0)                     # mean 1, var 0
    assert not d.observe(2.0)                     # d = 1: mean 1.5, var 0.5 (0 + 0.5 * 1) = 0.25
    assert d.mean == 1.5 and d.var == 0.25
    # threshold = max(1.5 + 2 * 0.5, 1.5 * 1.5) = 2.5
    assert d.threshold() == 2.5
    assert not d.observe(2.4)
    mean, var = d.mean, d.var
    assert d.observe(100.0)                       # a spike enters clipped to the threshold
    thr = max(mean + 2.0 * math.sqrt(var), 1.5 * mean)
    assert d.mean == pytest.approx(mean + 0.5 * (thr - mean))
    assert d.observe(float("nan"))                # not finite: a spike, statistics untouched
    assert d.count == 4


def test_spike_detector_learns_a_lasting_change_of_level():
    d = SpikeDetector(z=4.0, ratio=1.5, decay=0.9, min_history=5)
    for _ in range(20):
        d.observe(1.0 + 0.01 * (_ % 3))
    flags = [d.observe(3.0) for _ in range(60)]
    assert flags[0] and not flags[-1]


def test_telemetry_phase_and_slope():
    t = Telemetry(TelemetryConfig(window=10, min_history=3, plateau_tol=0.01))
    assert t.phase() == "warmup"
    for s in range(1, 11):
        t.observe(s, 5.0 - 0.1 * s, 1.0)          # falling 0.1 per step
    assert t.slope() == pytest.approx(-0.1)
    assert t.phase() == "converging"
    for s in range(11, 21):
        t.observe(s, 4.0, 1.0)
    assert t.slope() == pytest.approx(0.0) and t.phase() == "plateau"
    t.observe(21, 40.0, 1.0)
    t.observe(22, 4.0, 50.0)
    assert t.recent_spikes == 2 and t.phase() == "unstable"
    clone = Telemetry(t.config)
    clone.load_state_dict(t.state_dict())
    assert clone.state_dict() == t.state_dict() and clone.phase() == "unstable"


def _params(*grads: list[float]) -> list[torch.nn.Parameter]:
    ps = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        ps.append(p)
    return ps


def test_global_norm_clipping_matches_torch():
    a = _params([3.0, 4.0], [12.0])
    b = _params([3.0, 4.0], [12.0])
    c = GradientClipper(a)
    c.configure("global_norm", 1.0)
    assert c(None) == pytest.approx(13.0)
    torch.nn.utils.clip_grad_norm_(b, 1.0)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.grad, y.grad)


def test_adagc_clips_each_tensor_against_its_own_history():
    # beta 0.5, ratio 1.0, warmup 1, max_norm 100 (no clipping in warmup):
    # step 1 (warmup): norms (5, 12); gamma = (5, 12).
    # step 2: norms (10, 6): tensor 0 clipped to 1.0 * 5 = 5 (factor 0.5), tensor 1 kept;
    #         gamma = 0.5 * (5, 12) + 0.5 * (5, 6) = (5, 9).
    c = GradientClipper(_params([3.0, 4.0], [12.0]), beta=0.5, ratio=1.0, warmup=1)
    c.configure("adagc", 100.0)
    assert c(None) == pytest.approx(13.0)
    assert c.gamma.tolist() == pytest.approx([5.0, 12.0])
    c.params[0].grad = torch.tensor([6.0, 8.0])
    c.params[1].grad = torch.tensor([6.0])
    assert c(None) == pytest.approx(math.hypot(10.0, 6.0))
    assert c.params[0].grad.tolist() == pytest.approx([3.0, 4.0], rel=1e-6)
    assert c.params[1].grad.tolist() == [6.0]
    assert c.gamma.tolist() == pytest.approx([5.0, 9.0], rel=1e-6)
    clone = GradientClipper(c.params)
    clone.load_state_dict(c.state_dict())
    assert torch.equal(clone.gamma, c.gamma) and clone.steps == 2 and clone.mode == "adagc"


def _stepped_adamw() -> tuple[torch.nn.Parameter, torch.optim.AdamW]:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.AdamW([p], lr=0.1)
    for g in ([0.5, -1.0], [0.25, 1.0]):
        p.grad = torch.tensor(g)
        opt.step()
    return p, opt


def test_adam_first_moment_becomes_sgd_momentum_scaled_to_the_same_steady_step():
    # m = 0.9 * 0.1 g1 + 0.1 g2 = (0.07, 0.01); SGD with momentum 0.9: buffer = m / (1 - 0.9) = (0.7, 0.1)
    p, adam = _stepped_adamw()
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    assert carry_state(adam, sgd, same_strategy_optimizer=False) == "adam -> sgd"
    assert sgd.state[p]["momentum_buffer"].tolist() == pytest.approx([0.7, 0.1], rel=1e-6)
    lion = Lion([p], lr=0.01)
    assert carry_state(adam, lion, same_strategy_optimizer=False) == "adam -> lion"
    assert torch.equal(lion.state[p]["exp_avg"], adam.state[p]["exp_avg"])
    assert lion.state[p]["exp_avg"] is not adam.state[p]["exp_avg"]


def test_same_optimizer_carries_all_state_and_unmapped_pairs_start_fresh():
    p, adam = _stepped_adamw()
    other = torch.optim.AdamW([p], lr=0.01)
    assert carry_state(adam, other, same_strategy_optimizer=True) == "all state"
    assert other.param_groups[0]["lr"] == 0.01  # the new strategy's settings stay
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(other.state[p][k], adam.state[p][k])
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sgd.state[p]["momentum_buffer"] = torch.ones(2)
    fresh = torch.optim.AdamW([p], lr=0.1)
    assert carry_state(sgd, fresh, same_strategy_optimizer=False) == "fresh"
    assert not fresh.state


ORCH = """
version: 2
name: bad
targets:
- type: experiment
  name: t
  data: {{ref: dataset.digits}}
  system: {{ref: system.toy, config: {{d_in: 64, model: {{type: ToyLinear, d_in: 64, d_out: 10}}}}}}
  objective: objective.classification_ce
  trainer: trainer.orchestrated
  runs:
  - id: r
    steps: 5
    train:
      orchestrator:
{body}
"""


@pytest.mark.parametrize(("body", "path", "message"), [
    ("        portfolio: [{name: a}, {name: a}]\n        safety: a",
     "orchestrator.portfolio[1].name", "used twice"),
    ("        portfolio: [{name: a}]\n        start: b\n        safety: a", "orchestrator.start", "names no strategy"),
    ("        portfolio: [{name: a}]", "orchestrator.safety", "needs a safety strategy"),
    ("        safety: nope", "orchestrator.safety", "one of: adamw, adamw_conservative"),  # the default portfolio
    ("        portfolio: [{name: a}]\n        safety: a\n        policies: [{type: bandti}]",
     "orchestrator.policies[0].type", "did you mean 'bandit'"),
    ("        portfolio: [{name: a, clipping: adaptive}]\n        safety: a", "portfolio[0].clipping",
     "got 'adaptive'"),
])
def test_orchestrator_block_mistakes_are_reported_with_their_field(runtime, body, path, message):
    with pytest.raises(ManifestError) as err:
        runtime.load_manifest_text(ORCH.format(body=body))
    text = str(err.value)
    assert "<string>:" in text and path in text and message in text, text


def test_a_strategy_naming_an_unknown_optimizer_stops_the_run_with_its_path(runtime, tmp_path):
    from caramba import UsageError, run_target

    body = "        portfolio: [{name: a, optimizer: adamv}]\n        safety: a"
    with pytest.raises(UsageError) as err:
        run_target(runtime, runtime.load_manifest_text(ORCH.format(body=body)), None, root=tmp_path)
    assert err.value.exit_code == 2
    text = str(err.value)
    assert "runs.r.train.orchestrator.portfolio[0].optimizer" in text and "adamw" in text, text
