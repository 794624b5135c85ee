"""multiplex_chat with scripted providers (fast): routing, broadcast, shared replies, tools, errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from caramba import Runtime
from caramba_agents.chat import ProviderError, Reply, ToolCall
from caramba_agents.multiplex import MultiplexChat
from caramba_agents.specs import AgentSpec, MultiplexChatConfig, OpenAIChatConfig
from caramba_agents.testing import ScriptedProvider


def config(tmp_path, **kw) -> MultiplexChatConfig:
    local = AgentSpec(provider=OpenAIChatConfig(base_url="http://127.0.0.1:9/v1", api_key_env=""))
    (tmp_path / "project").mkdir(exist_ok=True)
    (tmp_path / "project" / "notes.md").write_text("loss fell to 2.1\n")
    return MultiplexChatConfig(type="multiplex_chat", agents={"alpha": local, "beta": local},
                               transcript_path=str(tmp_path / "chat.jsonl"), project_root=str(tmp_path / "project"),
                               **kw)


def lines(*typed: str):
    feed = list(typed)

    def read(prompt: str) -> str:
        if not feed:
            raise EOFError
        return feed.pop(0)

    return read


@pytest.fixture
def session():
    return SimpleNamespace(runtime=Runtime())


def test_routing_broadcast_and_agents_seeing_each_others_replies(tmp_path, session, capsys):
    alpha = ScriptedProvider(["alpha here", "alpha again"])
    beta = ScriptedProvider(["beta agrees"])
    out = MultiplexChat(config(tmp_path)).run(session, read=lines("@alpha hi", "what now?", "/exit"),
                                             providers={"alpha": alpha, "beta": beta})
    assert out["turns"] == 2
    assert len(alpha.seen) == 2 and len(beta.seen) == 1  # @alpha went to alpha only
    beta_view = [(m.role, m.content) for m in beta.seen[0][1:]]
    assert beta_view == [("user", "[you] hi"), ("user", "[alpha] alpha here"), ("user", "[you] what now?"),
                         ("user", "[alpha] alpha again")]
    alpha_view = [(m.role, m.content) for m in alpha.seen[1][1:]]
    assert alpha_view == [("user", "[you] hi"), ("assistant", "alpha here"), ("user", "[you] what now?")]
    saved = [json.loads(x) for x in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert [(m["role"], m.get("name")) for m in saved] == [("user", "you"), ("assistant", "alpha"),
                                                           ("user", "you"), ("assistant", "alpha"),
                                                           ("assistant", "beta")]


def test_the_transcript_is_reloaded_on_start(tmp_path, session):
    MultiplexChat(config(tmp_path)).run(session, read=lines("@beta remember 42"),
                                        providers={"alpha": ScriptedProvider(), "beta": ScriptedProvider(["ok"])})
    beta = ScriptedProvider(["it was 42"])
    MultiplexChat(config(tmp_path)).run(session, read=lines("@beta what number?"),
                                        providers={"alpha": ScriptedProvider(), "beta": beta})
    assert [m.content for m in beta.seen[0][1:]] == ["[you] remember 42", "ok", "[you] what number?"]


def test_a_tool_call_runs_and_its_result_goes_back_to_the_model(tmp_path, session, capsys):
    alpha = ScriptedProvider([Reply("", [ToolCall("c1", "read_file", {"path": "notes.md"})]), "it fell to 2.1"])
    MultiplexChat(config(tmp_path)).run(session, read=lines("@alpha read the notes"),
                                        providers={"alpha": alpha, "beta": ScriptedProvider()})
    second = alpha.seen[1]
    assert second[-1].role == "tool" and second[-1].content == "loss fell to 2.1\n"
    assert "alpha calls read_file(path='notes.md')" in capsys.readouterr().out


def test_tools_stay_inside_the_project_and_running_needs_a_yes(tmp_path, session):
    calls = [ToolCall("c1", "read_file", {"path": "../chat.jsonl"}),
             ToolCall("c2", "run_experiment", {"path": "notes.md"})]
    alpha = ScriptedProvider([Reply("", calls), "ok"])
    MultiplexChat(config(tmp_path)).run(session, read=lines("@alpha go", "n"),
                                        providers={"alpha": alpha, "beta": ScriptedProvider()})
    results = [m.content for m in alpha.seen[1] if m.role == "tool"]
    assert results[0].startswith("error: '../chat.jsonl' is outside the project folder")
    assert results[1] == "the user declined to run it"


def test_a_malformed_tool_call_is_one_line_and_the_model_is_told(tmp_path, session, capsys):
    bad = ToolCall("c1", "read_file", None, "arguments are not valid JSON (Expecting value at char 9)")
    alpha = ScriptedProvider([Reply("", [bad]), "sorry"])
    MultiplexChat(config(tmp_path)).run(session, read=lines("@alpha read"),
                                        providers={"alpha": alpha, "beta": ScriptedProvider()})
    assert "alpha sent a malformed call of 'read_file'" in capsys.readouterr().out
    assert alpha.seen[1][-1].content.startswith("error: your call was malformed")


def test_a_provider_error_is_one_line_and_the_transcript_keeps_only_whole_turns(tmp_path, session, capsys):
    def fail(messages, tools):
        raise ProviderError("alpha: rate limited (HTTP 429) after the retries ran out: slow down")

    before = '{"role": "user", "content": "earlier", "name": "you"}\n'
    (tmp_path / "chat.jsonl").write_text(before)
    MultiplexChat(config(tmp_path)).run(session, read=lines("@alpha hi", "@beta hi"),
                                        providers={"alpha": ScriptedProvider(answer=fail),
                                                   "beta": ScriptedProvider(["fine"])})
    out = capsys.readouterr().out
    assert "error: alpha: rate limited (HTTP 429)" in out and "Traceback" not in out
    saved = (tmp_path / "chat.jsonl").read_text().splitlines()
    assert saved[0] + "\n" == before
    assert [json.loads(x).get("name") for x in saved] == ["you", "you", "you", "beta"]


def test_agents_without_their_key_sit_out(tmp_path, session, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    cfg = config(tmp_path)
    cfg.agents["beta"] = AgentSpec(provider=OpenAIChatConfig(api_key_env="NO_SUCH_KEY_FOR_TEST"))
    out = MultiplexChat(cfg).run(session, read=lines("/agents", "/help", "@beta hi", "/exit"))
    text = capsys.readouterr().out
    assert out["agents"] == ["alpha"]
    assert "beta sits this one out: NO_SUCH_KEY_FOR_TEST not set" in text and "no agent named 'beta'" in text


def test_others_see_which_tools_an_agent_called_but_not_the_results(tmp_path, session):
    alpha = ScriptedProvider([Reply("", [ToolCall("c1", "read_file", {"path": "notes.md"})]), "done"])
    beta = ScriptedProvider(["noted"])
    MultiplexChat(config(tmp_path)).run(session, read=lines("go"), providers={"alpha": alpha, "beta": beta})
    assert [m.content for m in beta.seen[0][1:]] == ["[you] go", "[alpha] (called read_file)", "[alpha] done"]
