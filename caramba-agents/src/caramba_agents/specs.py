"""Config structs of caramba-agents' providers and processes (torch-free, client-free).

A provider is written in a manifest as ``{type: openai | anthropic | gemini, model: ...}``;
keys are never in a manifest, only the *name* of the environment variable holding one.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from caramba import Config, PolymorphicConfig, ProcessConfig, Scope

__all__ = [
    "AgentSpec",
    "AnthropicConfig",
    "GeminiConfig",
    "MultiplexChatConfig",
    "OpenAIChatConfig",
    "PaperReviewConfig",
    "PaperWriteConfig",
    "ProviderConfig",
    "ResearchLoopConfig",
]

PositiveFloat = Annotated[float, msgspec.Meta(gt=0.0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class ProviderConfig(PolymorphicConfig, kw_only=True):
    """Any registered provider, chosen by ``type``. Retries back off exponentially (the client's own)."""

    __caramba_kinds__: ClassVar[tuple[str, ...]] = ("provider",)
    model: str = ""
    base_url: str = ""
    api_key_env: str = ""
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.7
    max_tokens: PositiveInt = 1024
    timeout_s: PositiveFloat = 60.0
    max_retries: NonNegativeInt = 2
    stream: bool = True


class OpenAIChatConfig(ProviderConfig, kw_only=True):
    """OpenAI Chat Completions, or any server speaking it (vLLM, llama.cpp, Ollama, ``caramba serve``).

    ``api_key_env: ""`` sends no key (local servers); ``max_tokens_field`` is the request field
    that bounds the reply (OpenAI's newer models take only ``max_completion_tokens``).
    """

    type: str = "openai"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"


class AnthropicConfig(ProviderConfig, kw_only=True):
    """Anthropic Messages API."""

    type: str = "anthropic"
    model: str = "claude-sonnet-5-5"
    api_key_env: str = "ANTHROPIC_API_KEY"


class GeminiConfig(ProviderConfig, kw_only=True):
    """Google Gemini (``generateContent`` / ``streamGenerateContent``)."""

    type: str = "gemini"
    model: str = "gemini-2.5-pro"
    api_key_env: str = "GOOGLE_API_KEY"


class AgentSpec(Config, kw_only=True):
    """One collaborator in a chat: its model and how it should behave."""

    provider: ProviderConfig
    instructions: str = ""
    requires_env: list[str] = []  # the agent joins only when these are set (hosted providers' keys)
    # the first model call of each turn: "auto", "required", "none" or a tool's name; later calls in
    # the turn are "auto", so a demanded call cannot repeat forever
    tool_choice: str = "auto"


class MultiplexChatConfig(ProcessConfig, kw_only=True):
    """A terminal chat with several agents; ``@name`` routes, an untagged message goes to all."""

    agents: dict[str, AgentSpec]
    user_name: str = "you"
    transcript_path: str = "artifacts/ai/brainstorm.jsonl"
    project_root: str = "."
    max_context_items: PositiveInt = 40
    max_tool_rounds: PositiveInt = 4
    tools: bool = True

    def check(self, scope: Scope) -> None:
        if not self.agents:
            scope.error("agents", "a chat needs at least one agent",
                        "add agents: {local: {provider: {type: openai, base_url: ...}}}")


class PaperWriteConfig(ProcessConfig, kw_only=True):
    """Draft a LaTeX paper from a run folder's ``report.json``, CSVs, plots and ``tables.tex``."""

    writer: AgentSpec | None = None
    run_dir: str
    title: str = "Experiment report"
    authors: str = "caramba"
    output_dir: str = "paper"
    compile: bool = True


class PaperReviewConfig(ProcessConfig, kw_only=True):
    """Review a drafted paper: scores, weaknesses and proposed experiments as valid manifests."""

    reviewer: AgentSpec
    paper_dir: str = "paper"
    base_manifest: str = ""
    strictness: Literal["workshop", "conference", "journal"] = "conference"
    max_proposed_experiments: PositiveInt = 3


class ResearchLoopConfig(ProcessConfig, kw_only=True):
    """write → review → run proposed experiments (when allowed) → rewrite, bounded."""

    writer: AgentSpec | None = None
    reviewer: AgentSpec
    run_dir: str
    base_manifest: str
    output_dir: str = "paper"
    max_iterations: PositiveInt = 2
    max_total_experiments: NonNegativeInt = 1
    auto_run_experiments: bool = False
    budget_s: PositiveFloat = 600.0
    min_score_to_approve: float = 7.5
