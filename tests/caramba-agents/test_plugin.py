"""caramba-agents registers like any plugin, cheaply, and its public names are what ``__all__`` says."""

from __future__ import annotations

import subprocess
import sys

import caramba_agents


def test_registering_imports_no_client_library_server_or_torch():
    code = ("import sys, caramba, caramba_agents.plugin as p\n"
            "rt = caramba.Runtime(autoload=False, plugins=[p], strict=True)\n"
            "assert sorted(rt.registry('provider').names()) == ['anthropic', 'gemini', 'openai']\n"
            "assert 'serve' in rt.registry('command')\n"
            "heavy = [m for m in ('torch', 'openai', 'anthropic', 'google.genai', 'starlette', 'uvicorn', 'httpx2')\n"
            "         if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_public_names():
    assert caramba_agents.__all__ == ["Message", "Provider", "ProviderError", "Reply", "Tool", "ToolCall",
                                      "create_provider"]
    assert all(getattr(caramba_agents, name) for name in caramba_agents.__all__)


def test_serve_is_a_caramba_subcommand(capsys):
    from caramba.cli import main

    try:
        main(["serve", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: caramba serve") and "--max-waiting" in out and "loopback" in out


def test_serve_refuses_a_bad_port_in_one_line(capsys):
    from caramba.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err == "error: --port 70000 is not a TCP port  (use 1-65535)\n"
