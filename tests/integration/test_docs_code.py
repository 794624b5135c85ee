"""Every code block in docs/ and the READMEs runs, or says it is a fragment.

* ```python blocks run (in a fresh interpreter, from the repository root);
* ```yaml blocks are whole manifests and validate;
* ```bash blocks: each ``caramba`` command parses with the real command line, and every preset or
  manifest file it names exists (running them is what the presets' own tests do);
* ```python fragment / ```yaml fragment: a piece of a larger whole (the info string says so);
  ```text and ```latex blocks show output.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import caramba
from caramba.cli import _normalise, _parser
from caramba.cli._commands import find_manifest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("caramba-*/README.md")),
         ROOT / "plugins-template" / "README.md"]
BLOCK = re.compile(r"^```([a-z]*)([^\n]*)\n(.*?)^```", re.S | re.M)
SHOWN = {"text", "latex", "toml", ""}  # output, plain listings and config files, not code


def blocks(kind: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in BLOCK.finditer(text):
            lang, info, code = m.group(1), m.group(2).strip(), m.group(3)
            if lang == kind and info != "fragment":
                found.append((f"{page.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}", code))
    return found


def test_every_block_is_runnable_or_marked():
    for page in PAGES:
        for m in BLOCK.finditer(page.read_text()):
            lang, info = m.group(1), m.group(2).strip()
            assert lang in {"python", "yaml", "bash"} | SHOWN, f"{page.name}: unknown block kind ```{lang}"
            assert info in ("", "fragment"), f"{page.name}: ```{lang} {info}"


@pytest.mark.parametrize("where, code", blocks("python"), ids=lambda v: v if ":" in str(v)[:40] else "")
@pytest.mark.slow  # over 10 s on 2 cores
def test_python_blocks_run(where, code):
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{where}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("where, code", blocks("yaml"), ids=lambda v: v if ":" in str(v)[:40] else "")
def test_yaml_blocks_are_valid_manifests(where, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    manifest = caramba.Runtime().load_manifest_text(code, filename=where)
    assert manifest.targets


def caramba_commands() -> list[tuple[str, list[str]]]:
    """``caramba ...`` lines of bash blocks; a plugin's own subcommand (``caramba serve``) parses in its plugin."""
    plugin_commands = set(caramba.Runtime().registry("command").names())
    out = []
    for where, code in blocks("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for command in re.split(r" (?:;|&&) ", " ".join(words)):
                parts = command.split()
                if parts[:1] == ["caramba"] and parts[1:2] and parts[1] in plugin_commands:
                    continue
                if parts[:1] == ["caramba"]:
                    out.append((where, parts[1:]))
                elif parts[:3] == ["python", "-m", "caramba"]:
                    out.append((where, parts[3:]))
    return out


@pytest.mark.parametrize("where, argv", caramba_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_caramba_commands_in_bash_blocks_parse_and_name_what_exists(where, argv, monkeypatch):
    args = _parser().parse_args(_normalise(argv))
    manifest = getattr(args, "manifest", None)
    if manifest and not manifest.endswith(("tiny.yml", "m.yml", "manifest.yml")):  # the page's own example
        monkeypatch.chdir(ROOT / "plugins-template" if manifest.startswith("examples/") else ROOT)
        assert Path(find_manifest(caramba.Runtime(), manifest)).is_file(), where
