"""caramba's hook specifications: the whole plugin API in one module.

A plugin is a module (named by an entry point in the ``caramba`` group, or passed to
``caramba.Runtime(plugins=[...])``) that defines functions decorated with
:data:`caramba.hookimpl` whose names are the hooks below. Hooks are grouped by phase.

**Registration** (called once per plugin while the :class:`~caramba.Runtime` loads, in
plugin order; what a plugin registers is attributed to it, and rolled back if it raises).
Each receives the :class:`~caramba.plugins.registry.Registry` of one kind and calls
``registry.add(name, config=Struct, factory="module:attr", summary=...)``. The module that
defines these hooks, and the config structs it registers, must not import torch.

**Configuration**: :func:`caramba_configure` is *historic*: a plugin registered later still
receives it.

**Run lifecycle**: called by the pipeline around a run. They are never called from
inside ``forward()``.

**Selection**: ``firstresult`` hooks where the first non-``None`` answer wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pluggy

__all__ = ["Hooks", "hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("caramba")
hookimpl = pluggy.HookimplMarker("caramba")


# --- registration ------------------------------------------------------------------------

@hookspec
def caramba_register_layers(registry: Any) -> None:
    """Register layers: ``nn.Module`` leaves of a model graph (``AttentionLayer``, ``RMSNormLayer``...)."""

@hookspec
def caramba_register_topologies(registry: Any) -> None:
    """Register topologies: nodes that hold ``layers:`` and compose them (``StackedTopology``...)."""

@hookspec
def caramba_register_embedders(registry: Any) -> None:
    """Register embedders: ``system.config.model.embedder`` kinds (``token``, ``patch``)."""

@hookspec
def caramba_register_systems(registry: Any) -> None:
    """Register systems: what a target trains (``system.language_model``, ``system.generic``...)."""

@hookspec
def caramba_register_datasets(registry: Any) -> None:
    """Register datasets: a target's ``data.ref`` (``dataset.tokens``...)."""

@hookspec
def caramba_register_tokenizers(registry: Any) -> None:
    """Register tokenizers (``byte``, ``bpe``...)."""

@hookspec
def caramba_register_objectives(registry: Any) -> None:
    """Register objectives: a target's ``objective.ref`` (``objective.next_token_ce``...)."""

@hookspec
def caramba_register_optimizers(registry: Any) -> None:
    """Register optimizers named by a run's ``train.optimizer`` (``adamw``, ``lion``...)."""

@hookspec
def caramba_register_schedulers(registry: Any) -> None:
    """Register learning-rate schedules named by ``train.scheduler`` (``cosine``...)."""

@hookspec
def caramba_register_trainers(registry: Any) -> None:
    """Register trainers: a target's ``trainer.ref`` (``trainer.standard``, ``trainer.upcycle``...)."""

@hookspec
def caramba_register_verifiers(registry: Any) -> None:
    """Register verifiers: ``runs[].verify`` kinds (``compare``, ``fidelity``, ``eval``)."""

@hookspec
def caramba_register_benchmarks(registry: Any) -> None:
    """Register benchmarks: ``benchmarks[].config.type`` (``perplexity``, ``latency``, ``memory``)."""

@hookspec
def caramba_register_artifacts(registry: Any) -> None:
    """Register artifact writers run after benchmarks (CSV, PNG, LaTeX...)."""

@hookspec
def caramba_register_sinks(registry: Any) -> None:
    """Register metrics sinks named in ``defaults.logging.sinks`` (``jsonl``, ``hdf5``...)."""

@hookspec
def caramba_register_checkpoint_formats(registry: Any) -> None:
    """Register checkpoint formats for loading weights (``hf``, ``gguf``...)."""

@hookspec
def caramba_register_cache_kinds(registry: Any) -> None:
    """Register KV-cache storage kinds (``fp16``, ``q8_0``...)."""

@hookspec
def caramba_register_cache_policies(registry: Any) -> None:
    """Register KV-cache policies that choose a cache kind."""

@hookspec
def caramba_register_kernel_backends(registry: Any) -> None:
    """Register kernel backends (``torch``, ``triton``...)."""

@hookspec
def caramba_register_providers(registry: Any) -> None:
    """Register LLM API providers for agents."""

@hookspec
def caramba_register_processes(registry: Any) -> None:
    """Register agent processes: ``type: process`` targets."""

@hookspec
def caramba_register_commands(registry: Any) -> None:
    """Register CLI subcommands: ``caramba NAME ...`` calls ``factory(None)``, then
    ``add_arguments(parser)`` (an ``argparse`` parser) and ``run(args) -> int`` (the exit code)."""


# --- configuration -----------------------------------------------------------------------

@hookspec(historic=True)
def caramba_configure(runtime: Any) -> None:
    """Called once the runtime has loaded every plugin and frozen the registries."""


@hookspec
def caramba_preset_dirs() -> list[str]:  # type: ignore[empty-body]
    """Folders holding preset manifests, so ``caramba run NAME`` finds ``NAME.yml`` there."""


# --- run lifecycle -----------------------------------------------------------------------

@hookspec
def caramba_run_start(session: Any) -> None:
    """A run begins: ``session`` is the :class:`~caramba.pipeline.RunSession` (target, run, run_dir)."""


@hookspec
def caramba_step_end(session: Any, step: int, metrics: dict[str, float]) -> None:
    """A trainer finished optimizer step ``step`` with these scalar metrics."""


@hookspec
def caramba_run_end(session: Any, result: Any) -> None:
    """A run ended (after verify) with its :class:`~caramba.pipeline.RunResult`."""


@hookspec
def caramba_artifacts_written(session: Any, paths: list[str]) -> None:
    """The artifacts stage wrote these files into the target's directory."""


# --- selection -----------------------------------------------------------------------------

@hookspec(firstresult=True)
def caramba_select_kernel(op: str, device: str, dtype: str) -> str | None:
    """Name the kernel backend for ``op`` on ``device``/``dtype``; ``None`` defers to others.

    Called while a model is built, never inside ``forward()``.
    """


# --- the typed facade the core calls through ---------------------------------------------

class Hooks:
    """Typed calls of the non-registration hooks: ``runtime.hooks.run_start(session)``.

    The pluggy relay (``runtime.hook``) takes keyword arguments only and returns ``Any``;
    this facade names each hook's parameters and result, so call sites are checked by mypy.
    """

    def __init__(self, relay: Any) -> None:
        self._relay = relay

    def preset_dirs(self) -> list[str]:
        """Every plugin's preset folders, flattened in plugin order."""
        return [d for dirs in self._relay.caramba_preset_dirs() for d in dirs]

    def run_start(self, session: Any) -> None:
        self._relay.caramba_run_start(session=session)

    def step_end(self, session: Any, step: int, metrics: dict[str, float]) -> None:
        self._relay.caramba_step_end(session=session, step=step, metrics=metrics)

    def run_end(self, session: Any, result: Any) -> None:
        self._relay.caramba_run_end(session=session, result=result)

    def artifacts_written(self, session: Any, paths: Sequence[str]) -> None:
        self._relay.caramba_artifacts_written(session=session, paths=list(paths))

    def select_kernel(self, op: str, device: str, dtype: str) -> str | None:
        """The first plugin's answer, or ``None`` when none answers."""
        answer: str | None = self._relay.caramba_select_kernel(op=op, device=device, dtype=dtype)
        return answer
