"""Config structs of ``trainer.orchestrated`` and its switching policies (torch-free).

A run's ``train:`` block is the standard trainer's plus ``orchestrator:``, which declares
the portfolio (strategies: optimizer, learning-rate schedule, clipping), the telemetry
and the switching policies, consulted in order at every step.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from caramba import Config, PolymorphicConfig, Scope
from caramba_trainers.specs import TrainConfig

__all__ = [
    "DEFAULT_PORTFOLIO",
    "DEFAULT_SAFETY",
    "BanditPolicyConfig",
    "OrchestratedTrainConfig",
    "OrchestratedTrainerConfig",
    "OrchestratorConfig",
    "SafetyPolicyConfig",
    "StrategyConfig",
    "SwitchPolicyConfig",
    "TelemetryConfig",
]

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]


#: Without ``portfolio:``: name, optimizer, lr as a multiple of the run's lr, clipping, other settings.
DEFAULT_PORTFOLIO: tuple[tuple[str, str, float, str, dict[str, object]], ...] = (
    ("adamw", "adamw", 1.0, "global_norm", {}),
    ("adamw_conservative", "adamw", 0.3, "global_norm", {"max_grad_norm": 0.5}),
    ("lion", "lion", 0.3, "global_norm", {}),
    ("sgd_nesterov", "sgd", 10.0, "global_norm", {"momentum": 0.9, "nesterov": True}),
    ("spike_resistant", "adamw", 0.3, "adagc", {}),
)
DEFAULT_SAFETY = "spike_resistant"


class StrategyConfig(Config, kw_only=True):
    """One strategy: a registered optimizer with its schedule and gradient clipping.

    Every field left out takes the run's ``train:`` value (``lr``, ``weight_decay``,
    ``betas``, ``scheduler``...); ``clipping`` defaults to ``global_norm`` when the run sets
    ``grad_clip_norm`` and to ``none`` otherwise.
    """

    name: str
    optimizer: str = "adamw"
    lr: PositiveFloat | None = None
    weight_decay: NonNegFloat | None = None
    betas: list[float] | None = None
    eps: PositiveFloat | None = None
    momentum: Fraction | None = None
    nesterov: bool | None = None
    scheduler: str | None = None
    warmup_steps: NonNegInt | None = None
    min_lr_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    clipping: Literal["none", "global_norm", "adagc"] | None = None
    max_grad_norm: PositiveFloat | None = None
    description: str = ""

    def check(self, scope: Scope) -> None:
        if self.betas is not None and (len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas)):
            scope.error("betas", f"expected two numbers in [0, 1), got {self.betas}", "e.g. [0.9, 0.95]")


class TelemetryConfig(Config, kw_only=True):
    """Spike detectors and phase of the training stream.

    A loss (gradient-norm) value is a spike when it is more than ``loss_z`` (``grad_z``)
    standard deviations above its exponential moving average (decay ``ema_decay``) and
    more than ``loss_ratio`` (``grad_ratio``) times that average, once ``min_history``
    values were seen. The loss slope is a least-squares fit over the last ``window`` steps.
    """

    window: Annotated[int, msgspec.Meta(ge=4)] = 50
    ema_decay: Fraction = 0.95
    loss_z: PositiveFloat = 4.0
    loss_ratio: Annotated[float, msgspec.Meta(ge=1.0)] = 1.5
    grad_z: PositiveFloat = 6.0
    grad_ratio: Annotated[float, msgspec.Meta(ge=1.0)] = 3.0
    min_history: PositiveInt = 20
    unstable_spikes: PositiveInt = 2
    plateau_tol: NonNegFloat = 0.01


class SwitchPolicyConfig(PolymorphicConfig, kw_only=True):
    """Any registered switching policy, chosen by ``type`` (``caramba ls switch_policy``)."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("switch_policy",)


class SafetyPolicyConfig(SwitchPolicyConfig, kw_only=True):
    """Switch to the portfolio's safety strategy as soon as the telemetry window holds
    ``spikes`` loss or gradient-norm spikes (a non-finite loss counts as one)."""

    spikes: PositiveInt = 1


class BanditPolicyConfig(SwitchPolicyConfig, kw_only=True):
    """A UCB bandit over the portfolio that trial-runs candidates from a snapshot.

    Every ``every`` steps (and on a plateau, if ``on_plateau``), the current strategy and
    the ``candidates`` others with the highest upper confidence bound
    (mean reward + ``exploration`` * sqrt(2 ln(N + 1) / n); untried first) each train
    ``trial_steps`` steps from the same snapshot, on the batches the run reads next, and
    are scored on held-out batches. The best held-out loss wins; another strategy must beat
    staying by ``min_gain`` (relative). The winner's trained state is kept, so the run
    reads each of its batches once, as a run without switching would.
    """

    every: PositiveInt = 200
    first: NonNegInt | None = None  # step of the first decision (default: every); 0 picks the starting strategy
    trial_steps: PositiveInt = 20
    candidates: PositiveInt = 2
    exploration: NonNegFloat = 1.0
    min_gain: NonNegFloat = 0.0
    on_plateau: bool = False


def _default_policies() -> list[SwitchPolicyConfig]:
    return [SafetyPolicyConfig(type="safety"), BanditPolicyConfig(type="bandit")]


class OrchestratorConfig(Config, kw_only=True):
    """``train.orchestrator``: the portfolio, where to start, the safety strategy, the policies.

    With ``skip_spikes`` a step whose loss or gradient norm is a spike does not update the
    weights (its gradients are dropped; the next step reads the next batch as usual).

    Without ``portfolio`` the default one is used (names and learning-rate multiples of the
    run's ``lr`` in :mod:`caramba_trainers.orchestrator.portfolio`).
    """

    portfolio: list[StrategyConfig] = msgspec.field(default_factory=list)
    start: str = ""
    safety: str = ""
    policies: list[SwitchPolicyConfig] = msgspec.field(default_factory=_default_policies)
    telemetry: TelemetryConfig = msgspec.field(default_factory=TelemetryConfig)
    skip_spikes: bool = True
    trial_eval_batches: PositiveInt = 4

    def check(self, scope: Scope) -> None:
        names = [s.name for s in self.portfolio]
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                scope.child("portfolio", i).error("name", f"strategy name '{name}' is used twice",
                                                  "give each strategy its own name")
            seen.add(name)
        if not self.portfolio:
            names = [entry[0] for entry in DEFAULT_PORTFOLIO]
            seen = set(names)
        for field in ("start", "safety"):
            value = getattr(self, field)
            if value and value not in seen:
                scope.error(field, f"'{value}' names no strategy of the portfolio",
                            f"one of: {', '.join(names)}")
        wants_safety = any(isinstance(p, SafetyPolicyConfig) for p in self.policies)
        if wants_safety and not self.safety and self.portfolio:
            scope.error("safety", "the safety policy needs a safety strategy",
                        f"name one of: {', '.join(names)} (e.g. an AdamW with a low lr and clipping: adagc)")


class OrchestratedTrainerConfig(Config, kw_only=True):
    """``trainer.orchestrated`` takes no target-level config; each run's ``train:`` says what to do."""


class OrchestratedTrainConfig(TrainConfig, kw_only=True):
    """A run of ``trainer.orchestrated``: every field of ``trainer.standard``'s ``train:``
    (its optimizer settings are the strategies' defaults) plus ``orchestrator:``."""

    orchestrator: OrchestratorConfig = msgspec.field(default_factory=OrchestratorConfig)
