"""Fixtures for the core's tests: runtimes with the toy plugin and the shape-rules plugin."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

import caramba
from caramba.testing import toy

HERE = Path(__file__).parent


def load_local(name: str) -> ModuleType:
    """Import ``tests/caramba-core/<name>.py`` as the top-level module ``name``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def shapes_plugin() -> ModuleType:
    return load_local("shapes_plugin")


@pytest.fixture(scope="session")
def rt(shapes_plugin: ModuleType) -> caramba.Runtime:
    """A runtime with the toy plugin and the shape-rules plugin, no entry points."""
    return caramba.Runtime(autoload=False, plugins=[toy, shapes_plugin], strict=True)


@pytest.fixture
def clean_env():
    """``clean_env(**extra)``: an environment for a ``caramba`` subprocess, free of the caller's
    ``CARAMBA_*`` switches (CI sets ``CARAMBA_STRICT_PLUGINS=1``)."""

    def make(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARAMBA_")}
        env.update(extra)
        return env

    return make


@pytest.fixture
def make_dist():
    """``make_dist(site, dist, version, module, source, entry_points)``: see :func:`write_distribution`."""
    return write_distribution


def write_distribution(site: Path, dist: str, version: str, module: str, source: str,
                       entry_points: dict[str, str]) -> None:
    """An installed distribution as ``importlib.metadata`` and pip see it: a module and its dist-info."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[caramba]\n{lines}")
