"""Sessions: what the pipeline hands to trainers, verifiers, benchmarks and artifact writers."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caramba.manifest import ComponentSpec, ExperimentTarget, Manifest, RunSpec
from caramba.pipeline._components import JsonlSink, Sink

__all__ = ["RunSession", "TargetSession"]


@dataclass
class TargetSession:
    """One target of a manifest being run; its directory holds artifacts and run folders."""

    runtime: Any
    manifest: Manifest
    target: ExperimentTarget
    target_dir: Path
    console: Any = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def hook(self) -> Any:
        return self.runtime.hook

    def label(self, role: str) -> str:
        """The display name of a model role: the target's ``labels`` or the role itself."""
        return self.target.labels.get(role, role)

    def create(self, kind: str, spec: ComponentSpec, **kwargs: Any) -> Any:
        """Instantiate the component a ``{ref, config}`` names: ``factory(config, **kwargs)``."""
        return self.runtime.get(kind, spec.ref).load()(spec.config, **kwargs)

    def build_system(self, **kwargs: Any) -> Any:
        """Build the target's system (its model) with the runtime's graph builder."""
        from caramba.graph._build import Builder

        return self.create("system", self.target.system, builder=Builder(self.runtime, **kwargs))

    def info(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """Something the user must know although the run goes on (always shown, on stderr)."""
        print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass
class RunSession(TargetSession):
    """One run of a target: adds the run spec, its folder and the metrics sinks."""

    run: RunSpec = None  # type: ignore[assignment]
    run_dir: Path = Path(".")
    sinks: list[Sink] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    def open_sinks(self) -> None:
        """JSONL always, plus the sinks named in ``defaults.logging.sinks`` (rank 0 only)."""
        if self.rank != 0:
            return
        self.sinks.append(JsonlSink(self.run_dir / "metrics.jsonl", run_id=self.run.id))
        logging = self.manifest.spec.defaults.logging
        names = list(logging.sinks)
        if logging.wandb and "wandb" not in names:
            names.append("wandb")
        if logging.instrument not in ("rich", "jsonl", *names):
            names.append(logging.instrument)  # the original's single-logger choice
        for name in names:
            if name == "jsonl":
                continue
            entry = self.runtime.get("sink", name)
            self.sinks.append(entry.load()(None, session=self))

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        """Send scalar metrics to every sink and to the ``caramba_step_end`` hook."""
        for sink in self.sinks:
            sink.log(step, metrics, phase=phase)
        if phase == "train":
            self.runtime.hooks.step_end(self, step, metrics)

    def rewind_metrics(self, step: int) -> None:
        """A run resuming at ``step`` drops what its sinks logged after it, so no step is logged twice."""
        for sink in self.sinks:
            sink.rewind(step)

    def select_kernels(self, model: Any, *, dtype: Any = None) -> dict[str, Any]:
        """Bind kernel backends on ``model`` (placed on its device) and record them in ``kernels.json``."""
        from caramba.graph._kernels import select_kernels
        from caramba.pipeline._files import atomic_write_json

        chosen = select_kernels(model, self.runtime, dtype=dtype, pins=self.manifest.spec.defaults.kernels)
        if self.rank == 0:
            atomic_write_json(self.run_dir / "kernels.json", chosen)
        return chosen

    def close_sinks(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks.clear()
