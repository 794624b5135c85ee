"""The project tools an agent may call in a chat: read the code, check manifests, run experiments.

Every path stays inside the project root. ``run_experiment`` runs only after the person at the
keyboard says yes; the others only read. A tool's failure is its result (a line starting with
``error:``), so the model can read it and try again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caramba import CarambaError
from caramba_agents.chat import Tool

__all__ = ["ProjectTools"]

_STR = {"type": "string"}


class ProjectTools:
    """The tools, bound to a project folder and a way to ask the user for confirmation."""

    def __init__(self, root: str | Path, runtime: Any, confirm: Callable[[str], bool],
                 max_chars: int = 8000, run_timeout_s: float = 3600.0) -> None:
        self.root = Path(root).resolve()
        self.runtime = runtime
        self.confirm = confirm
        self.max_chars = max_chars
        self.run_timeout_s = run_timeout_s
        self._impl: dict[str, Callable[..., str]] = {
            "list_files": self.list_files, "read_file": self.read_file, "search_text": self.search_text,
            "validate_manifest": self.validate_manifest, "dry_run": self.dry_run,
            "run_experiment": self.run_experiment, "read_artifacts": self.read_artifacts,
        }

    @property
    def declarations(self) -> list[Tool]:
        def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
            return {"type": "object", "properties": props, "required": list(required)}

        return [
            Tool("list_files", "List files under a project folder (recursively, at most 200).",
                 obj({"folder": _STR})),
            Tool("read_file", "Read a project file (text, truncated).", obj({"path": _STR}, ("path",))),
            Tool("search_text", "Search project files for a regular expression; returns file:line: text.",
                 obj({"pattern": _STR, "folder": _STR}, ("pattern",))),
            Tool("validate_manifest", "Check a caramba manifest (caramba validate).", obj({"path": _STR}, ("path",))),
            Tool("dry_run", "Plan a manifest without running it (caramba run --dry-run).",
                 obj({"path": _STR, "target": _STR}, ("path",))),
            Tool("run_experiment", "Run a manifest target (caramba run); the user must confirm.",
                 obj({"path": _STR, "target": _STR}, ("path",))),
            Tool("read_artifacts", "List a run folder's artifacts and read its report.json.",
                 obj({"folder": _STR}, ("folder",))),
        ]

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        impl = self._impl.get(name)
        if impl is None:
            return f"error: no tool named '{name}'; the tools are {', '.join(self._impl)}"
        try:
            return impl(**arguments)
        except TypeError as exc:
            return f"error: bad arguments for {name}: {exc}"
        except (CarambaError, OSError) as exc:
            return f"error: {exc}"

    # -- the tools ----------------------------------------------------------------------------
    def list_files(self, folder: str = ".") -> str:
        base = self._inside(folder)
        files = sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        return "\n".join(files[:200]) + (f"\n... ({len(files)} files)" if len(files) > 200 else "")

    def read_file(self, path: str) -> str:
        text = self._inside(path).read_text(errors="replace")
        return text[:self.max_chars] + (f"\n... (truncated; {len(text)} chars)" if len(text) > self.max_chars else "")

    def search_text(self, pattern: str, folder: str = ".") -> str:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            return f"error: bad regular expression: {exc}"
        hits: list[str] = []
        for p in sorted(self._inside(folder).rglob("*")):
            if not p.is_file() or p.suffix not in (".py", ".md", ".yml", ".yaml", ".txt", ".json", ".toml"):
                continue
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
                if rx.search(line):
                    hits.append(f"{p.relative_to(self.root)}:{n}: {line.strip()[:160]}")
                    if len(hits) >= 100:
                        return "\n".join(hits) + "\n... (first 100 hits)"
        return "\n".join(hits) or "no matches"

    def validate_manifest(self, path: str) -> str:
        manifest = self.runtime.load_manifest(str(self._inside(path)))
        return f"valid ({len(manifest.targets)} target(s): {', '.join(t.name for t in manifest.targets)})"

    def dry_run(self, path: str, target: str = "") -> str:
        from caramba import plan

        manifest = self.runtime.load_manifest(str(self._inside(path)))
        return json.dumps(plan(manifest, target or None), indent=1)

    def run_experiment(self, path: str, target: str = "") -> str:
        manifest = self._inside(path)
        command = [sys.executable, "-m", "caramba", "run", str(manifest), *(["--target", target] if target else [])]
        shown = f"caramba run {manifest.relative_to(self.root)}" + (f" --target {target}" if target else "")
        if not self.confirm(shown):
            return "the user declined to run it"
        done = subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=self.run_timeout_s,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        tail = (done.stdout + done.stderr)[-2000:]
        return f"exit code {done.returncode}\n{tail}"

    def read_artifacts(self, folder: str) -> str:
        base = self._inside(folder)
        listing = "\n".join(sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())[:100])
        report = base / "report.json"
        text = report.read_text()[:self.max_chars] if report.is_file() else "(no report.json)"
        return f"{listing}\n--- report.json ---\n{text}"

    def _inside(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if path != self.root and self.root not in path.parents:
            raise CarambaError(f"'{rel}' is outside the project folder", hint="use a path inside the project")
        if not path.exists():
            raise CarambaError(f"'{rel}' does not exist")
        return path
