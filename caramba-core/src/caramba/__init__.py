"""caramba: one YAML manifest in, a finished experiment out.

The core owns the manifest schema, the graph runtime, the pipeline and the hook
specifications; every layer, trainer, benchmark and agent is a plugin.
Importing ``caramba`` does not import torch, and its names load on first use, so a
plugin's ``from caramba import hookimpl`` and ``caramba plugins`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caramba.errors import (
        CarambaError,
        CheckpointError,
        DataError,
        DependencyError,
        Location,
        ManifestError,
        PluginError,
        Problem,
        RegistryError,
        RunError,
        UsageError,
        did_you_mean,
        missing_dependency,
        require,
    )
    from caramba.graph._context import AuxLoss, Context
    from caramba.graph._kernels import KernelBackend, select_kernels
    from caramba.graph._node import EmbedderConfig, NodeConfig, TopologyConfig
    from caramba.graph._shapes import UNKNOWN, Dim, Shape, ShapeError, expect_last
    from caramba.manifest._config import Config, PolymorphicConfig, Scope
    from caramba.manifest._limits import human_bytes, memory_budget
    from caramba.manifest._load import Manifest
    from caramba.manifest._schema import BenchmarkConfig, ProcessConfig, VerifierConfig
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
    from caramba.plugins._registry import Entry, Registrar, Registry
    from caramba.plugins._runtime import PluginInfo, Runtime
    from caramba.plugins.hooks import hookimpl, hookspec


# name -> the module that defines it; each loads on first use, so `from caramba import hookimpl`
# costs pluggy alone. This is the whole torch-free public API; `caramba.nn` is its torch side.
__version__ = "0.1.0"  # single source: pyproject.toml reads it, the distribution's metadata repeats it

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CarambaError", "CheckpointError", "Location", "ManifestError", "PluginError", "Problem",
                     "RegistryError", "RunError", "UsageError", "did_you_mean", "DataError", "DependencyError",
                     "missing_dependency", "require"), "caramba.errors"),
    **dict.fromkeys(("AuxLoss", "Context"), "caramba.graph._context"),
    **dict.fromkeys(("KernelBackend", "select_kernels"), "caramba.graph._kernels"),
    **dict.fromkeys(("EmbedderConfig", "NodeConfig", "TopologyConfig"), "caramba.graph._node"),
    **dict.fromkeys(("UNKNOWN", "Dim", "Shape", "ShapeError", "expect_last"), "caramba.graph._shapes"),
    **dict.fromkeys(("Config", "PolymorphicConfig", "Scope"), "caramba.manifest._config"),
    "Manifest": "caramba.manifest._load",
    **dict.fromkeys(("human_bytes", "memory_budget"), "caramba.manifest._limits"),
    **dict.fromkeys(("BenchmarkConfig", "ProcessConfig", "VerifierConfig"), "caramba.manifest._schema"),
    **dict.fromkeys(("ArtifactWriter", "Benchmark", "BenchmarkResult", "JsonlSink", "RunResult", "Sink", "Trainer",
                     "Verifier", "VerifyResult"), "caramba.pipeline._components"),
    **dict.fromkeys(("atomic_write_bytes", "atomic_write_json", "atomic_write_text"), "caramba.pipeline._files"),
    **dict.fromkeys(("plan", "run_target"), "caramba.pipeline._runner"),
    **dict.fromkeys(("RunSession", "TargetSession"), "caramba.pipeline._session"),
    **dict.fromkeys(("hookimpl", "hookspec"), "caramba.plugins.hooks"),
    **dict.fromkeys(("Entry", "Registrar", "Registry"), "caramba.plugins._registry"),
    **dict.fromkeys(("PluginInfo", "Runtime"), "caramba.plugins._runtime"),
}

__all__ = [
    "ArtifactWriter",
    "AuxLoss",
    "Benchmark",
    "BenchmarkConfig",
    "BenchmarkResult",
    "CarambaError",
    "CheckpointError",
    "Config",
    "Context",
    "DataError",
    "DependencyError",
    "Dim",
    "EmbedderConfig",
    "Entry",
    "JsonlSink",
    "KernelBackend",
    "Location",
    "Manifest",
    "ManifestError",
    "NodeConfig",
    "PluginError",
    "PluginInfo",
    "PolymorphicConfig",
    "Problem",
    "ProcessConfig",
    "Registrar",
    "Registry",
    "RegistryError",
    "RunError",
    "RunResult",
    "RunSession",
    "Runtime",
    "Scope",
    "Shape",
    "ShapeError",
    "Sink",
    "TargetSession",
    "TopologyConfig",
    "Trainer",
    "UNKNOWN",
    "UsageError",
    "Verifier",
    "VerifierConfig",
    "VerifyResult",
    "__version__",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "did_you_mean",
    "expect_last",
    "hookimpl",
    "hookspec",
    "human_bytes",
    "memory_budget",
    "missing_dependency",
    "plan",
    "require",
    "run_target",
    "select_kernels",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caramba' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
