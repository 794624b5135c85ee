"""The public surface: ``caramba.__all__``, lazy top-level names, typing, lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import caramba

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    # errors
    "CarambaError", "CheckpointError", "Location", "ManifestError", "PluginError", "Problem", "RegistryError",
    "RunError", "UsageError", "did_you_mean", "human_bytes", "memory_budget", "DataError", "DependencyError",
    "missing_dependency", "require", "KernelBackend", "select_kernels", "ProcessConfig", "plan",
    # configs, shapes and the run context
    "Config", "PolymorphicConfig", "Scope", "NodeConfig", "TopologyConfig", "EmbedderConfig", "BenchmarkConfig",
    "VerifierConfig", "Shape", "ShapeError", "Dim", "UNKNOWN", "expect_last", "Context", "AuxLoss",
    # plugins
    "Runtime", "PluginInfo", "Entry", "Registrar", "Registry", "hookimpl", "hookspec",
    # the pipeline's base classes and helpers
    "Manifest", "RunSession", "TargetSession", "Trainer", "RunResult", "Verifier", "VerifyResult", "Benchmark",
    "BenchmarkResult", "ArtifactWriter", "Sink", "JsonlSink", "atomic_write_bytes", "atomic_write_json",
    "atomic_write_text", "run_target",
    "__version__",
}


def test_all_equals_the_public_names():
    for name in caramba.__all__:
        getattr(caramba, name)  # every lazy name resolves
    public = {n for n, v in vars(caramba).items()
              if (not n.startswith("_") or n == "__version__") and not isinstance(v, ModuleType)}
    public -= {"annotations", "importlib", "TYPE_CHECKING", "Any"}  # the module's own imports
    assert set(caramba.__all__) == public == EXPECTED
    assert caramba.__all__ == sorted(caramba.__all__)


def test_the_torch_side_api_is_caramba_nn():
    import caramba.nn

    assert set(caramba.nn.__all__) == {"NodeModule", "TopologyModule", "Context", "AuxLoss", "DecodeStep",
                                       "KVCacheBase", "StaticKVCache", "RecurrentState", "Builder"}
    assert caramba.nn.Context is caramba.Context


def test_version_comes_from_the_installed_distribution():
    from importlib import metadata

    assert caramba.__version__ == metadata.version("caramba-core")


@pytest.mark.parametrize(("version", "pin"), [
    ("0.1.0", "caramba-core>=0.1,<0.2"), ("0.3.7", "caramba-core>=0.3,<0.4"), ("1.4.2", "caramba-core>=1.4,<2"),
])
def test_a_plugin_pins_the_compatible_release_line(version, pin):
    from caramba.plugins._requirements import api_pin

    assert api_pin(version) == pin


def test_first_party_packages_pin_the_release_line_of_this_core():
    import tomllib

    from caramba.plugins._requirements import api_pin

    line = api_pin(caramba.__version__).removeprefix("caramba-core")
    for folder in ("caramba-layers", "caramba-trainers", "caramba-infer", "caramba-kernels", "caramba-agents",
                   "plugins-template"):
        pyproject = ROOT / folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        first_party = [d for d in deps if d.startswith(("caramba-core", "caramba-layers", "caramba-trainers"))]
        assert first_party and all(d.endswith(line) for d in first_party), (folder, first_party)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Runtiem'"):
        caramba.Runtiem  # noqa: B018


def test_error_tree_and_exit_codes():
    assert issubclass(caramba.RegistryError, caramba.PluginError)
    codes = {cls.__name__: cls.exit_code for cls in (caramba.ManifestError, caramba.UsageError,
                                                      caramba.CheckpointError, caramba.PluginError,
                                                      caramba.RegistryError, caramba.RunError)}
    assert codes == {"ManifestError": 2, "UsageError": 2, "CheckpointError": 2, "PluginError": 3,
                     "RegistryError": 3, "RunError": 1}
    assert all(issubclass(getattr(caramba, n), caramba.CarambaError) for n in codes)


def test_importing_caramba_imports_neither_torch_nor_the_manifest_loader():
    code = ("import sys, caramba; caramba.hookimpl; caramba.NodeConfig\n"
            "bad = [m for m in ('torch', 'numpy', 'yaml', 'caramba.manifest._load') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="mypy not installed")
def test_core_and_a_plugin_authors_code_type_check_under_mypy_strict():
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    done = subprocess.run([mypy], cwd=ROOT / "caramba-core", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    example = Path(__file__).with_name("typing_example.py")
    done = subprocess.run([mypy, "--strict", "--cache-dir", str(ROOT / ".cache" / "mypy"), str(example)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None, reason="ruff not installed")
def test_core_passes_ruff():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    paths = ["caramba-core/src/caramba", "tests/caramba-core", "benchmarks/cli_cold_start.py"]
    done = subprocess.run([ruff, "check", "--force-exclude", "--exclude", "caramba-core/src/caramba/cli/_scaffold.py",
                           "--exclude", "tests/caramba-core/test_new_plugin.py",
                           "--exclude", "tests/caramba-core/test_plugin_conflict.py", *paths],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
