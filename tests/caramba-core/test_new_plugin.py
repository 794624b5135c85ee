"""``caramba new-plugin``: names substituted, kinds trimmed, and the result passes its own tests."""

from __future__ import annotations

import filecmp
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from caramba.cli import main
from caramba.cli._scaffold import _FENCE as FENCE
from caramba.cli._scaffold import KIND_FILES, PluginNames, new_plugin, render, template_root
from caramba.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "plugins-template"
CACHES = {"__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}


def tree(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and not CACHES & set(p.relative_to(root).parts) and p.suffix != ".pyc"
        and not any(part.endswith(".egg-info") for part in p.relative_to(root).parts)
    )


def texts(root: Path) -> dict[str, str]:
    return {rel: (root / rel).read_text(encoding="utf-8") for rel in tree(root)}


def test_bundled_template_is_identical_to_plugins_template():
    bundled = template_root()
    assert tree(bundled) == tree(TEMPLATE), "run: nox -s sync_template"
    differ = [rel for rel in tree(TEMPLATE) if not filecmp.cmp(TEMPLATE / rel, bundled / rel, shallow=False)]
    assert not differ, f"{differ} differ from plugins-template/ (run: nox -s sync_template)"


def test_every_template_name_is_replaced_and_no_fence_survives(tmp_path):
    out = new_plugin("caramba-plugin-low-rank", kind="all", dest=tmp_path)
    assert out == tmp_path / "caramba-plugin-low-rank"
    files = texts(out)
    assert "src/caramba_plugin_low_rank/plugin.py" in files
    joined = "\n".join([*files, *files.values()])
    for leftover in ("caramba_plugin_example", "caramba-plugin-example", "ExampleLayer", "ExampleTopology",
                     "ExampleCsvSink", "example_csv", "plugins-template"):
        assert leftover not in joined, leftover
    fences = [line for text in files.values() for line in text.splitlines() if FENCE.match(line)]
    assert fences == []
    plugin = files["src/caramba_plugin_low_rank/plugin.py"]
    assert 'registry.add("LowRankLayer", config=LowRankLayerConfig' in plugin
    assert 'registry.add("LowRankTopology"' in plugin
    assert 'registry.add("low_rank_csv", factory="caramba_plugin_low_rank.sink:LowRankCsvSink"' in plugin
    assert 'caramba_plugin_low_rank = "caramba_plugin_low_rank.plugin"' in files["pyproject.toml"]


@pytest.mark.parametrize("kind", ["layer", "topology", "sink"])
def test_one_kind_keeps_only_that_components_files_and_registration(tmp_path, kind):
    out = new_plugin("caramba-plugin-solo", kind=kind, dest=tmp_path)
    names = PluginNames("caramba-plugin-solo")
    expected = {names.substitute(p) for p in KIND_FILES[kind]}
    dropped = {names.substitute(p) for k, paths in KIND_FILES.items() if k != kind for p in paths}
    files = set(tree(out))
    assert expected <= files and not dropped & files
    plugin = (out / "src/caramba_plugin_solo/plugin.py").read_text()
    hooks = re.findall(r"^def (caramba_register_\w+)", plugin, re.M)
    assert hooks == [{"layer": "caramba_register_layers", "topology": "caramba_register_topologies",
                      "sink": "caramba_register_sinks"}[kind]]
    compile(plugin, "plugin.py", "exec")
    pyproject = (out / "pyproject.toml").read_text()
    assert ('"torch>=2.4"' in pyproject) == (kind != "sink")  # a sink-only plugin needs no torch


def test_pyproject_pins_the_running_core_to_its_release_line(tmp_path):
    from importlib import metadata

    major, minor = (int(p) for p in metadata.version("caramba-core").split(".")[:2])
    upper = f"0.{minor + 1}" if major == 0 else str(major + 1)
    pyproject = (new_plugin("caramba-pin", dest=tmp_path) / "pyproject.toml").read_text()
    assert f'"caramba-core>={major}.{minor},<{upper}"' in pyproject


def test_names_are_derived_from_the_distribution_name():
    n = PluginNames("Caramba_Plugin_Flash-Attn")
    assert (n.dist, n.module, n.short, n.camel) == (
        "caramba-plugin-flash-attn", "caramba_plugin_flash_attn", "flash_attn", "FlashAttn")
    assert PluginNames("my-layers").camel == "MyLayers"
    assert n.substitute("for example, ExampleLayer and example_csv; Examples") == (
        "for example, FlashAttnLayer and flash_attn_csv; Examples")


@pytest.mark.parametrize("name", ["9lives", "bad name", "caramba-core", "caramba-layers", "trailing-", ""])
def test_bad_names_are_usage_errors_with_a_hint(tmp_path, name):
    with pytest.raises(UsageError) as err:
        new_plugin(name, dest=tmp_path)
    assert err.value.hint and err.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_unknown_kind_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown plugin kind"):
        new_plugin("caramba-x", kind="optimizer", dest=tmp_path)


def test_refuses_to_write_into_a_non_empty_folder(tmp_path):
    (tmp_path / "caramba-x").mkdir()
    (tmp_path / "caramba-x" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        new_plugin("caramba-x", dest=tmp_path)
    assert (tmp_path / "caramba-x" / "notes.txt").read_text() == "mine"


def test_fences_keep_blocks_of_any_chosen_kind_and_reject_mismatches():
    text = "a\n# >>> layer topology\nb\n# <<< layer topology\n<!-- >>> sink -->\nc\n<!-- <<< sink -->\nd\n"
    assert render(text, {"topology"}) == "a\nb\nd\n"
    assert render(text, {"sink"}) == "a\nc\nd\n"
    assert render("a\n<!-- >>> template -->\nhow to copy by hand\n<!-- <<< template -->\n", {"layer", "sink"}) == "a\n"
    with pytest.raises(ValueError, match="closes no matching"):
        render("# >>> layer\nx\n# <<< sink\n", {"layer"})
    with pytest.raises(ValueError, match="never closed"):
        render("# >>> layer\nx\n", {"layer"})
    with pytest.raises(ValueError, match="unknown kind"):
        render("# >>> optimizer\nx\n# <<< optimizer\n", {"layer"})


def test_cli_writes_the_package_and_says_how_to_install(tmp_path, capsys):
    assert main(["new-plugin", "caramba-plugin-cli", "--kind", "sink", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'caramba-plugin-cli'}" in out and "pip install -e" in out
    assert main(["new-plugin", "caramba-core", "--dest", str(tmp_path)]) == 2
    assert "is the name of a caramba distribution" in capsys.readouterr().err


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


@pytest.mark.slow
def test_generated_plugins_install_list_and_pass_their_own_tests_unmodified(tmp_path):
    made = {kind: f"caramba-plugin-gen-{kind}" for kind in ("layer", "topology", "sink")}
    for kind, name in made.items():
        assert main(["new-plugin", name, "--kind", kind, "--dest", str(tmp_path)]) == 0
    python = venv_sharing_this_environment(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    *[arg for name in made.values() for arg in ("-e", str(tmp_path / name))]],
                   check=True, capture_output=True)
    modules = [name.replace("-", "_") for name in made.values()]
    env = {**os.environ, "CARAMBA_PLUGINS": ",".join(modules), "CARAMBA_STRICT_PLUGINS": "1"}
    listing = subprocess.run([str(python), "-m", "caramba", "plugins", "--json"], env=env,
                             check=True, capture_output=True, text=True).stdout
    loaded = {p["distribution"]: p for p in json.loads(listing)["plugins"] if p["status"] == "loaded"}
    assert loaded["caramba-plugin-gen-layer"]["components"] == {"layer": ["GenLayerLayer"]}
    assert loaded["caramba-plugin-gen-topology"]["components"] == {"topology": ["GenTopologyTopology"]}
    assert loaded["caramba-plugin-gen-sink"]["components"] == {"sink": ["gen_sink_csv"]}
    for name in made.values():
        # Its example manifest validates against the installed caramba-layers and caramba-trainers.
        env_all = {**os.environ, "CARAMBA_PLUGINS": ""}
        done = subprocess.run([str(python), "-m", "caramba", "validate", "examples/digits.yml"], cwd=tmp_path / name,
                              env=env_all, capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        done = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path / name,
                              env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{name}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        assert re.search(r"\d+ passed", done.stdout) and "skipped" not in done.stdout, done.stdout[-500:]


def test_the_cli_scaffolds_every_kind_at_once(tmp_path, capsys):
    from caramba.cli import main

    assert main(["new-plugin", "caramba-plugin-every", "--kind", "all", "--dest", str(tmp_path)]) == 0
    package = tmp_path / "caramba-plugin-every" / "src" / "caramba_plugin_every"
    assert {p.name for p in package.glob("*.py")} >= {"plugin.py", "layer.py", "topology.py", "sink.py"}
    assert "wrote" in capsys.readouterr().out
