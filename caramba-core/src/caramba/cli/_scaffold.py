"""``caramba new-plugin``: write a fresh plugin distribution from the bundled template.

The template is ``plugins-template/`` of the caramba repository (distribution
``caramba-plugin-example``), shipped inside caramba-core as package data under
``caramba/cli/template/`` so an installed core can scaffold without the repository. It is a
complete, tested plugin with a layer, a topology and a metrics sink; ``new_plugin`` copies it
and substitutes four names::

    caramba-plugin-example    ->  the distribution name       caramba-plugin-scale
    caramba_plugin_example    ->  the import (and entry-point) name  caramba_plugin_scale
    Example<Upper>...         ->  component class and type names      ScaleLayer, ScaleLayerConfig
    example_<lower>...        ->  lower-case component names          scale_csv

It keeps the components of the chosen kind(s). Template lines ``# >>> KIND ...`` and
``# <<< KIND ...`` (or ``<!-- >>> KIND -->`` in Markdown) fence text that belongs to those
kinds only: a fenced block is kept when any kind it names is chosen, and the fence lines
themselves are always dropped. ``template`` fences text about the template itself (how to
copy it by hand), which no generated package keeps.
"""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

from caramba.errors import UsageError
from caramba.plugins._requirements import api_pin

__all__ = ["KINDS", "PluginNames", "new_plugin", "render", "template_root"]

#: The component kinds the template carries; ``"all"`` keeps every one of them.
KINDS: tuple[str, ...] = ("layer", "topology", "sink")

#: Files that belong to one kind only (paths in the template, before renaming).
KIND_FILES: dict[str, tuple[str, ...]] = {
    "layer": ("src/caramba_plugin_example/layer.py", "tests/test_layer.py"),
    "topology": ("src/caramba_plugin_example/topology.py", "tests/test_topology.py"),
    "sink": ("src/caramba_plugin_example/sink.py", "tests/test_sink.py"),
}

TEMPLATE_DIST = "caramba-plugin-example"
TEMPLATE_IMPORT = "caramba_plugin_example"

#: Names a new plugin may not take: caramba's own distributions and import names.
RESERVED = frozenset({
    "caramba", "caramba-core", "caramba-layers", "caramba-trainers", "caramba-infer", "caramba-kernels",
    "caramba-agents", "caramba-plugin-example",
})

#: Build and cache folders that never belong in a new package.
_SKIP = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".nox", "build", "dist"})
_FENCE = re.compile(r"^\s*(?:#|<!--)\s*(>>>|<<<)\s+([a-z ]+?)\s*(?:-->)?\s*$")
_FROM = re.compile(r"^from ([\w.]+) import ([\w, ]+)\n$")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


class PluginNames:
    """The four spellings of a plugin's name, derived from its distribution name."""

    def __init__(self, dist: str) -> None:
        dist = dist.strip().lower().replace("_", "-")
        if not _NAME.fullmatch(dist):
            raise UsageError(
                f"'{dist}' is not a valid plugin distribution name",
                hint="use lower-case letters, digits and single hyphens, starting with a letter: "
                     "caramba-plugin-scale",
            )
        if dist in RESERVED:
            raise UsageError(f"'{dist}' is the name of a caramba distribution", hint="pick another name")
        short = dist
        for prefix in ("caramba-plugin-", "caramba-"):
            if dist.startswith(prefix):
                short = dist[len(prefix):]
                break
        self.dist = dist
        self.module = dist.replace("-", "_")
        self.short = short.replace("-", "_")  # example_csv -> <short>_csv
        self.camel = "".join(part.capitalize() for part in short.split("-"))  # ExampleLayer -> <Camel>Layer

    def substitute(self, text: str) -> str:
        """Replace the template's names in ``text`` in one pass (so a result is never re-replaced)."""
        table = {TEMPLATE_DIST: self.dist, TEMPLATE_IMPORT: self.module}

        def replace(m: re.Match[str]) -> str:
            word = m.group(0)
            if word in table:
                return table[word]
            if word == "Example":
                return self.camel
            return self.short + "_"

        return _SUBST.sub(replace, text)


# The distribution and import names; "Example" starting a CamelCase identifier
# (ExampleLayer); "example_" starting a snake_case one (example_csv). Prose never matches.
_SUBST = re.compile(
    rf"{re.escape(TEMPLATE_DIST)}|{re.escape(TEMPLATE_IMPORT)}|\bExample(?=[A-Z])|\bexample_(?=[a-z])"
)


