"""caramba-agents: research collaborators on real model providers, and a local model server.

The public names load on first use, so importing the plugin module never imports a client
library or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Message": "chat",
    "Provider": "chat",
    "ProviderError": "chat",
    "Reply": "chat",
    "Tool": "chat",
    "ToolCall": "chat",
    "create_provider": "providers",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'caramba_agents' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"caramba_agents.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
