"""caramba: one YAML manifest in, a finished experiment out.

The core owns the manifest schema, the graph runtime, the pipeline and the hook
specifications; every layer, trainer, benchmark and agent is a plugin.
Importing ``caramba`` does not import torch.
"""

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
from caramba.plugins import Entry, PluginInfo, Registry, Runtime, hookimpl, hookspec

__version__ = "0.1.0"

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
