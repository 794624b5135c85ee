"""Anthropic's Messages API through the official ``anthropic`` client.

System turns go to the top-level ``system`` field; tool calls are ``tool_use`` content blocks
and their results ``tool_result`` blocks in the next user turn. Streaming reads the raw
server-sent events (``content_block_delta`` with ``text_delta`` or ``input_json_delta``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anthropic
import httpx2

from caramba_agents.chat import Message, Provider, Reply, Tool, ToolCall, api_key, parse_arguments
from caramba_agents.providers._errors import provider_error
from caramba_agents.specs import AnthropicConfig

__all__ = ["AnthropicMessages", "to_anthropic_messages"]


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """``(system, messages)``; consecutive turns of one role are merged, as the API requires."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            blocks.append({"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content})
        else:
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments or {}}
                       for c in m.tool_calls]
        if out and out[-1]["role"] == role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": role, "content": blocks})
    return system, out


class AnthropicMessages(Provider):
    name = "anthropic"

    def __init__(self, config: AnthropicConfig | None = None, *, http_client: httpx2.Client | None = None) -> None:
        self.config = config or AnthropicConfig()
        self.client = anthropic.Anthropic(api_key=api_key(self.config.api_key_env, self.name),
                                          base_url=self.config.base_url or None, timeout=self.config.timeout_s,
                                          max_retries=self.config.max_retries, http_client=http_client)

    def chat(self, messages: Sequence[Message], tools: Sequence[Tool] = (),
             on_text: Callable[[str], None] | None = None, tool_choice: str = "auto") -> Reply:
        c = self.config
        system, turns = to_anthropic_messages(messages)
        # no temperature: the current Messages API chooses sampling itself and rejects the field
        request: dict[str, Any] = {"model": c.model, "max_tokens": c.max_tokens, "messages": turns}
        if system:
            request["system"] = system
        if tools:
            request["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                                for t in tools]
            request["tool_choice"] = ({"type": "any"} if tool_choice == "required" else
                                      {"type": tool_choice} if tool_choice in ("auto", "none") else
                                      {"type": "tool", "name": tool_choice})
        try:
            if not c.stream:
                return self._reply(self.client.messages.create(**request), on_text)
            return self._stream(self.client.messages.create(**request, stream=True), on_text)
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise provider_error(self.name, exc) from None

    def _reply(self, response: Any, on_text: Callable[[str], None] | None) -> Reply:
        text = "".join(b.text for b in response.content if b.type == "text")
        if on_text and text:
            on_text(text)
        calls = [ToolCall(b.id, b.name, *parse_arguments(b.input)) for b in response.content if b.type == "tool_use"]
        usage = {"prompt_tokens": response.usage.input_tokens, "completion_tokens": response.usage.output_tokens}
        return Reply(text, calls, response.stop_reason or "", usage)

    def _stream(self, events: Any, on_text: Callable[[str], None] | None) -> Reply:
        text: list[str] = []
        blocks: dict[int, dict[str, str]] = {}
        finish = ""
        usage: dict[str, int] = {}
        for event in events:
            if event.type == "message_start":
                usage["prompt_tokens"] = event.message.usage.input_tokens
            elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                block = event.content_block
                blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
            elif event.type == "content_block_delta":
                delta = event.delta
                if delta.type == "text_delta":
                    text.append(delta.text)
                    if on_text:
                        on_text(delta.text)
                elif delta.type == "input_json_delta":
                    blocks[event.index]["json"] += delta.partial_json
            elif event.type == "message_delta":
                finish = event.delta.stop_reason or finish
                usage["completion_tokens"] = event.usage.output_tokens
        calls = [ToolCall(b["id"], b["name"], *parse_arguments(b["json"])) for _, b in sorted(blocks.items())]
        return Reply("".join(text), calls, finish, usage)


