"""The pipeline: sessions, the per-kind base classes plugins implement, and the runner."""

from caramba.pipeline._components import (
    ArtifactWriter,
    Benchmark,
    BenchmarkResult,
    JsonlSink,
    RunResult,
    Sink,
    Trainer,
    Verifier,
    VerifyResult,
)
from caramba.pipeline._files import atomic_write_bytes, atomic_write_json, atomic_write_text
from caramba.pipeline._runner import plan, run_target
from caramba.pipeline._session import RunSession, TargetSession

__all__ = [
    "ArtifactWriter",
    "Benchmark",
    "BenchmarkResult",
    "JsonlSink",
    "RunResult",
    "RunSession",
    "Sink",
    "TargetSession",
    "Trainer",
    "Verifier",
    "VerifyResult",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "plan",
    "run_target",
]
