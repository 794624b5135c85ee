"""The caramba-agents plugin: chat providers, agent processes and ``caramba serve``.

Torch-free and client-free: only config structs are imported here; each component's module
(and its client library) loads on first use.
"""

from __future__ import annotations

from typing import Any

from caramba import hookimpl
from caramba_agents.specs import (
    AnthropicConfig,
    GeminiConfig,
    MultiplexChatConfig,
    OpenAIChatConfig,
    PaperReviewConfig,
    PaperWriteConfig,
    ResearchLoopConfig,
)

_P = "caramba_agents"


@hookimpl
def caramba_register_providers(registry: Any) -> None:
    registry.add("openai", config=OpenAIChatConfig, factory=f"{_P}.providers.openai_chat:OpenAIChat",
                 aliases=("openai_compatible",),
                 summary="OpenAI Chat Completions, or any server that speaks it (vLLM, llama.cpp, caramba serve)")
    registry.add("anthropic", config=AnthropicConfig, factory=f"{_P}.providers.anthropic_messages:AnthropicMessages",
                 summary="Anthropic Messages API (Claude)")
    registry.add("gemini", config=GeminiConfig, factory=f"{_P}.providers.gemini:Gemini",
                 summary="Google Gemini generateContent")


@hookimpl
def caramba_register_processes(registry: Any) -> None:
    registry.add("multiplex_chat", config=MultiplexChatConfig, factory=f"{_P}.multiplex:MultiplexChat",
                 aliases=("brainstorm",),
                 summary="terminal chat with several agents that see each other's replies and use project tools")
    registry.add("paper_write", config=PaperWriteConfig, factory=f"{_P}.paper:PaperWrite",
                 summary="LaTeX paper from a run folder's report, CSVs, plots and tables")
    registry.add("paper_review", config=PaperReviewConfig, factory=f"{_P}.review:PaperReview",
                 summary="structured review with scores and proposed experiments as valid manifests")
    registry.add("research_loop", config=ResearchLoopConfig, factory=f"{_P}.loop:ResearchLoop",
                 summary="write, review, run proposed experiments, rewrite (bounded)")


@hookimpl
def caramba_register_commands(registry: Any) -> None:
    registry.add("serve", factory=f"{_P}.serve.command:ServeCommand",
                 summary="serve a caramba language model over an OpenAI-compatible HTTP API")
