"""caramba's hook specifications: the whole plugin API in one module.

A plugin is a module (named by an entry point in the ``caramba`` group, or passed to
``caramba.Runtime(plugins=[...])``) that defines functions decorated with
:data:`caramba.hookimpl` whose names are the hooks below. Hooks are grouped by phase.

**Registration** (called once per plugin while the :class:`~caramba.Runtime` loads, in
plugin order; what a plugin registers is attributed to it, and rolled back if it raises).
Each receives a :class:`~caramba.plugins.Registrar` of one kind, which can only add entries
of that kind in the plugin's name: ``registry.add(name, config=Struct, factory="module:attr",
summary=...)``. The module that defines these hooks, and the config structs it registers,
must not import torch.

**Configuration**: :func:`caramba_configure` is *historic*: a plugin registered later still
receives it.

**Run lifecycle**: called by the pipeline around a run. They are never called from
inside ``forward()``.

**Selection**: ``firstresult`` hooks where the first non-``None`` answer wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import pluggy

if TYPE_CHECKING:  # named for type checkers only, so `from caramba import hookimpl` stays cheap
    from caramba.pipeline._components import RunResult
    from caramba.pipeline._session import RunSession
    from caramba.plugins._registry import Registrar
    from caramba.plugins._runtime import Runtime

__all__ = ["Hooks", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("caramba")
hookimpl = pluggy.HookimplMarker("caramba")


# --- registration ------------------------------------------------------------------------

@hookspec
def caramba_register_layers(registry: Registrar) -> None:
    """Register layers: ``nn.Module`` leaves of a model graph (``AttentionLayer``, ``RMSNormLayer``...)."""

@hookspec
def caramba_register_topologies(registry: Registrar) -> None:
    """Register topologies: nodes that hold ``layers:`` and compose them (``StackedTopology``...)."""

@hookspec
def caramba_register_embedders(registry: Registrar) -> None:
    """Register embedders: ``system.config.model.embedder`` kinds (``token``, ``patch``)."""

@hookspec
def caramba_register_systems(registry: Registrar) -> None:
    """Register systems: what a target trains (``system.language_model``, ``system.generic``...)."""

@hookspec
def caramba_register_datasets(registry: Registrar) -> None:
    """Register datasets: a target's ``data.ref`` (``dataset.tokens``...)."""

@hookspec
def caramba_register_tokenizers(registry: Registrar) -> None:
    """Register tokenizers (``byte``, ``bpe``...)."""

@hookspec
def caramba_register_objectives(registry: Registrar) -> None:
    """Register objectives: a target's ``objective.ref`` (``objective.next_token_ce``...)."""

@hookspec
def caramba_register_optimizers(registry: Registrar) -> None:
    """Register optimizers named by a run's ``train.optimizer`` (``adamw``, ``lion``...)."""

@hookspec
def caramba_register_schedulers(registry: Registrar) -> None:
    """Register learning-rate schedules named by ``train.scheduler`` (``cosine``...)."""

@hookspec
def caramba_register_trainers(registry: Registrar) -> None:
    """Register trainers: a target's ``trainer.ref`` (``trainer.standard``, ``trainer.upcycle``...)."""

@hookspec
def caramba_register_verifiers(registry: Registrar) -> None:
    """Register verifiers: ``runs[].verify`` kinds (``compare``, ``fidelity``, ``eval``)."""

@hookspec
def caramba_register_benchmarks(registry: Registrar) -> None:
    """Register benchmarks: ``benchmarks[].config.type`` (``perplexity``, ``latency``, ``memory``)."""

@hookspec
def caramba_register_artifacts(registry: Registrar) -> None:
    """Register artifact writers run after benchmarks (CSV, PNG, LaTeX...)."""

@hookspec
def caramba_register_sinks(registry: Registrar) -> None:
    """Register metrics sinks named in ``defaults.logging.sinks`` (``jsonl``, ``hdf5``...)."""

@hookspec
def caramba_register_checkpoint_formats(registry: Registrar) -> None:
    """Register checkpoint formats for loading weights (``hf``, ``gguf``...)."""

@hookspec
def caramba_register_cache_kinds(registry: Registrar) -> None:
    """Register KV-cache storage kinds (``fp16``, ``q8_0``...)."""

