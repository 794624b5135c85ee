"""The core's structure: every import points down, never up.

::

    4  caramba (the lazy top-level API), caramba.nn, cli, testing
    3  plugins._runtime (the Runtime facade: plugin loading + load/parse/build), pipeline
    2  graph._build (needs the registries), manifest._jsonschema (needs node configs)
    1  manifest (source, variables, overrides, lower, decode, schema, load),
       graph (node, modules), plugins (registry, requirements)
    0  the base: errors, graph._shapes, manifest._config (Config, Scope), graph._context,
       graph._caches, pipeline._components, pipeline._files, plugins._discovery, plugins.hooks

A module may import modules of its own level or below, at module level or inside a
function (a lazy import that keeps ``caramba plugins`` from loading torch or YAML), never
one of a level above: no import exists only to dodge a cycle. Package ``__init__`` modules
re-export their package and are not part of the picture.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "caramba-core" / "src"
LEVELS: dict[str, int] = {
    **dict.fromkeys(["caramba.errors", "caramba.graph._shapes", "caramba.manifest._config", "caramba.graph._context",
                     "caramba.graph._caches", "caramba.pipeline._components", "caramba.pipeline._files",
                     "caramba.plugins._discovery", "caramba.plugins.hooks", "caramba.manifest._limits",
                     "caramba.pipeline._runfolder", "caramba.graph._kernels"], 0),
    **dict.fromkeys(["caramba.manifest._source", "caramba.manifest._variables", "caramba.manifest._overrides",
                     "caramba.manifest._lower", "caramba.manifest._decode", "caramba.manifest._schema",
                     "caramba.manifest._load", "caramba.graph._node", "caramba.graph._modules",
                     "caramba.plugins._registry", "caramba.plugins._requirements"], 1),
    **dict.fromkeys(["caramba.graph._build", "caramba.manifest._jsonschema"], 2),
    **dict.fromkeys(["caramba.plugins._runtime", "caramba.pipeline._session", "caramba.pipeline._runner"], 3),
    **dict.fromkeys(["caramba", "caramba.nn", "caramba.__main__", "caramba.cli", "caramba.cli._commands",
                     "caramba.cli._scaffold"], 4),
}
PACKAGES = {"caramba.graph": "graph", "caramba.manifest": "manifest", "caramba.pipeline": "pipeline",
            "caramba.plugins": "plugins"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def core_modules() -> list[Path]:
    root = SRC / "caramba"
    return [p for p in sorted(root.rglob("*.py"))
            if "template" not in p.parts and "testing" not in p.parts and module_name(p) not in PACKAGES]


def defined_in(package: str, name: str) -> str:
    if f"{package}.{name}" in LEVELS:
        return f"{package}.{name}"
    return getattr(getattr(importlib.import_module(package), name), "__module__", package)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every caramba import outside ``if TYPE_CHECKING:`` (a package's
    re-export counts as the module that defines the name)."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "caramba":
                if child.module in PACKAGES:  # a submodule, or a name the package re-exports
                    out.extend((child.lineno, defined_in(child.module, a.name)) for a in child.names)
                else:
                    out.append((child.lineno, child.module))
            elif isinstance(child, ast.Import):
                out.extend((child.lineno, a.name) for a in child.names if a.name.split(".")[0] == "caramba")
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def test_every_core_module_has_a_level():
    assert sorted(module_name(p) for p in core_modules()) == sorted(LEVELS)


@pytest.mark.parametrize("path", core_modules(), ids=module_name)
def test_imports_point_down(path):
    here = module_name(path)
    upward = [f"{path.name}:{line} imports {target} (level {LEVELS[target]}) from level {LEVELS[here]}"
              for line, target in imports(path) if target in LEVELS and LEVELS[target] > LEVELS[here]]
    assert upward == []


def test_an_upward_import_is_found(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from caramba.pipeline import RunSession\n"
                   "from caramba.plugins import Runtime\ndef f():\n    from caramba.graph._build import Builder\n")
    assert imports(bad) == [(4, "caramba.plugins._runtime"), (6, "caramba.graph._build")]
