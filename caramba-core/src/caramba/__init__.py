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
        Location,
        ManifestError,
        PluginError,
        Problem,
        RegistryError,
        RunError,
        UsageError,
    )
    from caramba.graph import Context, EmbedderConfig, NodeConfig, Shape, ShapeError, TopologyConfig
    from caramba.manifest import Config, Manifest, PolymorphicConfig, Scope
    from caramba.plugins import Entry, PluginInfo, Registrar, Registry, Runtime, hookimpl, hookspec

    __version__: str

_EXPORTS: dict[str, str] = {
    "CarambaError": "caramba.errors",
    "CheckpointError": "caramba.errors",
    "Location": "caramba.errors",
    "ManifestError": "caramba.errors",
    "PluginError": "caramba.errors",
    "Problem": "caramba.errors",
    "RegistryError": "caramba.errors",
    "RunError": "caramba.errors",
    "UsageError": "caramba.errors",
    "Context": "caramba.graph.context",
    "EmbedderConfig": "caramba.graph.node",
    "NodeConfig": "caramba.graph.node",
    "Shape": "caramba.graph.shapes",
    "ShapeError": "caramba.graph.shapes",
    "TopologyConfig": "caramba.graph.node",
    "Config": "caramba.manifest.config",
    "Manifest": "caramba.manifest.load",
    "PolymorphicConfig": "caramba.manifest.config",
    "Scope": "caramba.manifest.config",
    "Entry": "caramba.plugins.registry",
    "PluginInfo": "caramba.plugins.runtime",
    "Registrar": "caramba.plugins.registry",
    "Registry": "caramba.plugins.registry",
    "Runtime": "caramba.plugins.runtime",
    "hookimpl": "caramba.plugins.hooks",
    "hookspec": "caramba.plugins.hooks",
}

__all__ = [
    "CarambaError",
    "CheckpointError",
    "Config",
    "Context",
    "EmbedderConfig",
    "Entry",
    "Location",
    "Manifest",
    "ManifestError",
    "NodeConfig",
    "PluginError",
    "PluginInfo",
    "PolymorphicConfig",
    "Problem",
    "Registrar",
    "Registry",
    "RegistryError",
    "RunError",
    "Runtime",
    "Scope",
    "Shape",
    "ShapeError",
    "TopologyConfig",
    "UsageError",
    "__version__",
    "hookimpl",
    "hookspec",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # single-sourced: the installed caramba-core distribution's metadata
        from caramba.plugins.requirements import installed_version

        value = globals()["__version__"] = installed_version("caramba-core")
        return value
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caramba' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
