"""Torch-free config structs and registration tables, one module per layer family.

Each module here defines ``COMPONENTS``: a list of :class:`Component` rows. The plugin
collects every module of this package, so adding a family means adding a module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Component"]


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    config: type
    factory: str
    summary: str
    aliases: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)
