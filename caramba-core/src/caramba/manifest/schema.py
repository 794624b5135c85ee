"""The manifest schema (version 2): the structs a manifest decodes into.

The layout is the original caramba's: ``version``, ``name``, ``vars``, ``defaults``,
``targets`` (``type: experiment | process``), components as ``{ref, config}``, ``runs``,
``benchmarks``, ``entrypoints``; plus ``requires:`` (plugin distributions checked before
anything runs). What a component's ``config`` may hold is decided by the plugin that
registered it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from caramba.manifest.config import Config, PolymorphicConfig
from caramba.manifest.decode import Kind

__all__ = [
    "BenchmarkConfig",
    "BenchmarkSpec",
    "ComponentSpec",
    "ComputeDefaults",
    "DataDefaults",
    "Defaults",
    "ExperimentTarget",
    "LoggingDefaults",
    "ManifestSpec",
    "ProcessConfig",
    "ProcessTarget",
    "RunSpec",
    "RuntimeDefaults",
    "VerifierConfig",
]

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class ComponentSpec(msgspec.Struct, kw_only=True):
    """``{ref: <registered name>, config: {...}}``; a bare string is ``{ref: <string>}``."""

    ref: str
    config: Any = None


class DataDefaults(Config, kw_only=True):
    tokenizer: str = "byte"
    val_frac: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.1


class LoggingDefaults(Config, kw_only=True):
    instrument: str = "rich"
    sinks: list[str] = []
    wandb: bool = False
    wandb_project: str = ""
    wandb_entity: str = ""
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    eval_iters: PositiveInt = 50


class RuntimeDefaults(Config, kw_only=True):
    save_every: PositiveInt = 100
    best_effort: bool = False


class ComputeDefaults(Config, kw_only=True):
    type: Literal["local"] = "local"


class Defaults(Config, kw_only=True):
    data: DataDefaults = msgspec.field(default_factory=DataDefaults)
    logging: LoggingDefaults = msgspec.field(default_factory=LoggingDefaults)
    runtime: RuntimeDefaults = msgspec.field(default_factory=RuntimeDefaults)
    compute: ComputeDefaults = msgspec.field(default_factory=ComputeDefaults)
    #: Pinned kernel backends by op (``"*"``: every op), e.g. ``{decode_attention: torch}``.
    kernels: dict[str, str] = {}


class VerifierConfig(PolymorphicConfig, kw_only=True):
    """Base of ``runs[].verify`` entries, chosen by ``type`` among registered verifiers."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("verifier",)
    fail_fast: bool = False


class BenchmarkConfig(PolymorphicConfig, kw_only=True):
    """Base of ``benchmarks[].config``, chosen by ``type`` among registered benchmarks."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("benchmark",)


class ProcessConfig(PolymorphicConfig, kw_only=True):
    """Base of a process target's ``process``, chosen by ``type`` among registered processes."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("process",)


class BenchmarkSpec(Config, kw_only=True):
    id: str
    config: BenchmarkConfig
    models: list[str] = []
    repeats: PositiveInt = 1


class RunSpec(Config, kw_only=True):
    """One run of a target. ``train`` is decoded by the target's trainer."""

    id: str
    mode: Literal["train", "eval"] = "train"
    exp: str = ""
    seed: int = 0
    steps: Annotated[int, msgspec.Meta(ge=0)] = 0
    expected: dict[str, Any] = {}
    verify: list[VerifierConfig] = []
    train: Any = None


class ExperimentTarget(Config, kw_only=True):
    type: Literal["experiment"] = "experiment"
    name: str
    description: str = ""
    backend: Literal["torch"] = "torch"
    task: str = ""
    data: Annotated[ComponentSpec, Kind("dataset")]
    system: Annotated[ComponentSpec, Kind("system")]
    objective: Annotated[ComponentSpec, Kind("objective")]
    trainer: Annotated[ComponentSpec, Kind("trainer")]
    labels: dict[str, str] = {}
    benchmarks: list[BenchmarkSpec] = []
    runs: list[RunSpec] = []


class ProcessTarget(Config, kw_only=True):
    type: Literal["process"]
    name: str
    description: str = ""
    team: dict[str, str] = {}
    process: ProcessConfig


class ManifestSpec(Config, kw_only=True):
    version: Literal[2]
    name: str = "experiment"
    notes: str = ""
    artifacts_dir: str = "artifacts"
    requires: list[str] = []
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    targets: list[ExperimentTarget | ProcessTarget] = []
    entrypoints: dict[str, str] = {}