@hookspec
def caramba_register_cache_policies(registry: Registrar) -> None:
    """Register KV-cache policies that choose a cache kind."""

@hookspec
def caramba_register_kernel_backends(registry: Registrar) -> None:
    """Register kernel backends (``torch``, ``triton``...)."""

@hookspec
def caramba_register_providers(registry: Registrar) -> None:
    """Register LLM API providers for agents."""

@hookspec
def caramba_register_processes(registry: Registrar) -> None:
    """Register agent processes: ``type: process`` targets."""

@hookspec
def caramba_register_commands(registry: Registrar) -> None:
    """Register CLI subcommands: ``caramba NAME ...`` calls ``factory(None)``, then
    ``add_arguments(parser)`` (an ``argparse`` parser) and ``run(args) -> int`` (the exit code)."""

@hookspec
def caramba_register_switch_policies(registry: Registrar) -> None:
    """Register optimizer-switching policies for orchestrated training (``safety``, ``bandit``...)."""


# --- configuration -----------------------------------------------------------------------

@hookspec(historic=True)
def caramba_configure(runtime: Runtime) -> None:
    """Called once the runtime has loaded every plugin and frozen the registries."""


@hookspec
def caramba_preset_dirs() -> list[str]:  # type: ignore[empty-body]
    """Folders holding preset manifests, so ``caramba run NAME`` finds ``NAME.yml`` there."""


# --- run lifecycle -----------------------------------------------------------------------

@hookspec
def caramba_run_start(session: RunSession) -> None:
    """A run begins: ``session`` is the :class:`~caramba.pipeline.RunSession` (target, run, run_dir)."""


@hookspec
def caramba_step_end(session: RunSession, step: int, metrics: dict[str, float]) -> None:
    """A trainer finished optimizer step ``step`` with these scalar metrics."""


@hookspec
def caramba_run_end(session: RunSession, result: RunResult) -> None:
    """A run ended (after verify) with its :class:`~caramba.pipeline.RunResult`."""


@hookspec
def caramba_artifacts_written(session: RunSession, paths: list[str]) -> None:
    """The artifacts stage wrote these files into the target's directory."""


# --- selection -----------------------------------------------------------------------------

@hookspec(firstresult=True)
def caramba_select_kernel(op: str, device: str, dtype: str) -> str | None:
    """Name the kernel backend for ``op`` on ``device``/``dtype``; ``None`` defers to others.

    ``op`` is the operation's registered name (``"attention"``), ``device`` a torch device
    type (``"cuda"``, ``"cpu"``), ``dtype`` a torch dtype name (``"bfloat16"``). Called while a
    model is built, never inside ``forward()``.
    """


# --- the typed facade the core calls through ---------------------------------------------

class Hooks:
    """Typed calls of the non-registration hooks: ``runtime.hooks.run_start(session)``.

    The pluggy relay (``runtime.hook``) takes keyword arguments only and is untyped; this
    facade names each hook's parameters and result, so call sites are checked by mypy.
    """

    def __init__(self, relay: pluggy.HookRelay) -> None:
        self._relay = relay

    def preset_dirs(self) -> list[str]:
        """Every plugin's preset folders, flattened in plugin order."""
        answers = cast("list[list[str]]", self._relay.caramba_preset_dirs())
        return [d for dirs in answers for d in dirs]

    def run_start(self, session: RunSession) -> None:
        self._relay.caramba_run_start(session=session)

    def step_end(self, session: RunSession, step: int, metrics: dict[str, float]) -> None:
        self._relay.caramba_step_end(session=session, step=step, metrics=metrics)

    def run_end(self, session: RunSession, result: RunResult) -> None:
        self._relay.caramba_run_end(session=session, result=result)

    def artifacts_written(self, session: RunSession, paths: Sequence[str]) -> None:
        self._relay.caramba_artifacts_written(session=session, paths=list(paths))

    def select_kernel(self, op: str, device: str, dtype: str) -> str | None:
        """The first plugin's answer, or ``None`` when none answers."""
        return cast("str | None", self._relay.caramba_select_kernel(op=op, device=device, dtype=dtype))
