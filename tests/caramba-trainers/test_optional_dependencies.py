"""A missing optional package is one line naming the package and the extra, exit 2, found at validate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import caramba
from caramba import DependencyError, require
from caramba.cli import main

PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets"


@pytest.mark.parametrize("preset, module, message", [
    ("mlp_classifier", "sklearn", "dataset.digits needs scikit-learn, which is not installed"),
    ("diffusion_vector", "sklearn", "dataset.diffusion_vector with a digits source needs scikit-learn, which is "
                                    "not installed"),
    ("graph_node_classification", "networkx", "dataset.karate needs networkx, which is not installed"),
])
def test_validate_names_the_missing_package_and_its_extra(monkeypatch, capsys, preset, module, message):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    with pytest.raises(caramba.ManifestError) as info:
        caramba.Runtime().load_manifest(str(PRESETS / f"{preset}.yml"))
    found = {(p.message, p.hint) for p in info.value.problems}
    assert found == {(message, "pip install 'caramba-trainers[datasets]'")}
    assert main(["validate", str(PRESETS / f"{preset}.yml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_building_the_dataset_without_the_package_is_a_dependency_error(monkeypatch):
    from caramba_trainers.data.supervised import DigitsDataset
    from caramba_trainers.specs import DigitsConfig

    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(DependencyError) as info:
        DigitsDataset(DigitsConfig())
    assert info.value.exit_code == 2
    assert str(info.value) == ("dataset.digits needs scikit-learn, which is not installed  "
                               "(pip install 'caramba-trainers[datasets]')")


@pytest.mark.parametrize("sink, module, extra", [("wandb", "wandb", "wandb"),
                                                 ("tensorboard", "tensorboard", "tensorboard")])
def test_sinks_without_their_package_name_the_extra(monkeypatch, tmp_path, sink, module, extra):
    from caramba_trainers.sinks import TensorBoardSink, WandbSink

    monkeypatch.setitem(sys.modules, module, None)
    cls = {"wandb": WandbSink, "tensorboard": TensorBoardSink}[sink]
    with pytest.raises(DependencyError, match=f"pip install 'caramba-trainers\\[{extra}\\]'"):
        cls(session=None)


def test_require_imports_what_is_there_and_shows_a_broken_inner_import(monkeypatch, tmp_path):
    assert require("json", package="json", extra="-", needed_by="test").dumps([1]) == "[1]"
    (tmp_path / "half_installed.py").write_text("import a_package_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_package_that_is_not_there"):
        # installed, but broken inside: the real error shows, not "install half_installed"
        require("half_installed", package="half-installed", extra="-", needed_by="test")
