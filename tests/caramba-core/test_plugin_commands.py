"""A plugin adds a ``caramba`` subcommand by registering a ``command``."""

from __future__ import annotations

import pytest

from caramba.cli import main

GREET_PLUGIN = '''
from caramba import hookimpl


class Greet:
    """caramba greet NAME [--shout]: prints a greeting; exit code 4 when asked to fail."""

    def __init__(self, config):
        assert config is None

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--shout", action="store_true")
        parser.add_argument("--fail", action="store_true")

    def run(self, args):
        if args.fail:
            from caramba import UsageError
            raise UsageError("asked to fail", hint="drop --fail")
        text = f"hello {args.name}"
        print(text.upper() if args.shout else text)
        return 4 if args.name == "four" else 0


@hookimpl
def caramba_register_commands(registry):
    registry.add("greet", factory="greet_plugin:Greet", summary="print a greeting")
'''


@pytest.fixture
def greet_cli(monkeypatch, tmp_path, make_dist):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "caramba-greet", "0.1.0", "greet_plugin", GREET_PLUGIN, {"greet": "greet_plugin"})
    monkeypatch.syspath_prepend(str(site))
    for name in [k for k in __import__("os").environ if k.startswith("CARAMBA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARAMBA_PLUGINS", "greet")
    monkeypatch.chdir(tmp_path)
    return main


def test_a_registered_command_runs_with_its_own_arguments_and_exit_code(greet_cli, capsys):
    assert greet_cli(["greet", "ada", "--shout"]) == 0
    assert capsys.readouterr().out == "HELLO ADA\n"
    assert greet_cli(["greet", "four"]) == 4


def test_a_commands_caramba_error_is_one_line_and_its_exit_code(greet_cli, capsys):
    assert greet_cli(["greet", "ada", "--fail"]) == 2
    err = capsys.readouterr().err
    assert err == "error: asked to fail  (drop --fail)\n"


def test_a_commands_help_names_it_and_bad_options_exit_2(greet_cli, capsys):
    with pytest.raises(SystemExit) as info:
        greet_cli(["greet", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: caramba greet") and "print a greeting" in out
    with pytest.raises(SystemExit) as info:
        greet_cli(["greet", "ada", "--bogus"])
    assert info.value.code == 2


def test_a_blocked_plugins_command_is_not_found_and_the_word_is_read_as_a_manifest(greet_cli, capsys):
    assert greet_cli(["-p", "no:greet", "greet"]) == 2
    assert "no manifest file or preset named 'greet'" in capsys.readouterr().err


def test_built_in_commands_are_not_shadowed(greet_cli, capsys):
    assert greet_cli(["plugins", "--json"]) == 0
    assert '"greet"' in capsys.readouterr().out
