"""Test tools for code built on caramba-agents: replay HTTP exchanges, script a provider.

:class:`Recorder` answers a client library's requests from scripted responses through the
library's own transport hook (``httpx2.MockTransport``) and keeps every request, so a test
checks the request shape and the parsing of the real wire format without a network.
:class:`ScriptedProvider` answers chat turns from a list of replies (or a function).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx2

from caramba_agents.chat import Message, Provider, Reply, Tool
from caramba_agents.specs import ProviderConfig

__all__ = ["Recorder", "ScriptedConfig", "ScriptedProvider", "json_response", "scripted_provider", "sse_response"]


class Recorder:
    """Answers each request with the next scripted response; keeps every request."""

    def __init__(self, *responses: httpx2.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError(f"unexpected request {request.method} {request.url}: no response left")
        return self.responses.pop(0)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))

    def body(self, i: int = -1) -> dict[str, Any]:
        """The JSON body of request ``i`` (the last by default)."""
        return dict(json.loads(self.requests[i].content))


def sse_response(path: str | Path, status: int = 200) -> httpx2.Response:
    """A server-sent-events response whose body is the file at ``path``."""
    return httpx2.Response(status, headers={"content-type": "text/event-stream"}, content=Path(path).read_bytes())


def json_response(path: str | Path, status: int = 200, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, headers={"content-type": "application/json", **(headers or {})},
                           content=Path(path).read_bytes())


class ScriptedProvider(Provider):
    """Replies in order from ``replies`` (text or :class:`Reply`), or from ``answer(messages, tools)``."""

    name = "scripted"

    def __init__(self, replies: Sequence[str | Reply] = (),
                 answer: Callable[[Sequence[Message], Sequence[Tool]], str | Reply] | None = None) -> None:
        self.replies = list(replies)
        self.answer = answer
        self.seen: list[list[Message]] = []

    def chat(self, messages: Sequence[Message], tools: Sequence[Tool] = (),
             on_text: Callable[[str], None] | None = None, tool_choice: str = "auto") -> Reply:
        self.seen.append(list(messages))
        if self.answer is not None:
            reply = self.answer(messages, tools)
        elif self.replies:
            reply = self.replies.pop(0)
        else:
            raise AssertionError("ScriptedProvider ran out of replies")
        reply = reply if isinstance(reply, Reply) else Reply(reply, finish_reason="stop")
        if on_text and reply.text:
            on_text(reply.text)
        return reply


class ScriptedConfig(ProviderConfig, kw_only=True):
    """A provider config for tests: ``{type: scripted, replies: [...]}`` once registered."""

    type: str = "scripted"
    replies: list[str] = []


def scripted_provider(config: ScriptedConfig, **_: Any) -> ScriptedProvider:
    """Factory to register under a test plugin: ``registry.add("scripted", config=ScriptedConfig, ...)``."""
    return ScriptedProvider(list(config.replies))
