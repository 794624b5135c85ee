"""Chat templates: a checkpoint's own Jinja template, rendered in a sandbox, plus tool calls.

Tools are offered the way ChatML models trained for them expect (Hermes / Qwen style): their
JSON schemas in the system turn, and calls written back as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, which :func:`split_tool_calls`
parses out of the model's text.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["CHATML", "ChatTemplate", "split_tool_calls"]

#: Used when a checkpoint carries no template of its own.
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


class ChatTemplate:
    def __init__(self, source: str | None) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        self.template = env.from_string(source or CHATML)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for OpenAI-format ``messages`` (and ``tools``), ending where the assistant speaks."""
        turns = [_flatten(m) for m in messages]
        if tools:
            offer = ("You may call these tools. To call one, answer with only "
                     '<tool_call>{"name": <tool name>, "arguments": <JSON object>}</tool_call>.\n<tools>\n'
                     + "\n".join(json.dumps(t.get("function", t)) for t in tools) + "\n</tools>")
            if turns and turns[0]["role"] == "system":
                turns[0] = {"role": "system", "content": turns[0]["content"] + "\n\n" + offer}
            else:
                turns.insert(0, {"role": "system", "content": offer})
        return str(self.template.render(messages=turns, add_generation_prompt=True))


def _flatten(message: dict[str, Any]) -> dict[str, str]:
    """One ``{role, content}`` turn: tool calls and tool results written as the model reads them."""
    role = message.get("role", "user")
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {})
        args = fn.get("arguments", "{}")
        with contextlib.suppress(json.JSONDecodeError):  # malformed arguments are shown as written
            args = json.loads(args) if isinstance(args, str) else args
        content += "<tool_call>" + json.dumps({"name": fn.get("name", ""), "arguments": args}) + "</tool_call>"
    return {"role": role if role in ("system", "user", "assistant") else "user", "content": content}


def split_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """``(text before the first call, [{"name", "arguments" (a JSON string)}])``.

    A call whose body is not ``{"name": ..., "arguments": ...}`` JSON is returned with its raw
    text as ``arguments`` so the client sees (and can report) what the model wrote.
    """
    calls: list[dict[str, Any]] = []
    for body in _TOOL_CALL.findall(text):
        try:
            data = json.loads(body)
            calls.append({"name": str(data["name"]), "arguments": json.dumps(data.get("arguments", {}))})
        except (json.JSONDecodeError, KeyError, TypeError):
            name = re.search(r'"name"\s*:\s*"([^"]*)"', body)
            calls.append({"name": name.group(1) if name else "", "arguments": body})
    head = text.split("<tool_call>", 1)[0].rstrip() if calls else text
    return head, calls


def _raise(message: str) -> None:
    raise ValueError(message)
