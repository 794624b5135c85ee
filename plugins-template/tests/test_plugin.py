"""Packaging: the entry point, the version pin, and registration that never imports torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from caramba import Runtime

from caramba_plugin_example import plugin

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_the_entry_point_names_the_plugin_module():
    assert PYPROJECT["project"]["entry-points"]["caramba"] == {
        "caramba_plugin_example": "caramba_plugin_example.plugin",
    }


def test_caramba_core_is_pinned_to_one_compatible_release_line():
    # 0.Y.z releases keep the plugin API of 0.Y; from 1.0 on, X.y.z keep that of X.
    [pin] = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("caramba-core")]
    major, minor, upper = re.fullmatch(r"caramba-core>=(\d+)\.(\d+),<([\d.]+)", pin).groups()
    assert upper == (f"0.{int(minor) + 1}" if major == "0" else str(int(major) + 1))


def test_registers_its_components_under_its_own_name():
    rt = Runtime(autoload=False, plugins=[plugin])
    [info] = rt.plugins
    assert info.status == "loaded"
    assert info.components == {
        # >>> layer
        "layer": ["ExampleLayer"],
        # <<< layer
        # >>> topology
        "topology": ["ExampleTopology"],
        # <<< topology
        # >>> sink
        "sink": ["example_csv"],
        # <<< sink
    }
    for names in info.components.values():
        for name in names:
            assert rt.get(next(k for k, v in info.components.items() if name in v), name).summary


def test_registration_does_not_import_torch():
    code = ("import sys\nfrom caramba import Runtime\nfrom caramba_plugin_example import plugin\n"
            "Runtime(autoload=False, plugins=[plugin])\nassert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
