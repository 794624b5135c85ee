"""``caramba serve``'s HTTP API on a tiny random Llama (fast): OpenAI's wire format, limits, errors.

The reference for every reply is a greedy loop written here over the model's full-sequence
logits (no caches), so the server's cached generation path is checked, not just run.
"""

from __future__ import annotations

import json

import pytest
import torch
from starlette.testclient import TestClient
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from caramba_agents.serve.app import create_app
from caramba_agents.serve.model import ChatModel
from caramba_agents.serve.template import ChatTemplate, split_tool_calls
from caramba_infer import lm_logits
from caramba_layers.hf import build_from_hf_config

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def chat_model() -> ChatModel:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["the loss fell from five to two while the model read the files of the project"] * 20
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
          "vocab_size": tok.get_vocab_size(), "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu"}
    model = build_from_hf_config(hf)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return ChatModel(model, tok, None, name="tiny", max_len=1024)


@pytest.fixture
def client(chat_model: ChatModel) -> TestClient:
    return TestClient(create_app(chat_model, max_body_bytes=4096, max_waiting=2))


def greedy_reference(chat_model: ChatModel, messages: list[dict], n: int) -> str:
    ids = chat_model.prompt_ids(messages)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(lm_logits(chat_model.model, torch.tensor([ids + out]))[0, -1].argmax())
            if nxt in chat_model.stop_ids:
                break
            out.append(nxt)
    return chat_model.tokenizer.decode(out, skip_special_tokens=False)


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the loss"}]


def test_models_lists_the_served_model(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["tiny"]


def test_completion_equals_an_uncached_greedy_loop(client, chat_model):
    response = client.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES, "max_tokens": 12,
                                                          "temperature": 0})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": greedy_reference(chat_model, MESSAGES, 12)}
    assert body["usage"]["prompt_tokens"] == len(chat_model.prompt_ids(MESSAGES))
    assert choice["finish_reason"] in ("stop", "length")


def test_stream_is_openai_chunks_that_add_up_to_the_same_reply(client, chat_model):
    with client.stream("POST", "/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 12,
                                                              "temperature": 0, "stream": True,
                                                              "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == greedy_reference(chat_model, MESSAGES, 12)
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "the body is not JSON"),
    (json.dumps({"messages": []}).encode(), 400, "messages must be a non-empty list"),
    (json.dumps({"messages": MESSAGES, "max_tokens": -1}).encode(), 400, "max_tokens must be a positive integer"),
    (json.dumps({"messages": MESSAGES, "temperature": 9}).encode(), 400, "temperature must be a number in [0, 2]"),
    (json.dumps({"messages": MESSAGES * 200}).encode(), 413, "over this server's 4096"),
])
def test_bad_requests_get_openai_error_bodies(client, body, status, message):
    response = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_a_full_queue_answers_429(chat_model):
    app = create_app(chat_model, max_waiting=0)
    with TestClient(app) as c, chat_model.lock:  # the model is busy: the one admitted slot is used below
        first = c.stream("POST", "/v1/chat/completions", json={"messages": MESSAGES, "stream": True,
                                                                "max_tokens": 2})
        response = first.__enter__()
        try:
            second = c.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 2})
            assert second.status_code == 429 and "server busy" in second.json()["error"]["message"]
        finally:
            response.close()


def test_tool_calls_are_offered_in_the_system_turn_and_parsed_from_the_reply():
    template = ChatTemplate(None)
    tools = [{"type": "function", "function": {"name": "list_files", "parameters": {"type": "object"}}}]
    prompt = template.render([{"role": "user", "content": "files?"}], tools)
    assert prompt.startswith("<|im_start|>system\nYou may call these tools.") and '"name": "list_files"' in prompt
    assert prompt.endswith("<|im_start|>user\nfiles?<|im_end|>\n<|im_start|>assistant\n")
    head, calls = split_tool_calls('Sure. <tool_call>{"name": "list_files", "arguments": {"folder": "docs"}}'
                                   '</tool_call>')
    assert head == "Sure." and calls == [{"name": "list_files", "arguments": '{"folder": "docs"}'}]
    _, [bad] = split_tool_calls('<tool_call>{"name": "read_file", "arguments": {"path": </tool_call>')
    assert bad["name"] == "read_file" and bad["arguments"] == '{"name": "read_file", "arguments": {"path":'


def test_the_request_log_records_what_the_model_saw_and_said(chat_model, tmp_path):
    log = tmp_path / "requests.jsonl"
    c = TestClient(create_app(chat_model, request_log=log))
    reply = c.post("/v1/chat/completions", json={"messages": MESSAGES, "max_tokens": 3, "temperature": 0}).json()
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry == {"messages": MESSAGES, "reply": reply["choices"][0]["message"]["content"]}


def test_a_demanded_tool_call_is_written_by_the_model_after_the_calls_head(client, chat_model):
    tools = [{"type": "function", "function": {"name": "list_files", "parameters": {"type": "object"}}}]
    body = {"messages": MESSAGES, "tools": tools, "max_tokens": 8, "temperature": 0,
            "tool_choice": {"type": "function", "function": {"name": "list_files"}}}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "list_files"
    # the arguments are the model's own greedy continuation of the call's head
    head = '{"name": "list_files", "arguments": '
    ids = chat_model.prompt_ids(MESSAGES, tools) + chat_model.encode("<tool_call>\n" + head)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(8):
            out.append(int(lm_logits(chat_model.model, torch.tensor([ids + out]))[0, -1].argmax()))
    written = head + chat_model.tokenizer.decode(out, skip_special_tokens=False)
    try:  # the server stops where the call's JSON object is complete
        _, end = json.JSONDecoder().raw_decode(written)
        written = written[:end]
    except json.JSONDecodeError:
        pass  # never completed: the raw text is passed on for the client to report
    assert [call["function"]] == split_tool_calls(f"<tool_call>{written}</tool_call>")[1]
    bad = client.post("/v1/chat/completions", json={**body, "tool_choice": {"type": "function",
                                                                            "function": {"name": "rm"}}})
    assert bad.status_code == 400 and "not among the tools offered" in bad.json()["error"]["message"]
