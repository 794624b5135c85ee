"""The OpenAI-compatible ASGI app: ``GET /v1/models``, ``POST /v1/chat/completions`` (streaming too).

Bounded: a request body over ``max_body_bytes`` is refused (413) before it is parsed, and at most
``max_waiting`` requests wait for the model (one decodes at a time) before new ones get 429.
Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from caramba import CarambaError
from caramba_agents.serve.model import ChatModel, Completion
from caramba_agents.serve.template import split_tool_calls

__all__ = ["create_app"]


class _BadRequest(Exception):
    def __init__(self, message: str, param: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str = "") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param or None, "code": None}},
                        status_code=status)


def create_app(model: ChatModel, *, max_body_bytes: int = 1 << 20, max_waiting: int = 8,
               default_max_tokens: int = 256, request_log: str | Path | None = None) -> Starlette:
    """The app; ``request_log`` (a JSONL path) records each conversation the model saw and its reply."""
    log = Path(request_log) if request_log else None
    admitted = threading.BoundedSemaphore(max_waiting + 1)  # the one decoding plus those waiting

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": model.name, "object": "model", "created": 0, "owned_by": "caramba"}]})

    async def chat(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _error(413, f"request body of {declared} bytes is over this server's {max_body_bytes}")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                return _error(413, f"request body is over this server's {max_body_bytes} bytes")
        try:
            params = _parse(raw, model, default_max_tokens)
        except _BadRequest as exc:
            return _error(exc.status, exc.message, param=exc.param)
        params["log"] = log
        if not admitted.acquire(blocking=False):
            return _error(429, f"server busy: {max_waiting} requests are already waiting", "rate_limit_error")
        try:
            prompt = model.prompt_ids(params["messages"], params["tools"])
        except Exception as exc:  # noqa: BLE001 - a template that rejects the conversation is the client's error
            admitted.release()
            return _error(400, f"the chat template rejected the messages: {exc}", param="messages")
        if params["stream"]:
            return StreamingResponse(_released(_sse(model, prompt, params), admitted),
                                     media_type="text/event-stream")
        try:
            body = await run_in_threadpool(_complete, model, prompt, params)
        except CarambaError as exc:
            return _error(400, str(exc))
        finally:
            admitted.release()
        return JSONResponse(body)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": model.name})

    return Starlette(routes=[
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ])


def _parse(raw: bytes, model: ChatModel, default_max_tokens: int) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("messages must be a non-empty list of {role, content} objects", "messages")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p")
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise _BadRequest("max_tokens must be a positive integer", "max_tokens")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise _BadRequest("temperature must be a number in [0, 2]", "temperature")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise _BadRequest("top_p must be in (0, 1]", "top_p")
    tools = body.get("tools") or None
    choice = body.get("tool_choice", "auto")
    if choice == "none":
        tools = None
    return {"messages": messages, "tools": tools, "call_head": _call_head(choice, tools),
            "stream": bool(body.get("stream")), "max_tokens": max_tokens,
            "temperature": float(temperature), "top_p": top_p, "seed": body.get("seed"),
            "include_usage": bool((body.get("stream_options") or {}).get("include_usage"))}


def _call_head(choice: Any, tools: list[dict[str, Any]] | None) -> str | None:
    """Where a demanded tool call starts: the call's JSON up to what the model must write itself."""
    names = [t.get("function", t).get("name", "") for t in tools or []]
    if choice in ("auto", None) or not tools:
        return None
    if choice == "required":
        return f'{{"name": "{names[0]}", "arguments": ' if len(names) == 1 else '{"name": "'
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if name not in names:
        raise _BadRequest(f"tool_choice names '{name}', which is not among the tools offered: {names}",
                          "tool_choice")
    return json.dumps({"name": name})[:-1] + ', "arguments": '


def _generate(model: ChatModel, prompt: list[int], params: dict[str, Any], result: list[Completion]) -> Iterator[str]:
    head = params["call_head"]
    if head is None:
        yield from model.stream(prompt, max_tokens=params["max_tokens"], temperature=params["temperature"],
                                top_p=params["top_p"], seed=params["seed"], result=result)
    else:
        yield from _forced_call(model, prompt, head, params, result)
    if params.get("log") is not None:
        with params["log"].open("a", encoding="utf-8") as f:
            f.write(json.dumps({"messages": params["messages"], "reply": result[0].text}, ensure_ascii=False) + "\n")


def _forced_call(model: ChatModel, prompt: list[int], head: str, params: dict[str, Any],
                 result: list[Completion]) -> Iterator[str]:
    """A tool call the request demands (``tool_choice``): the model continues ``<tool_call>`` + ``head``
    and stops as soon as the call's JSON object is complete."""
    ids = prompt + model.encode("<tool_call>\n" + head)
    body, inner = head, []
    decoder = json.JSONDecoder()
    finish = "length"
    for piece in model.stream(ids, max_tokens=params["max_tokens"], temperature=params["temperature"],
                              top_p=params["top_p"], seed=params["seed"], result=inner):
        body += piece
        try:
            value, end = decoder.raw_decode(body)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            body, finish = body[:end], "stop"
            break
    text = f"<tool_call>{body}</tool_call>"
    completion_tokens = len(model.encode(body)) - len(model.encode(head))
    result.append(Completion(text, len(ids), max(completion_tokens, 0), finish))
    yield text


def _message(text: str, tools: Any) -> tuple[dict[str, Any], str | None]:
    """The assistant message for ``text``; tool calls parsed out when tools were offered."""
    if not tools:
        return {"role": "assistant", "content": text}, None
    head, calls = split_tool_calls(text)
    if not calls:
        return {"role": "assistant", "content": text}, None
    return {"role": "assistant", "content": head or None, "tool_calls": [
        {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": call} for call in calls]}, "tool_calls"


def _complete(model: ChatModel, prompt: list[int], params: dict[str, Any]) -> dict[str, Any]:
    result: list[Completion] = []
    for _ in _generate(model, prompt, params, result):
        pass
    done = result[0]
    message, finish = _message(done.text, params["tools"])
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model.name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish or done.finish_reason}],
            "usage": _usage(done)}


def _usage(done: Completion) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _sse(model: ChatModel, prompt: list[int], params: dict[str, Any]) -> Iterator[str]:
    """Chunks as OpenAI sends them. With tools offered, text is held until it is known not to be a call."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> str:
        body: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                                "model": model.name,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            body["choices"], body["usage"] = [], usage
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    result: list[Completion] = []
    try:
        for piece in _generate(model, prompt, params, result):
            if not params["tools"]:
                yield chunk({"content": piece})
    except CarambaError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
        return
    done = result[0]
    finish = done.finish_reason
    if params["tools"]:
        message, calls_finish = _message(done.text, params["tools"])
        if message.get("content"):
            yield chunk({"content": message["content"]})
        for i, call in enumerate(message.get("tool_calls", [])):
            yield chunk({"tool_calls": [{"index": i, **call}]})
        finish = calls_finish or finish
    yield chunk({}, finish)
    if params["include_usage"]:
        yield chunk({}, usage=_usage(done))
    yield "data: [DONE]\n\n"


def _released(stream: Iterator[str], admitted: threading.BoundedSemaphore) -> Iterator[str]:
    try:
        yield from stream
    finally:
        admitted.release()
