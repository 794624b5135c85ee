"""Plugins: the hook specifications, the per-kind registries and the runtime that loads them."""

from caramba.plugins._registry import KINDS, Entry, Registrar, Registry, UnknownComponent
from caramba.plugins._runtime import ENTRY_POINT_GROUP, PluginInfo, Runtime
from caramba.plugins.hooks import hookimpl, hookspec

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "Entry",
    "PluginInfo",
    "Registrar",
    "Registry",
    "Runtime",
    "UnknownComponent",
    "hookimpl",
    "hookspec",
]
