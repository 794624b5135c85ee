"""OpenAI Chat Completions through the official ``openai`` client.

The same wire format is served by vLLM, llama.cpp, Ollama and ``caramba serve``, so this one
provider reaches all of them by ``base_url``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
import openai

from caramba_agents.chat import Message, Provider, Reply, Tool, ToolCall, api_key, parse_arguments
from caramba_agents.providers._errors import provider_error
from caramba_agents.specs import OpenAIChatConfig

__all__ = ["OpenAIChat", "to_openai_messages"]


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
            continue
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": json.dumps(c.arguments or {})}}
                                  for c in m.tool_calls]
        out.append(item)
    return out


class OpenAIChat(Provider):
    name = "openai"

    def __init__(self, config: OpenAIChatConfig | None = None, *, http_client: httpx2.Client | None = None) -> None:
        self.config = config or OpenAIChatConfig()
        key = api_key(self.config.api_key_env, self.name) if self.config.api_key_env else "no-key"
        self.client = openai.OpenAI(api_key=key, base_url=self.config.base_url or None,
                                    timeout=self.config.timeout_s, max_retries=self.config.max_retries,
                                    http_client=http_client)

    def chat(self, messages: Sequence[Message], tools: Sequence[Tool] = (),
             on_text: Callable[[str], None] | None = None, tool_choice: str = "auto") -> Reply:
        c = self.config
        request: dict[str, Any] = {"model": c.model, "messages": to_openai_messages(messages),
                                   "temperature": c.temperature, c.max_tokens_field: c.max_tokens}
        if tools:
            request["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                  "parameters": t.parameters}} for t in tools]
            request["tool_choice"] = (tool_choice if tool_choice in ("auto", "required", "none")
                                      else {"type": "function", "function": {"name": tool_choice}})
        try:
            if not c.stream:
                return self._reply(self.client.chat.completions.create(**request), on_text)
            return self._stream(self.client.chat.completions.create(**request, stream=True), on_text)
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            raise provider_error(self.name, exc) from None

    def _reply(self, response: Any, on_text: Callable[[str], None] | None) -> Reply:
        choice = response.choices[0]
        text = choice.message.content or ""
        if on_text and text:
            on_text(text)
        calls = [_call(tc.id, tc.function.name, tc.function.arguments) for tc in choice.message.tool_calls or []]
        usage = response.usage.model_dump(include={"prompt_tokens", "completion_tokens"}) if response.usage else {}
        return Reply(text, calls, choice.finish_reason or "", usage)

    def _stream(self, chunks: Any, on_text: Callable[[str], None] | None) -> Reply:
        text: list[str] = []
        partial: dict[int, dict[str, str]] = {}  # tool calls arrive in pieces, keyed by index
        finish = ""
        usage: dict[str, int] = {}
        for chunk in chunks:
            if chunk.usage:
                usage = chunk.usage.model_dump(include={"prompt_tokens", "completion_tokens"})
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
                if on_text:
                    on_text(delta.content)
            for tc in delta.tool_calls or []:
                slot = partial.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
        calls = [_call(s["id"], s["name"], s["arguments"]) for _, s in sorted(partial.items())]
        return Reply("".join(text), calls, finish, usage)


def _call(call_id: str, name: str, raw: str | None) -> ToolCall:
    arguments, error = parse_arguments(raw)
    return ToolCall(call_id, name, arguments, error)