def template_root() -> Path:
    """The bundled template folder inside the installed caramba-core."""
    root = Path(str(resources.files("caramba.cli").joinpath("template")))
    if not (root / "pyproject.toml").is_file():
        raise UsageError(f"caramba-core's plugin template is missing from {root}",
                         hint="reinstall caramba-core")
    return root


def render(text: str, kinds: set[str]) -> str:
    """Keep the fenced blocks of ``kinds``, drop the others, and drop every fence line."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = []  # (fence label, keep)
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        m = _FENCE.match(line)
        if m is None:
            if all(keep for _, keep in stack):
                out.append(line)
            continue
        label = m.group(2)
        if m.group(1) == ">>>":
            unknown = set(label.split()) - {*KINDS, "template"}
            if unknown:
                raise ValueError(f"template line {lineno}: unknown kind(s) {sorted(unknown)} in fence")
            stack.append((label, bool(set(label.split()) & kinds)))
        else:
            if not stack or stack[-1][0] != label:
                raise ValueError(f"template line {lineno}: '<<< {label}' closes no matching '>>> {label}'")
            stack.pop()
    if stack:
        raise ValueError(f"template fence '>>> {stack[-1][0]}' is never closed")
    text = re.sub(r"\n{4,}", "\n\n\n", "".join(out))
    return text.rstrip("\n") + "\n" if text.strip() else text


def _import_order(name: str) -> tuple[int, str]:
    """isort's order by type: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def _merge_imports(text: str) -> str:
    """Join adjacent ``from M import a`` / ``from M import b`` lines left by dropped blocks."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        m = _FROM.match(line)
        prev = _FROM.match(out[-1]) if out else None
        if m and prev and m.group(1) == prev.group(1):
            names = sorted({*prev.group(2).split(", "), *m.group(2).split(", ")}, key=_import_order)
            out[-1] = f"from {m.group(1)} import {', '.join(names)}\n"
        else:
            out.append(line)
    return "".join(out)


def _skipped(rel: str) -> bool:
    return any(part in _SKIP or part.endswith(".egg-info") for part in rel.split("/"))


def _core_pin() -> str:
    """Plugins pin the compatible release line of the core they were written against."""
    from caramba import __version__

    return api_pin(__version__)


def _parse_kinds(kind: str | list[str] | tuple[str, ...]) -> set[str]:
    parts = kind.replace(",", " ").split() if isinstance(kind, str) else list(kind)
    kinds = set(KINDS) if "all" in parts else set(parts)
    unknown = kinds - set(KINDS)
    if unknown or not kinds:
        raise UsageError(f"unknown plugin kind(s): {', '.join(sorted(unknown)) or '(none)'}",
                         hint="choose from " + ", ".join((*KINDS, "all")))
    return kinds


def new_plugin(name: str, *, kind: str | list[str] | tuple[str, ...] = "layer", dest: str | Path = ".") -> Path:
    """Write the plugin distribution ``name`` into ``dest/name`` and return that folder.

    ``kind`` chooses the components it starts with: ``"layer"``, ``"topology"``, ``"sink"``,
    several separated by commas, or ``"all"``. The result installs with ``pip install -e`` and
    passes its own tests unmodified.
    """
    names = PluginNames(name)
    kinds = _parse_kinds(kind)
    target = Path(dest) / names.dist
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} already exists and is not empty",
                         hint="choose another --dest, or remove the folder")
    source = template_root()
    dropped = {path for k, paths in KIND_FILES.items() if k not in kinds for path in paths}
    pin = _core_pin()
    try:
        for src in sorted(source.rglob("*")):
            rel = src.relative_to(source).as_posix()
            if src.is_dir() or rel in dropped or src.suffix == ".pyc" or _skipped(rel):
                continue
            out = target / names.substitute(rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in (".py", ".toml", ".md", ".txt", ".cfg", ".yml", ".yaml", ".typed", ""):
                text = names.substitute(render(src.read_text(encoding="utf-8"), kinds))
                if src.suffix == ".py":
                    text = _merge_imports(text)
                if rel == "pyproject.toml":
                    text = re.sub(r"caramba-core>=[^\"]*", pin, text, count=1)
                out.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(src, out)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never leave half a package behind
        raise
    return target
