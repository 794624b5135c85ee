"""Installed distributions registering a name another already has: a conflict naming both.

The later plugin fails, never the one that had the name first; first-party plugins
(caramba-layers, ...) register before every third-party one, so a newcomer cannot take
their names whatever its entry point is called.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''\
from caramba import NodeConfig, hookimpl


class DupeConfig(NodeConfig, kw_only=True):
    """Identity."""


@hookimpl
def caramba_register_layers(registry):
    registry.add("DupeLayer", config=DupeConfig, factory="{module}.plugin:DupeConfig", summary="{module}")
'''

# Named to sort before "layers" (caramba-layers' entry point), registering one of its names.
SQUATTER = '''\
from caramba import NodeConfig, hookimpl


class SquatConfig(NodeConfig, kw_only=True):
    d_model: int


@hookimpl
def caramba_register_layers(registry):
    registry.add("SquatLayer", config=SquatConfig, factory="{module}.plugin:SquatConfig")
    registry.add("RMSNormLayer", config=SquatConfig, factory="{module}.plugin:SquatConfig")
'''


def write_distribution(root: Path, dist: str, version: str, plugin: str = PLUGIN) -> Path:
    module = dist.replace("-", "_")
    folder = root / dist
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text("")
    (folder / module / "plugin.py").write_text(plugin.format(module=module))
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"
        dependencies = ["caramba-core"]

        [project.entry-points.caramba]
        {module} = "{module}.plugin"

        [tool.setuptools]
        packages = ["{module}"]
        """))
    return folder


def venv_sharing_this_environment(path: Path) -> Path:
    """A fresh venv that also sees this interpreter's packages (torch, caramba) through a .pth file.

    ``venv --system-site-packages`` would expose the *base* interpreter's packages, not this
    environment's, when the tests themselves run in a venv.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "_caramba_parent_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    return python


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    """A venv with caramba-dupe-alpha 1.2.0, caramba-dupe-beta 0.3.1 and a squatter on a first-party name."""
    root = tmp_path_factory.mktemp("conflict")
    python = venv_sharing_this_environment(root / "venv")
    folders = [write_distribution(root, "caramba-dupe-alpha", "1.2.0"),
               write_distribution(root, "caramba-dupe-beta", "0.3.1"),
               write_distribution(root, "aaa-squat", "9.9.9", SQUATTER)]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    *map(str, folders)], check=True, capture_output=True, cwd=root)
    return python


def caramba(python: Path, *args: str, strict: bool,
            plugins: str = "caramba_dupe_alpha,caramba_dupe_beta") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARAMBA_PLUGINS": plugins,
           "CARAMBA_STRICT_PLUGINS": "1" if strict else "0"}
    return subprocess.run([str(python), "-m", "caramba", *args], env=env, capture_output=True, text=True)


def test_the_second_plugin_fails_with_a_conflict_naming_both_distributions(python):
    done = caramba(python, "plugins", "--json", strict=False)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    alpha, beta = plugins["caramba_dupe_alpha"], plugins["caramba_dupe_beta"]
    assert (alpha["status"], alpha["components"]) == ("loaded", {"layer": ["DupeLayer"]})
    assert (beta["status"], beta["components"]) == ("failed", {})
    assert beta["distribution"] == "caramba-dupe-beta" and beta["version"] == "0.3.1"
    assert beta["reason"] == (
        "RegistryError: layer 'DupeLayer' is registered twice: "
        "by plugin 'caramba_dupe_alpha' (distribution caramba-dupe-alpha 1.2.0) and "
        "by plugin 'caramba_dupe_beta' (distribution caramba-dupe-beta 0.3.1)  "
        "(uninstall one of the distributions, or block one with -p no:NAME)"
    )


def test_the_layer_keeps_working_from_the_first_distribution(python):
    done = caramba(python, "show", "layer", "DupeLayer", "--json", strict=False)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["plugin"], shown["summary"]) == ("caramba_dupe_alpha", "caramba_dupe_alpha")


def test_strict_mode_exits_3_naming_both_distributions(python):
    done = caramba(python, "plugins", strict=True)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    for part in ("plugin 'caramba_dupe_beta' (caramba-dupe-beta 0.3.1) failed to load",
                 "layer 'DupeLayer' is registered twice",
                 "caramba-dupe-alpha 1.2.0", "-p no:caramba_dupe_beta"):
        assert part in done.stderr, done.stderr


def test_blocking_one_of_them_resolves_the_conflict(python):
    done = caramba(python, "plugins", "-p", "no:caramba_dupe_beta", "--json", strict=True)
    assert done.returncode == 0, done.stderr
    statuses = {p["name"]: p["status"] for p in json.loads(done.stdout)["plugins"]}
    assert statuses == {"caramba_dupe_alpha": "loaded", "caramba_dupe_beta": "blocked"} | {
        n: s for n, s in statuses.items() if not n.startswith("caramba_dupe")}


def test_a_newcomer_taking_a_first_party_name_fails_and_caramba_layers_loads_whole(python):
    done = caramba(python, "plugins", "--json", strict=False, plugins="aaa_squat,layers")
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    squat, layers = plugins["aaa_squat"], plugins["layers"]
    assert layers["status"] == "loaded" and "RMSNormLayer" in layers["components"]["layer"]
    assert (squat["status"], squat["components"]) == ("failed", {})  # rolled back: SquatLayer too
    assert "layer 'RMSNormLayer' is registered twice: by plugin 'layers' (distribution caramba-layers " in (
        squat["reason"])
    assert "by plugin 'aaa_squat' (distribution aaa-squat 9.9.9)" in squat["reason"]
    shown = json.loads(caramba(python, "show", "layer", "RMSNormLayer", "--json", strict=False,
                               plugins="aaa_squat,layers").stdout)
    assert shown["plugin"] == "layers"


def test_strict_plugins_listing_exits_non_zero_on_a_squatter(python):
    done = caramba(python, "plugins", strict=True, plugins="aaa_squat,layers")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "plugin 'aaa_squat' (aaa-squat 9.9.9) failed to load" in done.stderr
    assert "caramba-layers" in done.stderr
