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

from caramba.manifest._config import Config, PolymorphicConfig, Scope
from caramba.manifest._decode import Kind

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


#: The original caramba's task labels (it never built a task; neither does caramba: the report records it).
TASKS = ("task.language_modeling", "task.classification", "task.supervised_classification",
         "task.node_classification", "task.graph_node_classification", "task.denoising", "task.diffusion_denoising")
#: The original's instruments: the console and JSONL are always on here; the others are metrics sinks.
INSTRUMENTS = ("rich", "jsonl", "hdf5", "tensorboard", "wandb")


class DataDefaults(Config, kw_only=True):
    """The original's manifest-wide data defaults. caramba's datasets name their own tokenizer and
    held-out fraction, so both are accepted (the original's values only) with a note, and ignored."""

    tokenizer: Literal["tiktoken", "llama", "none", "byte", "bpe"] | None = None
    val_frac: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] | None = None

    def check(self, scope: Scope) -> None:
        if self.tokenizer is not None:
            scope.note("tokenizer", "ignored: each dataset names its own tokenizer (dataset.text tokenizer:, "
                       "dataset.tokens tokenizer_checkpoint:; the eval verifier's tokenizer:)", "remove it")
        if self.val_frac is not None:
            scope.note("val_frac", "ignored: each dataset's own val_frac sets its held-out split", "remove it")


class LoggingDefaults(Config, kw_only=True):
    """``instrument``: the original's choice of logger; ``hdf5``, ``tensorboard`` and ``wandb``
    add that metrics sink, ``rich`` (the console) and ``jsonl`` are always on."""

    instrument: Literal["rich", "jsonl", "hdf5", "tensorboard", "wandb"] = "rich"
    sinks: list[str] = []
    wandb: bool = False
    wandb_project: str = ""
    wandb_entity: str = ""
    wandb_mode: Literal["online", "offline", "disabled"] = "offline"
    eval_iters: PositiveInt = 50


class RuntimeDefaults(Config, kw_only=True):
    save_every: PositiveInt = 100

    __caramba_ignored__: ClassVar[dict[str, str]] = {
        "best_effort": "caramba never falls back silently: a backend that cannot run is an error",
    }


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
    task: str = ""  # the original's label (TASKS); recorded in the report
    data: Annotated[ComponentSpec, Kind("dataset")]
    system: Annotated[ComponentSpec, Kind("system")]
    objective: Annotated[ComponentSpec, Kind("objective")]
    trainer: Annotated[ComponentSpec, Kind("trainer")]
    labels: dict[str, str] = {}
    benchmarks: list[BenchmarkSpec] = []
    runs: list[RunSpec] = []

    def check(self, scope: Scope) -> None:
        if self.task and self.task not in TASKS:
            from caramba.errors import did_you_mean

            scope.error("task", f"unknown task '{self.task}'", did_you_mean(self.task, TASKS))


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
