"""Chat providers, one module per API, each over its official client library."""

from __future__ import annotations

from typing import Any

__all__ = ["create_provider"]


def create_provider(runtime: Any, config: Any, **kwargs: Any) -> Any:
    """The provider a decoded ``{type: ..., model: ...}`` config names (``kwargs``: e.g. ``http_client``)."""
    return runtime.get("provider", config.type).load()(config, **kwargs)
