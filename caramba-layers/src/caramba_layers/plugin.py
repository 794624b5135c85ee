"""The caramba-layers plugin: registers every component declared in :mod:`caramba_layers.specs`.

Torch-free: only config structs are imported here; modules load when a model is built.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from caramba import hookimpl
from caramba_layers import specs
from caramba_layers.specs import Component


def _components() -> list[Component]:
    rows: list[Component] = []
    for info in sorted(pkgutil.iter_modules(specs.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{specs.__name__}.{info.name}")
        rows.extend(getattr(module, "COMPONENTS", []))
    return rows


def _register(kind: str, registry: Any) -> None:
    for c in _components():
        if c.kind == kind:
            registry.add(c.name, config=c.config, factory=c.factory, summary=c.summary, aliases=c.aliases,
                         **c.extras)


@hookimpl
def caramba_register_layers(registry: Any) -> None:
    _register("layer", registry)


@hookimpl
def caramba_register_topologies(registry: Any) -> None:
    _register("topology", registry)


@hookimpl
def caramba_register_embedders(registry: Any) -> None:
    _register("embedder", registry)


@hookimpl
def caramba_register_systems(registry: Any) -> None:
    _register("system", registry)


@hookimpl
def caramba_register_checkpoint_formats(registry: Any) -> None:
    _register("checkpoint_format", registry)
