"""Providers against recorded wire-format exchanges of the real APIs (no network, no real key).

Each exchange under ``wire/`` is the HTTP body the provider's API sends (its documented
format: Anthropic's server-sent events, Gemini's ``alt=sse`` stream, OpenAI's chunks); the
client library reads it through its own transport hook, so request shape, stream parsing,
tool calls and error handling are the real code paths.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from caramba_agents.chat import Message, ProviderError, Tool, ToolCall
from caramba_agents.providers.anthropic_messages import AnthropicMessages
from caramba_agents.providers.gemini import Gemini
from caramba_agents.providers.openai_chat import OpenAIChat
from caramba_agents.specs import AnthropicConfig, GeminiConfig, OpenAIChatConfig
from caramba_agents.testing import Recorder, json_response, sse_response

WIRE = Path(__file__).parent / "wire"
KEY = "sk-test-not-a-real-key"
READ_FILE = Tool("read_file", "Read a project file", {"type": "object", "properties": {"path": {"type": "string"}},
                                                      "required": ["path"]})
HISTORY = [
    Message("system", "You are a careful ML researcher."),
    Message("user", "What does the README say?"),
    Message("assistant", "", name="claude", tool_calls=[ToolCall("toolu_1", "read_file", {"path": "README.md"})]),
    Message("tool", "# caramba", name="read_file", tool_call_id="toolu_1"),
    Message("user", "And the loss?"),
]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for env in ("ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(env, KEY)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)


def sse(name: str) -> object:
    return sse_response(WIRE / name)


def recorded_json(name: str, status: int = 200, headers: dict[str, str] | None = None) -> object:
    return json_response(WIRE / name, status, headers)


# --- Anthropic ---------------------------------------------------------------------------------

def test_anthropic_request_shape_system_tools_and_tool_results():
    rec = Recorder(recorded_json("anthropic_message.json"))
    provider = AnthropicMessages(AnthropicConfig(model="claude-sonnet-5-5", stream=False, max_tokens=256),
                                 http_client=rec.client())
    reply = provider.chat(HISTORY, [READ_FILE])
    request = rec.requests[0]
    assert request.url.path == "/v1/messages" and request.headers["authorization"] == f"Bearer {KEY}"
    assert "anthropic-version" in request.headers
    body = rec.body()
    assert body["system"] == "You are a careful ML researcher." and body["max_tokens"] == 256
    assert body["tools"] == [{"name": "read_file", "description": "Read a project file",
                              "input_schema": READ_FILE.parameters}]
    # roles alternate: the tool result and the next question share one user turn
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "read_file",
                                               "input": {"path": "README.md"}}]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "# caramba"},
        {"type": "text", "text": "And the loss?"}]
    assert reply.text == "The loss fell from 5.5 to 2.1." and reply.finish_reason == "end_turn"
    assert reply.usage == {"prompt_tokens": 2095, "completion_tokens": 503}


def test_anthropic_stream_delivers_text_deltas_and_assembles_a_tool_call():
    rec = Recorder(sse("anthropic_stream_tool_use.sse"))
    provider = AnthropicMessages(AnthropicConfig(), http_client=rec.client())
    pieces: list[str] = []
    reply = provider.chat(HISTORY, [READ_FILE], on_text=pieces.append)
    assert rec.body()["stream"] is True
    assert pieces == ["Let me read", " the README."]
    assert reply.text == "Let me read the README."
    assert reply.tool_calls == [ToolCall("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "read_file", {"path": "README.md"})]
    assert reply.finish_reason == "tool_use" and reply.usage == {"prompt_tokens": 472, "completion_tokens": 89}


def test_anthropic_rate_limit_is_retried_then_reported_in_one_line():
    limited = recorded_json("anthropic_rate_limit.json", 429, {"retry-after-ms": "1"})
    rec = Recorder(limited, recorded_json("anthropic_rate_limit.json", 429, {"retry-after-ms": "1"}))
    provider = AnthropicMessages(AnthropicConfig(stream=False, max_retries=1), http_client=rec.client())
    with pytest.raises(ProviderError) as info:
        provider.chat(HISTORY)
    assert len(rec.requests) == 2  # one retry, then the error
    assert str(info.value).startswith("anthropic: rate limited (HTTP 429)")
    assert "per-minute rate limit" in str(info.value) and "\n" not in str(info.value)
    assert KEY not in str(info.value)


def test_anthropic_retry_succeeds_after_one_rate_limit():
    rec = Recorder(recorded_json("anthropic_rate_limit.json", 429, {"retry-after-ms": "1"}),
                   recorded_json("anthropic_message.json"))
    provider = AnthropicMessages(AnthropicConfig(stream=False, max_retries=2), http_client=rec.client())
    assert provider.chat(HISTORY).text == "The loss fell from 5.5 to 2.1."
    assert len(rec.requests) == 2


def test_anthropic_error_event_mid_stream_is_a_provider_error():
    rec = Recorder(sse("anthropic_stream_overloaded.sse"))
    provider = AnthropicMessages(AnthropicConfig(), http_client=rec.client())
    seen: list[str] = []
    with pytest.raises(ProviderError, match="Overloaded"):
        provider.chat(HISTORY, on_text=seen.append)
    assert seen == ["Half a"]


# --- Gemini ------------------------------------------------------------------------------------

def test_gemini_stream_request_shape_and_text():
    rec = Recorder(sse("gemini_stream_text.sse"))
    provider = Gemini(GeminiConfig(model="gemini-2.5-pro", max_tokens=128), http_client=rec.client())
    pieces: list[str] = []
    reply = provider.chat(HISTORY, [READ_FILE], on_text=pieces.append)
    request = rec.requests[0]
    assert request.url.path.endswith("/models/gemini-2.5-pro:streamGenerateContent")
    assert request.url.params["alt"] == "sse" and request.headers["x-goog-api-key"] == KEY
    body = rec.body()
    assert body["systemInstruction"]["parts"] == [{"text": "You are a careful ML researcher."}]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "read_file", "args": {"path": "README.md"}}}]
    assert body["contents"][2]["parts"][0] == {"functionResponse": {"name": "read_file",
                                                                    "response": {"result": "# caramba"}}}
    assert body["generationConfig"]["maxOutputTokens"] == 128
    declaration = body["tools"][0]["functionDeclarations"][0]
    # the client sends the field in proto field-name form; proto3 JSON accepts it beside camelCase
    assert declaration["name"] == "read_file" and declaration["parameters_json_schema"] == READ_FILE.parameters
    assert pieces == ["The loss", " fell to 2.1."] and reply.text == "The loss fell to 2.1."
    assert reply.finish_reason == "STOP" and reply.usage == {"prompt_tokens": 31, "completion_tokens": 7}


def test_gemini_function_call():
    rec = Recorder(recorded_json("gemini_function_call.json"))
    reply = Gemini(GeminiConfig(stream=False), http_client=rec.client()).chat(HISTORY, [READ_FILE])
    assert rec.requests[0].url.path.endswith(":generateContent")
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("read_file", {"path": "README.md"})]


def test_gemini_malformed_function_call_is_reported_not_crashed():
    rec = Recorder(recorded_json("gemini_malformed_call.json"))
    reply = Gemini(GeminiConfig(stream=False), http_client=rec.client()).chat(HISTORY, [READ_FILE])
    assert reply.text == "" and reply.tool_calls == [] and reply.finish_reason == "MALFORMED_FUNCTION_CALL"


@pytest.mark.parametrize(("name", "status", "start"), [
    ("gemini_rate_limit.json", 429, "gemini: rate limited (HTTP 429)"),
    ("gemini_bad_key.json", 400, "gemini: HTTP 400: API key not valid"),
])
def test_gemini_errors_are_one_line(name, status, start):
    rec = Recorder(*[recorded_json(name, status) for _ in range(3)])
    with pytest.raises(ProviderError) as info:
        Gemini(GeminiConfig(stream=False, max_retries=0), http_client=rec.client()).chat(HISTORY)
    assert str(info.value).startswith(start) and "\n" not in str(info.value) and KEY not in str(info.value)


# --- OpenAI (and every server speaking its format) --------------------------------------------

def test_openai_stream_assembles_a_tool_call_from_pieces():
    rec = Recorder(sse("openai_stream_tool_call.sse"))
    provider = OpenAIChat(OpenAIChatConfig(model="gpt-4.1"), http_client=rec.client())
    reply = provider.chat(HISTORY, [READ_FILE])
    body = rec.body()
    assert rec.requests[0].url.path == "/v1/chat/completions"
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert body["stream"] is True and body["max_completion_tokens"] == 1024
    assert body["messages"][0] == {"role": "system", "content": "You are a careful ML researcher."}
    assert body["messages"][2]["tool_calls"][0]["function"] == {"name": "read_file",
                                                                "arguments": '{"path": "README.md"}'}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "# caramba"}
    assert body["tools"][0] == {"type": "function", "function": {"name": "read_file",
                                                                 "description": "Read a project file",
                                                                 "parameters": READ_FILE.parameters}}
    assert reply.tool_calls == [ToolCall("call_Dk2x", "read_file", {"path": "README.md"})]
    assert reply.finish_reason == "tool_calls"


def test_openai_malformed_tool_arguments_become_a_call_with_an_error():
    rec = Recorder(recorded_json("openai_completion_bad_arguments.json"))
    reply = OpenAIChat(OpenAIChatConfig(stream=False), http_client=rec.client()).chat(HISTORY, [READ_FILE])
    [call] = reply.tool_calls
    assert call.arguments is None and call.error.startswith("arguments are not valid JSON")


@pytest.mark.parametrize("provider", [OpenAIChat, AnthropicMessages, Gemini])
def test_a_missing_key_is_one_line_naming_the_variable(monkeypatch, provider):
    for env in ("ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(env)
    with pytest.raises(ProviderError) as info:
        provider()
    assert "environment variable" in str(info.value) and "is not set" in str(info.value)


def test_a_local_server_needs_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    OpenAIChat(OpenAIChatConfig(base_url="http://127.0.0.1:9/v1", api_key_env=""))


def test_a_demanded_tool_is_written_in_each_apis_own_form():
    rec = Recorder(recorded_json("openai_completion_bad_arguments.json"), recorded_json("anthropic_message.json"),
                   recorded_json("gemini_function_call.json"))
    client = rec.client()
    OpenAIChat(OpenAIChatConfig(stream=False), http_client=client).chat(HISTORY, [READ_FILE], tool_choice="read_file")
    AnthropicMessages(AnthropicConfig(stream=False), http_client=client).chat(HISTORY, [READ_FILE],
                                                                              tool_choice="read_file")
    Gemini(GeminiConfig(stream=False), http_client=client).chat(HISTORY, [READ_FILE], tool_choice="read_file")
    assert rec.body(0)["tool_choice"] == {"type": "function", "function": {"name": "read_file"}}
    assert rec.body(1)["tool_choice"] == {"type": "tool", "name": "read_file"}
    config = rec.body(2)["toolConfig"]["functionCallingConfig"]
    assert config["mode"] == "ANY" and config["allowedFunctionNames"] == ["read_file"]


def test_a_server_that_dies_mid_stream_is_one_line_after_the_text_so_far():
    first = (WIRE / "openai_stream_tool_call.sse").read_bytes().split(b"\n\n")[0] + b"\n\n"
    text_chunk = (b'data: {"id":"chatcmpl-C3","object":"chat.completion.chunk","created":1764460002,"model":"m",'
                  b'"choices":[{"index":0,"delta":{"content":"The loss"},"finish_reason":null}]}\n\n')

    def dying():
        yield text_chunk
        yield first
        raise httpx2.RemoteProtocolError("peer closed connection without sending complete message body")

    rec = Recorder(httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=dying()))
    seen: list[str] = []
    with pytest.raises(ProviderError) as info:
        OpenAIChat(OpenAIChatConfig(max_retries=0), http_client=rec.client()).chat(HISTORY, on_text=seen.append)
    assert seen == ["The loss"]
    assert "peer closed connection" in str(info.value) and "\n" not in str(info.value)
