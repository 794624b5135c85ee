"""Small base classes, one per pipeline kind, that plugins implement.

Each registered factory is called as ``factory(config, **kwargs)`` with the component's
decoded config struct and returns one of these. They are deliberately small: the
pipeline calls one method on each.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caramba.pipeline._files import atomic_write_text

if TYPE_CHECKING:
    from caramba.pipeline._session import RunSession, TargetSession

__all__ = [
    "ArtifactWriter",
    "Benchmark",
    "BenchmarkResult",
    "JsonlSink",
    "RunResult",
    "Sink",
    "Trainer",
    "VerifyResult",
    "Verifier",
]


@dataclass
class RunResult:
    """What a trainer hands back: the models it produced (by role) and final metrics.

    ``models`` maps a role (``student``, ``teacher``, ``model``) to a built module; the
    benchmark stage measures them under the target's labels.
    """

    models: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyResult:
    name: str
    passed: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class BenchmarkResult:
    """Rows (one dict per measurement, with a ``model`` column) and a summary."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


class Trainer(ABC):
    """``trainer`` kind: runs one run of a target."""

    @abstractmethod
    def run(self, session: RunSession) -> RunResult: ...


class Verifier(ABC):
    """``verifier`` kind: checks a run's result against thresholds."""

    @abstractmethod
    def verify(self, session: RunSession, result: RunResult) -> VerifyResult: ...


class Benchmark(ABC):
    """``benchmark`` kind: measures named models."""

    @abstractmethod
    def run(self, session: TargetSession, models: dict[str, Any]) -> BenchmarkResult: ...


class ArtifactWriter(ABC):
    """``artifact`` kind: writes files from the target's report; returns their paths."""

    @abstractmethod
    def write(self, session: TargetSession, report: dict[str, Any]) -> list[Path]: ...


class Sink(ABC):
    """``sink`` kind: receives scalar metrics. Only rank 0 gets one."""

    @abstractmethod
    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None: ...

    def close(self) -> None:  # noqa: B027 - optional
        """Flush and release resources."""

    def rewind(self, step: int) -> None:  # noqa: B027 - optional
        """Forget what was logged after ``step``: a run resumed there logs those steps again."""


class JsonlSink(Sink):
    """The reference sink: one JSON object per line, flushed each write (always on)."""

    def __init__(self, path: str | Path, run_id: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self._f = self.path.open("a", encoding="utf-8")

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        record = {"run_id": self.run_id, "phase": phase, "step": step, **metrics}
        self._f.write(json.dumps(record, default=float) + "\n")
        self._f.flush()

    def rewind(self, step: int) -> None:
        """Keep the records up to ``step`` (a line a kill cut short goes too), rewritten atomically."""
        self._f.close()
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
                kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))
        self._f = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._f.close()
