"""The provider-neutral chat vocabulary: messages, tools, tool calls, replies, and the base class.

Every provider turns a list of :class:`Message` (plus :class:`Tool` declarations) into one
:class:`Reply`. Text arrives through ``on_text`` as it streams; the reply is whole when
``chat`` returns. Tool calls whose arguments are not a JSON object are kept with an
``error`` instead of arguments, so the caller can tell the model what went wrong.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from caramba import CarambaError

__all__ = ["Message", "Provider", "ProviderError", "Reply", "Tool", "ToolCall", "api_key", "parse_arguments"]

Role = Literal["system", "user", "assistant", "tool"]


class ProviderError(CarambaError):
    """A model provider failed: a missing key, an HTTP error, a rate limit, a broken stream."""

    exit_code = 1


@dataclass
class ToolCall:
    """A model's request to run a tool. ``arguments`` is ``None`` when ``error`` says why."""

    id: str
    name: str
    arguments: dict[str, Any] | None = None
    error: str = ""


@dataclass
class Message:
    """One turn: ``name`` says which agent spoke (for shared transcripts); tool results carry
    ``tool_call_id`` and the tool's ``name``."""

    role: Role
    content: str = ""
    name: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", [], None)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        calls = [ToolCall(**c) for c in data.get("tool_calls", [])]
        return cls(role=data["role"], content=data.get("content", ""), name=data.get("name", ""),
                   tool_calls=calls, tool_call_id=data.get("tool_call_id", ""))


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class Reply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)


def parse_arguments(raw: str | dict[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    """``(arguments, "")`` for a JSON object, else ``(None, why)``."""
    if isinstance(raw, dict):
        return raw, ""
    if raw is None or raw.strip() == "":
        return {}, ""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at char {exc.pos}): {raw[:80]!r}"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, ""


def api_key(env: str, provider: str) -> str:
    """The key in environment variable ``env``; never logged, never written anywhere."""
    value = os.environ.get(env, "")
    if not value:
        raise ProviderError(f"{provider}: the environment variable {env} is not set",
                            hint=f"export {env}=... (keys are read from the environment only)")
    return value


class Provider(ABC):
    """Base of the chat providers: ``chat(messages, tools, on_text) -> Reply``."""

    name = "provider"

    @abstractmethod
    def chat(self, messages: Sequence[Message], tools: Sequence[Tool] = (),
             on_text: Callable[[str], None] | None = None, tool_choice: str = "auto") -> Reply:
        """One model turn over ``messages``; streamed text goes to ``on_text`` as it arrives.

        ``tool_choice``: ``"auto"`` (the model decides), ``"required"`` (it must call a tool),
        ``"none"``, or a tool's name (it must call that one).
        """
