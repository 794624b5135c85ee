"""A third-party plugin as a test would write one: a scripted switching policy (switch to a
named strategy at given steps, no trials) and digits with corrupted training batches."""

from __future__ import annotations

from typing import Any

import msgspec

from caramba import Config, hookimpl
from caramba_trainers.orchestrator.policies import Decision, SwitchPolicy
from caramba_trainers.orchestrator.specs import SwitchPolicyConfig


class ScriptedConfig(SwitchPolicyConfig, kw_only=True):
    at: dict[str, str] = msgspec.field(default_factory=dict)  # step (as text) -> strategy


class Scripted(SwitchPolicy):
    name = "scripted"

    def decide(self, run: Any) -> Decision | None:
        choice = self.config.at.get(str(run.step))
        if choice is None or choice == run.current:
            return None
        return Decision(step=run.step, policy=self.name, reason="scripted", previous=run.current, choice=choice)


class CorruptedDigitsConfig(Config, kw_only=True):
    corrupt_from: int = 30
    corrupt_steps: int = 3
    factor: float = 200.0


class CorruptedDigits:
    """scikit-learn digits whose training batches ``corrupt_from ..`` have inputs scaled by ``factor``."""

    def __init__(self, config: CorruptedDigitsConfig) -> None:
        from caramba_trainers.data.supervised import DigitsDataset
        from caramba_trainers.specs import DigitsConfig

        self.config = config
        self.inner = DigitsDataset(DigitsConfig())
        self.meta = self.inner.meta

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict:
        out = self.inner.batch(split, index, batch_size, seed=seed)
        c = self.config
        if split == "train" and c.corrupt_from <= index < c.corrupt_from + c.corrupt_steps:
            out = {**out, "inputs": out["inputs"] * c.factor}
        return out

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None):
        return self.inner.iter_batches(split, batch_size, limit=limit)


@hookimpl
def caramba_register_switch_policies(registry: Any) -> None:
    registry.add("scripted", config=ScriptedConfig, factory=f"{__name__}:Scripted", summary="switch at given steps")


@hookimpl
def caramba_register_datasets(registry: Any) -> None:
    registry.add("dataset.corrupted_digits", config=CorruptedDigitsConfig, factory=f"{__name__}:CorruptedDigits",
                 summary="digits with corrupted training batches")
