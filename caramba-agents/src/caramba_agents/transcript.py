"""A shared chat transcript as JSONL: one message per line, appended as it happens, reloaded on start.

Appending a whole line at a time (and flushing it) means a crash or a failed reply never
damages what was already written. A line that does not parse (a file edited by hand) is
skipped with a warning and left in the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from caramba_agents.chat import Message

__all__ = ["Transcript"]


class Transcript:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.messages: list[Message] = []
        self.warnings: list[str] = []
        if self.path.is_file():
            for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    self.messages.append(Message.from_dict(json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    self.warnings.append(f"{self.path}:{n}: skipped an unreadable line ({type(exc).__name__})")

    def append(self, message: Message) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(message.as_dict(), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.messages.append(message)
