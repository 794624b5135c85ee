"""The public/private boundary: plugins import only caramba's curated API.

A plugin package (caramba's own, the template, and what ``caramba new-plugin`` writes) may
import from ``caramba`` (torch-free), ``caramba.nn`` (what layer authors subclass) and
``caramba.testing`` (conformance suites), and only the names in their ``__all__``; from
another plugin, only that plugin's top-level ``__all__``. Everything else is private and may
change in any release.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from caramba.cli._scaffold import new_plugin

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ("caramba", "caramba.nn", "caramba.testing")
FIRST_PARTY = ("caramba_layers", "caramba_trainers", "caramba_infer", "caramba_kernels", "caramba_agents")
PACKAGES = {
    "caramba-layers": "caramba_layers", "caramba-trainers": "caramba_trainers", "caramba-infer": "caramba_infer",
    "caramba-kernels": "caramba_kernels", "caramba-agents": "caramba_agents",
    "plugins-template": "caramba_plugin_example",
}


def reach_ins(folder: Path, own: str) -> list[str]:
    """Every import from caramba or another plugin that is not its public API, as ``file:line  what``."""
    out = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                pairs = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                pairs = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in pairs:
                top = module.split(".")[0]
                if top == own or (top != "caramba" and top not in FIRST_PARTY):
                    continue
                if not public(module, name):
                    what = module + (f" import {name}" if name else "")
                    out.append(f"{path.relative_to(folder)}:{node.lineno}  {what}")
    return out


def public(module: str, name: str | None) -> bool:
    top = module.split(".")[0]
    if top == "caramba" and module.startswith("caramba.testing"):
        return True
    allowed = PUBLIC if top == "caramba" else (top,)
    if module not in allowed:
        return False
    return name is None or name in importlib.import_module(module).__all__


@pytest.mark.parametrize("folder", [f for f in PACKAGES if (ROOT / f / "src").is_dir()])
def test_plugin_packages_import_only_the_public_api(folder):
    own = PACKAGES[folder]
    found = reach_ins(ROOT / folder / "src", own)
    if (ROOT / folder / "tests").is_dir():
        found += reach_ins(ROOT / folder / "tests", own)
    assert found == []


def test_a_new_plugin_imports_only_the_public_api(tmp_path):
    out = new_plugin("caramba-plugin-fresh", kind="all", dest=tmp_path)
    assert reach_ins(out, "caramba_plugin_fresh") == []


def test_a_reach_in_is_found(tmp_path):
    (tmp_path / "bad.py").write_text("from caramba.graph._modules import NodeModule\nfrom caramba import Runtime\n"
                                     "from caramba import _EXPORTS\nimport caramba_layers.modules.attention\n")
    assert reach_ins(tmp_path, "mine") == ["bad.py:1  caramba.graph._modules import NodeModule",
                                           "bad.py:3  caramba import _EXPORTS",
                                           "bad.py:4  caramba_layers.modules.attention"]
