"""Building ``nn.Module`` trees from validated node configs (imports torch lazily).

Module paths follow manifest paths: a topology keeps its children in ``self.layers`` (an
``nn.ModuleList``), so the module at ``topology.layers.3.layers.1`` is the node the manifest
declares at ``...topology.layers[3].layers[1]`` and checkpoints, traces and errors agree.
Kernel backends are selected here, never inside ``forward()``.
"""

from __future__ import annotations

from typing import Any

from caramba.errors import CarambaError
from caramba.graph._node import NodeConfig, TopologyConfig
from caramba.plugins._registry import Entry

__all__ = ["Builder"]


class Builder:
    """Constructs modules for a runtime's registered nodes."""

    def __init__(self, runtime: Any, *, device: Any = None, dtype: Any = None) -> None:
        self.runtime = runtime
        self.device = device
        self.dtype = dtype

    def entry_for(self, node: Any) -> Entry:
        kinds = getattr(type(node), "__caramba_kinds__", ())
        for kind in kinds:
            entry: Entry | None = self.runtime.registry(kind).find(node.type)
            if entry is not None:
                return entry
        raise CarambaError(f"no registered {'/'.join(kinds) or 'component'} named '{node.type}'",
                           hint="validate the manifest first; it names every unknown type")

    def build(self, node: NodeConfig | Any, path: str) -> Any:
        """Build ``node`` (and its children) as the module at ``path``."""
        entry = self.entry_for(node)
        factory = entry.load()
        if isinstance(node, TopologyConfig):
            children = [self.build(child, f"{path}.layers.{i}") for i, child in enumerate(node.children())]
            module = factory(node, children)
        else:
            module = factory(node)
        module.node_path = path
        if self.device is not None or self.dtype is not None:
            module.to(device=self.device, dtype=self.dtype)
        return module

    def select_kernel(self, op: str, device: str, dtype: str) -> str:
        """The kernel backend plugins choose for ``op`` (``"torch"`` when none answers)."""
        return self.runtime.hooks.select_kernel(op, device, dtype) or "torch"
