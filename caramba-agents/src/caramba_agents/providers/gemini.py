"""Google Gemini through the official ``google-genai`` client.

Assistant turns have role ``model``; tool calls are ``functionCall`` parts and results
``functionResponse`` parts. Automatic function calling is off: caramba runs tools itself,
so every call is visible and confirmed where it must be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx2
from google import genai
from google.genai import errors, types

from caramba_agents.chat import Message, Provider, Reply, Tool, ToolCall, api_key, parse_arguments
from caramba_agents.providers._errors import provider_error
from caramba_agents.specs import GeminiConfig

__all__ = ["Gemini", "to_gemini_contents"]


def to_gemini_contents(messages: Sequence[Message]) -> tuple[str, list[types.Content]]:
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[types.Content] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            part = types.Part(function_response=types.FunctionResponse(
                name=m.name or names.get(m.tool_call_id, ""), response={"result": m.content}))
            role = "user"
        else:
            role = "model" if m.role == "assistant" else "user"
        parts = [part] if m.role == "tool" else []
        if m.role != "tool":
            if m.content:
                parts.append(types.Part(text=m.content))
            parts += [types.Part(function_call=types.FunctionCall(name=c.name, args=c.arguments or {}))
                      for c in m.tool_calls]
        if out and out[-1].role == role:
            out[-1].parts = [*(out[-1].parts or []), *parts]
        else:
            out.append(types.Content(role=role, parts=parts))
    return system, out


def _tool_config(choice: str) -> types.ToolConfig:
    mode = {"auto": "AUTO", "none": "NONE"}.get(choice, "ANY")
    names = None if choice in ("auto", "none", "required") else [choice]
    return types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
        mode=mode, allowed_function_names=names))  # type: ignore[arg-type]


class Gemini(Provider):
    name = "gemini"

    def __init__(self, config: GeminiConfig | None = None, *, http_client: httpx2.Client | None = None) -> None:
        self.config = config or GeminiConfig()
        options = types.HttpOptions(
            timeout=int(self.config.timeout_s * 1000),
            base_url=self.config.base_url or None,
            retry_options=types.HttpRetryOptions(attempts=self.config.max_retries + 1, initial_delay=1.0,
                                                 exp_base=2.0),
            httpx_client=http_client,
        )
        self.client = genai.Client(api_key=api_key(self.config.api_key_env, self.name), http_options=options)

    def chat(self, messages: Sequence[Message], tools: Sequence[Tool] = (),
             on_text: Callable[[str], None] | None = None, tool_choice: str = "auto") -> Reply:
        c = self.config
        system, contents = to_gemini_contents(messages)
        config = types.GenerateContentConfig(
            system_instruction=system or None, temperature=c.temperature, max_output_tokens=c.max_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            tools=[types.Tool(function_declarations=[
                types.FunctionDeclaration(name=t.name, description=t.description,
                                          parameters_json_schema=t.parameters) for t in tools])] if tools else None,
            tool_config=_tool_config(tool_choice) if tools else None,
        )
        try:
            if not c.stream:
                response = self.client.models.generate_content(model=c.model, contents=contents, config=config)
                return self._collect([response], on_text)
            stream = self.client.models.generate_content_stream(model=c.model, contents=contents, config=config)
            return self._collect(stream, on_text)
        except (errors.APIError, httpx2.HTTPError) as exc:
            raise provider_error(self.name, exc) from None

    def _collect(self, responses: Any, on_text: Callable[[str], None] | None) -> Reply:
        text: list[str] = []
        calls: list[ToolCall] = []
        finish = ""
        usage: dict[str, int] = {}
        for response in responses:
            candidate = (response.candidates or [None])[0]
            parts = candidate.content.parts if candidate and candidate.content and candidate.content.parts else []
            for part in parts:
                if part.text and not part.thought:
                    text.append(part.text)
                    if on_text:
                        on_text(part.text)
                if part.function_call:
                    fc = part.function_call
                    call_id = fc.id or f"{fc.name}-{len(calls)}"
                    calls.append(ToolCall(call_id, fc.name or "", *parse_arguments(fc.args)))
            if candidate and candidate.finish_reason:
                finish = str(candidate.finish_reason.value if hasattr(candidate.finish_reason, "value")
                             else candidate.finish_reason)
            if response.usage_metadata:
                meta = response.usage_metadata
                usage = {"prompt_tokens": meta.prompt_token_count or 0,
                         "completion_tokens": meta.candidates_token_count or 0}
        return Reply("".join(text), calls, finish, usage)
