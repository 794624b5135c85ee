"""``multiplex_chat``: the user and several agents in one terminal conversation.

``@name message`` goes to one agent; a message without a tag goes to every agent in turn, in
the manifest's order, and each sees the replies before its own: that is how agents talk to
each other. Every message is in one JSONL transcript, reloaded on start. Agents use the
project tools (:mod:`caramba_agents.tools`); ``run_experiment`` asks the user first.
A provider error or a malformed tool call is one line on screen; the chat goes on and the
transcript keeps only complete turns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from caramba_agents.chat import Message, Provider, ProviderError, Reply
from caramba_agents.providers import create_provider
from caramba_agents.specs import AgentSpec, MultiplexChatConfig
from caramba_agents.tools import ProjectTools
from caramba_agents.transcript import Transcript

__all__ = ["MultiplexChat"]

HELP = """@NAME message   talk to one agent
message         talk to every agent in turn (each sees the others' replies)
/agents         list the agents
/help           this help
/exit           leave (also /quit, /q, /bye); the transcript stays on disk"""
EXIT = ("/exit", "/quit", "/q", "/bye")


class MultiplexChat:
    def __init__(self, config: MultiplexChatConfig) -> None:
        self.config = config

    def run(self, session: Any, *, read: Callable[[str], str] | None = None,
            providers: dict[str, Provider] | None = None) -> dict[str, Any]:
        from rich.console import Console

        console = Console(highlight=False)
        read = read or console.input
        agents = providers if providers is not None else self._connect(session.runtime, console)
        if not agents:
            console.print("[red]no agent can join[/]: set a provider key, or start a local server (caramba serve)")
            return {"turns": 0, "agents": []}
        transcript = Transcript(self.config.transcript_path)
        for warning in transcript.warnings:
            console.print(f"[yellow]warning[/]: {warning}")
        tools = ProjectTools(self.config.project_root, session.runtime,
                             confirm=lambda what: _confirm(read, console, what))
        console.print(f"[bold]agents[/]: {', '.join(agents)}   (/help for help; transcript {transcript.path}, "
                      f"{len(transcript.messages)} earlier messages)")
        turns = 0
        while True:
            try:
                line = read(f"{self.config.user_name}> ").strip()
            except EOFError:
                break
            if not line:
                continue
            if line in EXIT:
                break
            if line == "/help":
                console.print(HELP, markup=False)
                continue
            if line == "/agents":
                console.print(", ".join(agents))
                continue
            targets, text = _route(line, list(agents))
            if targets is None:
                console.print(f"[red]no agent named {text}[/]; the agents are {', '.join(agents)}")
                continue
            transcript.append(Message("user", text, name=self.config.user_name))
            turns += 1
            for name in targets:
                self._turn(name, agents[name], transcript, tools, console)
        console.print("bye")
        return {"turns": turns, "agents": list(agents), "transcript": str(transcript.path)}

    # -- one agent's turn ---------------------------------------------------------------------------
    def _turn(self, name: str, provider: Provider, transcript: Transcript, tools: ProjectTools,
              console: Any) -> None:
        pending: list[Message] = []  # written to the transcript only when the turn completes
        offered = tools.declarations if self.config.tools else []
        choice = self.config.agents[name].tool_choice if name in self.config.agents else "auto"
        for _ in range(self.config.max_tool_rounds):
            console.print(f"[bold cyan]{name}[/]: ", end="")
            try:
                reply: Reply = provider.chat(self._context(name, transcript, pending), offered,
                                             on_text=lambda piece: console.print(piece, end="", markup=False),
                                             tool_choice=choice if offered else "auto")
            except ProviderError as exc:
                console.print()
                console.print(f"[red]error[/]: {exc}", markup=True, highlight=False)
                return
            console.print()
            choice = "auto"
            pending.append(Message("assistant", reply.text, name=name, tool_calls=reply.tool_calls))
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                if call.arguments is None:
                    console.print(f"[yellow]{name} sent a malformed call of '{call.name}'[/]: {call.error}",
                                  markup=True)
                    result = f"error: your call was malformed ({call.error}); send valid JSON arguments"
                else:
                    console.print(f"[dim]{name} calls {call.name}({_short(call.arguments)})[/]")
                    result = tools.call(call.name, call.arguments)
                pending.append(Message("tool", result, name=name, tool_call_id=call.id))
        for message in pending:
            transcript.append(message)

    def _context(self, name: str, transcript: Transcript, pending: list[Message]) -> list[Message]:
        """What agent ``name`` reads: its instructions, then the recent conversation from its seat.

        Others' replies come as user turns tagged ``[name]`` (with the names of the tools they
        called); tool arguments and results stay private to the agent that made the call.
        """
        others = [a for a in self.config.agents if a != name]
        system = (f"You are {name}, one of several AI collaborators in a research chat with "
                  f"{self.config.user_name} and {', '.join(others) or 'no one else'}. Messages from others are "
                  f"tagged [name]. Answer briefly. {self.config.agents[name].instructions}").strip()
        out = [Message("system", system)]
        recent = [*transcript.messages, *pending][-self.config.max_context_items:]
        for m in recent:
            if m.role == "user":
                out.append(Message("user", f"[{m.name or self.config.user_name}] {m.content}"))
            elif m.role == "assistant" and m.name == name:
                out.append(Message("assistant", m.content, tool_calls=m.tool_calls))
            elif m.role == "assistant" and (m.content or m.tool_calls):
                said = " ".join([m.content, *(f"(called {c.name})" for c in m.tool_calls)]).strip()
                out.append(Message("user", f"[{m.name}] {said}"))
            elif m.role == "tool" and m.name == name:
                out.append(m)
        return _drop_orphans(out)

    def _connect(self, runtime: Any, console: Any) -> dict[str, Provider]:
        agents: dict[str, Provider] = {}
        for name, spec in self.config.agents.items():
            missing = [env for env in _needs(spec) if not os.environ.get(env)]
            if missing:
                console.print(f"[dim]{name} sits this one out: {', '.join(missing)} not set[/]")
                continue
            try:
                agents[name] = create_provider(runtime, spec.provider)
            except ProviderError as exc:
                console.print(f"[red]error[/]: {exc}")
        return agents


def _needs(spec: AgentSpec) -> list[str]:
    return [*spec.requires_env, *([spec.provider.api_key_env] if spec.provider.api_key_env else [])]


def _route(line: str, names: list[str]) -> tuple[list[str] | None, str]:
    if not line.startswith("@"):
        return names, line
    tag, _, rest = line[1:].partition(" ")
    if tag not in names:
        return None, f"'{tag}'"
    return [tag], rest.strip()


def _drop_orphans(messages: list[Message]) -> list[Message]:
    """Tool results whose call was cut off by the context window would confuse every API: drop them."""
    calls = {c.id for m in messages for c in m.tool_calls}
    return [m for m in messages if m.role != "tool" or m.tool_call_id in calls]


def _confirm(read: Callable[[str], str], console: Any, what: str) -> bool:
    console.print(f"[bold yellow]an agent wants to run[/] {what}")
    try:
        return read("run it? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _short(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    return text if len(text) < 80 else text[:77] + "..."
