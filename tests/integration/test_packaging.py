"""Each package's version has one source (``__version__``), which its installed metadata reports."""

from __future__ import annotations

import importlib
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"caramba-core": "caramba", "caramba-layers": "caramba_layers", "caramba-trainers": "caramba_trainers",
            "caramba-infer": "caramba_infer"}


@pytest.mark.parametrize("dist, module", PACKAGES.items())
def test_version_is_single_sourced_from_the_package(dist, module):
    project = tomllib.loads((ROOT / dist / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": f"{module}.__version__"}
    assert metadata.version(dist) == importlib.import_module(module).__version__


def test_quickstart_installs_the_runtime_set_and_test_the_dev_set():
    runtime = (ROOT / "requirements.txt").read_text().split()
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev
    for tool in ("transformers", "wandb", "mypy", "hypothesis", "nox", "pytest", "ruff"):
        assert not any(line.lower().startswith(tool) for line in runtime), tool
        assert f"\n{tool}==" in dev, tool
    assert "scripts/bootstrap\n" in (ROOT / "scripts" / "quickstart").read_text()
    assert "scripts/bootstrap --dev\n" in (ROOT / "scripts" / "test").read_text()
