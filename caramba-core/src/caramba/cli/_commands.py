"""Implementations of the ``caramba`` subcommands. None but ``run`` imports torch."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from caramba.errors import UsageError, did_you_mean
from caramba.manifest._limits import human_bytes
from caramba.plugins import Runtime

__all__ = ["find_manifest", "runtime_from_args"]


def runtime_from_args(args: argparse.Namespace) -> Runtime:
    block = []
    for opt in getattr(args, "plugin_opts", []):
        if not opt.startswith("no:"):
            raise UsageError(f"unknown plugin option -p {opt}", hint="use -p no:NAME to block a plugin")
        block.append(opt[3:])
    runtime = Runtime(block=block)
    for name in runtime.unmatched_filters:
        print(f"warning: {name} matches no installed plugin  (caramba plugins lists their names)", file=sys.stderr)
    if getattr(args, "command", "") != "plugins":
        for info in runtime.failed_plugins():  # `caramba plugins` lists them itself
            print(f"warning: plugin '{info.name}' failed to load: {info.reason}  (caramba plugins shows why)",
                  file=sys.stderr)
    return runtime


def find_manifest(runtime: Runtime, name: str) -> str:
    """A manifest path, or a preset name searched in the folders plugins provide."""
    if Path(name).exists() or any(sep in name for sep in ("/", os.sep)) or name.endswith((".yml", ".yaml", ".json")):
        return name
    folders = [Path(p) for p in os.environ.get("CARAMBA_PRESETS_PATH", "").split(os.pathsep) if p]
    folders.append(Path("config/presets"))
    folders += [Path(p) for p in runtime.hooks.preset_dirs()]
    known: list[str] = []
    for folder in folders:
        for suffix in (".yml", ".yaml", ".json"):
            candidate = folder / f"{name}{suffix}"
            if candidate.exists():
                return str(candidate)
        if folder.is_dir():
            known += [p.stem for p in folder.iterdir() if p.suffix in (".yml", ".yaml", ".json")]
    raise UsageError(f"no manifest file or preset named '{name}'", hint=did_you_mean(name, known))


def _print_notes(manifest: Any) -> None:
    """One line per original-caramba spelling that was read, inherited or ignored (see Manifest.notes)."""
    for note in manifest.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    runtime = runtime_from_args(args)
    path = find_manifest(runtime, args.manifest)
    manifest = runtime.load_manifest(path, overrides=args.overrides)
    _print_notes(manifest)
    names = ", ".join(t.name for t in manifest.targets) or "none"
    print(f"{path}: valid ({len(manifest.targets)} target(s): {names})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    runtime = runtime_from_args(args)
    path = find_manifest(runtime, args.manifest)
    manifest = runtime.load_manifest(path, overrides=args.overrides)
    _print_notes(manifest)
    if args.dry_run:
        from caramba.pipeline._runner import plan

        result = plan(manifest, args.target, runtime=runtime, build=args.meta)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_plan(result)
        return 0
    from rich.console import Console

    from caramba.pipeline._runner import run_target

    console = Console(stderr=True)
    target = manifest.target(args.target)
    console.print(f"[bold]caramba[/] running [cyan]{manifest.name}[/] target [cyan]{target.name}[/]")
    report = run_target(runtime, manifest, target.name, root=args.out, console=console)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        folder = Path(report["artifacts"][0]).parent if report.get("artifacts") else None
        console.print(f"[green]done[/]: artifacts in [bold]{folder}[/]")
        for p in report.get("artifacts", []):
            console.print(f"  {p}")
    return 0


def _print_plan(plan: dict[str, Any]) -> None:
    print(f"plan for {plan['manifest']} ({plan['name']})")
    for t in plan["targets"]:
        print(f"  target {t['name']} ({t['type']})")
        if t["type"] != "experiment":
            print(f"    process {t['process']}")
            continue
        print(f"    system {t['system']}  data {t['data']}  objective {t['objective']}  trainer {t['trainer']}")
        if t["parameters"] is not None:
            built = f" (built on meta: {t['parameters_built']:,})" if "parameters_built" in t else ""
            print(f"    parameters {t['parameters']:,}{built}")
            print(f"    training memory, weights + gradients + AdamW state: {human_bytes(t['training_bytes'])} "
                  "(fp32; activations extra)")
        if t["kv_bytes_per_token"] is not None:
            kv = t["kv_bytes_per_token"]
            print(f"    KV cache bytes/token: {kv['fp16']:,} (fp16), {kv['fp32']:,} (fp32)")
        for r in t["runs"]:
            verify = f"  verify {', '.join(r['verify'])}" if r["verify"] else ""
            print(f"    run {r['id']}: seed {r['seed']}, {r['steps']} steps{verify}")
        for b in t["benchmarks"]:
            print(f"    benchmark {b['id']}: {b['type']} on {', '.join(b['models']) or 'all models'}")


def cmd_plugins(args: argparse.Namespace) -> int:
    runtime = runtime_from_args(args)
    infos = [p.as_dict() for p in runtime.plugins]
    if args.json:
        print(json.dumps({"plugins": infos}, indent=2))
        return 0
    if not infos:
        print("no plugins installed (pip install caramba-layers caramba-trainers caramba-infer)")
        return 0
    for p in infos:
        dist = f"{p['distribution']} {p['version']}".strip() or "(not from a distribution)"
        status = p["status"] + (f": {p['reason']}" if p["reason"] else "")
        print(f"{p['name']}  {dist}  [{status}]")
        print(f"    {p['location']}")
        for kind, names in p["components"].items():
            print(f"    {kind}: {', '.join(names)}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    runtime = runtime_from_args(args)
    registry = runtime.registry(args.kind)
    rows = [{"name": e.name, "aliases": list(e.aliases), "plugin": e.plugin, "summary": e.summary} for e in registry]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no {args.kind} components registered")
    for r in rows:
        aliases = f" (aliases: {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(f"{r['name']:<28} {r['summary']}{aliases}  [{r['plugin']}]")
    return 0


def _field_rows(struct: Any) -> list[dict[str, Any]]:
    import msgspec

    rows: list[dict[str, Any]] = []
    for f in msgspec.structs.fields(struct):
        if f.encode_name == "type":
            continue
        default = None if f.required else (f.default if f.default is not msgspec.NODEFAULT else f.default_factory())
        rows.append({"name": f.encode_name, "type": _type_name(f.type), "required": f.required, "default": default})
    return rows


def cmd_show(args: argparse.Namespace) -> int:
    runtime = runtime_from_args(args)
    entry = runtime.get(args.kind, args.name)
    fields = _field_rows(entry.config) if entry.config is not None else []
    run_config = entry.run_config
    run_fields = _field_rows(run_config) if run_config is not None else []
    if args.json:
        print(json.dumps({"kind": entry.kind, "name": entry.name, "plugin": entry.plugin, "summary": entry.summary,
                          "aliases": list(entry.aliases), "fields": fields, "run_fields": run_fields},
                         indent=2, default=repr))
        return 0
    print(f"{entry.kind} {entry.name}: {entry.summary}")
    print(f"  plugin {entry.plugin}  factory {entry.factory}")
    if entry.aliases:
        print(f"  aliases: {', '.join(entry.aliases)}")
    doc = (entry.config.__doc__ or "").strip() if entry.config else ""
    if doc:
        print("  " + doc.splitlines()[0])
    _print_rows(fields)
    if run_config is not None:
        print(f"  per-run train: fields ({run_config.__name__})")
        _print_rows(run_fields)
    return 0


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        default = "required" if row["required"] else f"default {row['default']!r}"
        print(f"  {row['name']:<24} {row['type']:<32} {default}")


def _type_name(tp: Any) -> str:
    from caramba.manifest._decode import type_label

    return type_label(tp)


def cmd_schema(args: argparse.Namespace) -> int:
    from caramba.manifest._jsonschema import manifest_schema

    runtime = runtime_from_args(args)
    print(json.dumps(manifest_schema(runtime), indent=2))
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from caramba.cli._scaffold import new_plugin

    path = new_plugin(args.name, kind=args.kind, dest=args.dest)
    print(f"wrote {path}")
    print(f"next: pip install -e {path} && caramba plugins")
    return 0

