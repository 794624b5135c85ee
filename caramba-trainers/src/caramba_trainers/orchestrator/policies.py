"""Switching policies: when the run changes strategy, and to which.

A policy sees the run through :class:`Orchestra` (the portfolio's names, the current
strategy, the telemetry, and trial runs from a snapshot) and answers a :class:`Decision`
or ``None``. Policies are consulted in manifest order before every step; the first
decision wins. Third parties register more with ``caramba_register_switch_policies``
(a config struct deriving from :class:`~caramba_trainers.orchestrator.specs.SwitchPolicyConfig`
and a factory ``Factory(config)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["BanditPolicy", "Decision", "Orchestra", "SafetyPolicy", "SwitchPolicy", "Trial"]


@dataclass
class Trial:
    """One candidate's trial: its held-out loss after ``steps`` steps from the snapshot."""

    strategy: str
    held_out_loss: float
    train_loss: float
    steps: int


@dataclass
class Decision:
    """What a policy decided at ``step`` (before it runs) and why; logged as one JSON line."""

    step: int
    policy: str
    reason: str
    previous: str
    choice: str
    phase: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    adopt_trial: bool = False  # keep the winner's trained state (the run advances by its steps)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Orchestra(Protocol):
    """What the run shows a policy."""

    step: int
    total_steps: int
    names: list[str]
    current: str
    safety: str
    telemetry: Any

    def held_out_loss(self) -> float: ...

    def trials(self, candidates: list[str], steps: int) -> list[Trial]: ...


class SwitchPolicy:
    """Base of switching policies; ``state_dict`` is JSON so resume restores it exactly."""

    name = "policy"

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def decide(self, run: Orchestra) -> Decision | None:
        """Before step ``run.step``: a decision, or ``None`` to leave the run alone."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class SafetyPolicy(SwitchPolicy):
    """Rule-based: too many spikes in the telemetry window means switch to the safety strategy."""

    name = "safety"

    def decide(self, run: Orchestra) -> Decision | None:
        spikes = run.telemetry.recent_spikes
        if run.current == run.safety or spikes < self.config.spikes:
            return None
        t = run.telemetry
        return Decision(step=run.step, policy=self.name, previous=run.current, choice=run.safety,
                        phase=t.phase(),
                        reason=f"{spikes} spike(s) in the last {t.config.window} steps (loss EMA {t.loss.mean:.4g}, "
                               f"grad-norm EMA {t.grad.mean:.4g}); switching to the safety strategy")


class BanditPolicy(SwitchPolicy):
    """UCB1 over the portfolio with trial runs (see :class:`~.specs.BanditPolicyConfig`).

    An arm's reward is the relative held-out improvement its trial achieved,
    ``(before - after) / before``; each decision pulls every arm it tried.
    """

    name = "bandit"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.pulls: dict[str, int] = {}
        self.rewards: dict[str, float] = {}
        self.last: int | None = None  # step of the last decision

    def _due(self, run: Orchestra) -> str | None:
        if self.last is None:
            first = self.config.every if self.config.first is None else self.config.first
            return "first decision" if run.step >= first else None
        since = run.step - self.last
        if since >= self.config.every:
            return f"periodic (every {self.config.every} steps)"
        if self.config.on_plateau and since >= self.config.every // 2 and run.telemetry.phase() == "plateau":
            return "plateau"
        return None

    def ucb(self, name: str) -> float:
        n = self.pulls.get(name, 0)
        if n == 0:
            return math.inf
        total = sum(self.pulls.values())
        return self.rewards[name] / n + self.config.exploration * math.sqrt(2.0 * math.log(total + 1) / n)

    def decide(self, run: Orchestra) -> Decision | None:
        why = self._due(run)
        steps = min(self.config.trial_steps, run.total_steps - run.step)
        if why is None or steps < 1:
            return None
        self.last = run.step
        others = [n for n in run.names if n != run.current]
        # Highest UCB first; ties (untried arms) in portfolio order, so decisions are reproducible.
        ranked = sorted(others, key=lambda n: -self.ucb(n))[: self.config.candidates]
        ucbs = {n: self.ucb(n) for n in [run.current, *ranked]}
        before = run.held_out_loss()
        trials = run.trials([run.current, *ranked], steps)
        for t in trials:
            reward = (before - t.held_out_loss) / abs(before) if math.isfinite(t.held_out_loss) else -1.0
            self.pulls[t.strategy] = self.pulls.get(t.strategy, 0) + 1
            self.rewards[t.strategy] = self.rewards.get(t.strategy, 0.0) + reward
        stay = trials[0]
        best = min(trials, key=lambda t: t.held_out_loss)
        gain = (stay.held_out_loss - best.held_out_loss) / abs(stay.held_out_loss) if math.isfinite(
            stay.held_out_loss) else math.inf
        choice = best if best is not stay and gain > self.config.min_gain else stay
        candidates = [{"strategy": t.strategy, "held_out_loss": t.held_out_loss, "train_loss": t.train_loss,
                       "ucb": ucbs[t.strategy] if math.isfinite(ucbs[t.strategy]) else None} for t in trials]
        return Decision(step=run.step, policy=self.name, previous=run.current, choice=choice.strategy,
                        phase=run.telemetry.phase(), candidates=candidates, adopt_trial=True,
                        reason=f"{why}: held-out loss {before:.4f} before; {len(trials)} trials of {steps} steps; "
                               f"best '{best.strategy}' {best.held_out_loss:.4f} vs staying {stay.held_out_loss:.4f}")

    def state_dict(self) -> dict[str, Any]:
        return {"pulls": dict(self.pulls), "rewards": dict(self.rewards), "last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pulls = {k: int(v) for k, v in state["pulls"].items()}
        self.rewards = {k: float(v) for k, v in state["rewards"].items()}
        self.last = None if state["last"] is None else int(state["last"])
