"""The ``caramba`` command line.

::

    caramba run MANIFEST [--target NAME] [--dry-run] [-s path=value ...]
    caramba validate MANIFEST [-s path=value ...]
    caramba plugins [--json]
    caramba ls KIND
    caramba show KIND NAME
    caramba schema
    python -m caramba MANIFEST [--target NAME] [--dry-run]     (same as ``run``)
    caramba NAME ...                                            (a command a plugin registered)

A manifest may be a path or the name of an installed preset (``standard_transformer``).
Without ``--target`` the target named by ``entrypoints.default`` runs, else the first one.
Global option ``-p no:NAME`` blocks a plugin. Exit codes: 0 ok, 1 run failed,
2 bad input or usage, 3 plugin failure. A resource failure (disk full, read-only or
forbidden file, out of memory) is one line naming the file or resource and a fix, exit 1;
``CARAMBA_TRACEBACK=1`` shows its traceback instead.

A plugin adds a subcommand by registering a ``command`` (``caramba_register_commands``):
its factory is called with ``None`` and returns an object with
``add_arguments(parser)`` and ``run(args) -> int``; ``args.runtime`` is the plugin runtime,
built with the command line's ``-p`` filters. A word that is neither a built-in
command nor a registered one is a manifest, as before.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from caramba.errors import CarambaError

__all__ = ["main", "resource_failure"]

COMMANDS = ("run", "validate", "plugins", "ls", "show", "schema", "new-plugin")


def _parser() -> argparse.ArgumentParser:
    # -p works before and after the subcommand; the two lists are merged (a subparser's
    # default would otherwise overwrite what was given before it)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-p", dest="plugin_opts", action="append", default=[], metavar="no:NAME",
                        help="block a plugin by entry-point name (repeatable)")
    parser = argparse.ArgumentParser(prog="caramba", description="Run experiments declared in YAML manifests.")
    parser.add_argument("-p", dest="global_plugin_opts", action="append", default=[], metavar="no:NAME",
                        help="block a plugin by entry-point name (repeatable)")
    parser.add_argument("--version", action="version", version=f"caramba-core {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="validate and run a manifest target")
    run.add_argument("manifest", help="manifest path or preset name")
    run.add_argument("--target", "-t", default=None, help="target name or entrypoint alias")
    run.add_argument("--dry-run", action="store_true", help="validate and print the plan; run nothing")
    run.add_argument("--meta", action="store_true",
                     help="with --dry-run: also build each system on the meta device and count its parameters")
    run.add_argument("-s", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                     help="override a manifest value (repeatable)")
    run.add_argument("--out", default=None, help="root folder for artifacts (default: the manifest's artifacts_dir)")
    run.add_argument("--json", action="store_true", help="print the plan or report as JSON")

    val = sub.add_parser("validate", parents=[common], help="parse, lower and validate a manifest")
    val.add_argument("manifest")
    val.add_argument("-s", dest="overrides", action="append", default=[], metavar="PATH=VALUE")

    plugins = sub.add_parser("plugins", parents=[common], help="list plugins and their components")
    plugins.add_argument("--json", action="store_true")

    ls = sub.add_parser("ls", parents=[common], help="list the registered components of a kind")
    ls.add_argument("kind")
    ls.add_argument("--json", action="store_true")

    show = sub.add_parser("show", parents=[common], help="show a component's config fields")
    show.add_argument("kind")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")

    sub.add_parser("schema", parents=[common], help="print the manifest's JSON Schema (for editors)")

    new = sub.add_parser("new-plugin", parents=[common], help="write a new plugin package from the template")
    new.add_argument("name", help="distribution name, e.g. caramba-plugin-scale")
    new.add_argument("--kind", default="layer", choices=("layer", "topology", "sink", "all"),
                     help="the component the plugin starts with (all: a layer, a topology and a sink)")
    new.add_argument("--dest", default=".", help="folder to create the package in")
    return parser


def _version() -> str:
    from caramba import __version__

    return __version__


def _normalise(argv: list[str]) -> list[str]:
    """``caramba MANIFEST ...`` and ``python -m caramba MANIFEST ...`` mean ``run MANIFEST ...``."""
    i = _first_word(argv)
    if i is None or argv[i] in COMMANDS:
        return argv
    return [*argv[:i], "run", *argv[i:]]


def _first_word(argv: list[str]) -> int | None:
    """Index of the first argument that is neither an option nor the value of ``-p``."""
    for i, arg in enumerate(argv):
        if arg == "-p" or (i > 0 and argv[i - 1] == "-p"):
            continue
        return None if arg.startswith("-") else i
    return None


def _plugin_command(argv: list[str]) -> Callable[[], int] | None:
    """The call that runs a plugin's subcommand, when the first word names a registered one.

    Only a word that is no built-in command and no manifest file pays for loading the plugins.
    """
    i = _first_word(argv)
    if i is None or argv[i] in COMMANDS or Path(argv[i]).suffix in (".yml", ".yaml", ".json"):
        return None
    from caramba.cli._commands import runtime_from_args

    before = argv[:i]
    opts = [before[j + 1] for j, a in enumerate(before[:-1]) if a == "-p"]
    entry = runtime_from_args(argparse.Namespace(plugin_opts=opts, command=argv[i])).registry("command").find(argv[i])
    if entry is None:
        return None
    parser = argparse.ArgumentParser(prog=f"caramba {entry.name}", description=entry.summary)
    parser.add_argument("-p", dest="plugin_opts", action="append", default=[], metavar="no:NAME",
                        help="block a plugin by entry-point name (repeatable)")

    def run() -> int:
        command = entry.load()(None)
        command.add_arguments(parser)
        args = parser.parse_args(argv[i + 1:])
        args.command = entry.name
        args.plugin_opts = [*opts, *args.plugin_opts]
        args.runtime = runtime_from_args(args)  # the plugins, with this command line's -p filters
        return int(command.run(args))

    return run


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        plugin_run = _plugin_command(raw)
    except CarambaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if plugin_run is not None:
        return _guarded(plugin_run)
    parser = _parser()
    args = parser.parse_args(_normalise(raw))
    if not args.command:
        parser.print_help()
        return 2
    args.plugin_opts = [*args.global_plugin_opts, *getattr(args, "plugin_opts", [])]
    from caramba.cli import _commands as commands

    return _guarded(lambda: int(getattr(commands, "cmd_" + args.command.replace("-", "_"))(args)))


def _guarded(call: Callable[[], int]) -> int:
    """Run a command: a :class:`CarambaError` is one message and its exit code, never a traceback."""
    try:
        return call()
    except CarambaError as exc:
        print(f"error: {exc}" if not hasattr(exc, "problems") else str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError, RuntimeError) as exc:
        import os

        failure = resource_failure(exc)
        if failure is None or os.environ.get("CARAMBA_TRACEBACK") == "1":
            raise
        print(f"error: {failure}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `caramba plugins --json | head`: the reader left; that is not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0



_OS_HINTS = {
    "ENOSPC": "free space on that disk, or point --out at another; checkpoints already written are intact",
    "EDQUOT": "the disk quota is used up: free space, or point --out at another disk",
    "EROFS": "the filesystem is read-only: point --out at a writable folder",
    "EACCES": "check the permissions of the file and its folder",
    "EPERM": "check the permissions of the file and its folder",
    "EMFILE": "too many open files: raise the limit (ulimit -n) or lower num_workers",
}


def resource_failure(exc: BaseException) -> str | None:
    """One line for a failure of the machine rather than of caramba, or ``None`` for anything else."""
    import errno

    if isinstance(exc, BrokenPipeError):
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, "")
        where = f": {exc.filename}" if exc.filename else ""
        hint = _OS_HINTS.get(name, "")
        return f"{exc.strerror or exc}{where}" + (f"  ({hint})" if hint else "")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no memory left"
        return (f"out of memory: {first}  (lower batch_size or block_size, use gradient_accumulation_steps, "
                "or a smaller model; checkpoints already written are intact and a rerun resumes from them)")
    return None
