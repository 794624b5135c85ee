"""Plugin loading: isolation of broken plugins, strict mode, blocking, discovery, registries."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

import caramba
from caramba.plugins import _discovery as discovery
from caramba.testing import toy

GOOD = '''
import msgspec
from caramba import NodeConfig, hookimpl

class ScaleConfig(NodeConfig, kw_only=True):
    d_model: int

@hookimpl
def caramba_register_layers(registry):
    registry.add("ScaleLayer", config=ScaleConfig, factory="good_plugin_mod:Scale", summary="scale")
'''
BROKEN = "raise ImportError('boom: a dependency is missing')\n"
BAD_HOOK = '''
from caramba import hookimpl

@hookimpl
def caramba_register_layer(registry):  # misspelt hook name
    pass
'''


@pytest.fixture
def site(tmp_path: Path, make_dist) -> Path:
    """A folder on PYTHONPATH holding a good, a broken and a misspelt plugin distribution."""
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "good-plugin", "1.2.0", "good_plugin_mod", GOOD, {"good": "good_plugin_mod"})
    make_dist(site, "broken-plugin", "0.3.1", "broken_plugin_mod", BROKEN, {"broken": "broken_plugin_mod"})
    make_dist(site, "misspelt-plugin", "0.1.0", "misspelt_mod", BAD_HOOK, {"misspelt": "misspelt_mod"})
    return site


def caramba_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "caramba", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def listing(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(done.stdout)["plugins"]}


def test_broken_plugin_is_listed_as_failed_while_every_other_plugin_loads(site, clean_env):
    env = clean_env(PYTHONPATH=str(site))
    done = caramba_cli(["plugins", "--json"], env)
    assert done.returncode == 0, done.stderr
    plugins = listing(done)
    installed = {ep.name for ep in metadata.entry_points(group="caramba")} | {"good", "broken", "misspelt"}
    assert set(plugins) >= installed - {"broken", "misspelt"}  # nothing else went missing
    broken = plugins["broken"]
    assert broken["status"] == "failed"
    assert broken["reason"] == "ImportError: boom: a dependency is missing"
    assert (broken["distribution"], broken["version"]) == ("broken-plugin", "0.3.1")
    assert plugins["misspelt"]["status"] == "failed"
    assert plugins["misspelt"]["reason"] == ("unknown hook 'caramba_register_layer': "
                                             "did you mean 'caramba_register_layers'?")
    good = plugins["good"]
    assert (good["status"], good["distribution"], good["version"]) == ("loaded", "good-plugin", "1.2.0")
    assert good["components"] == {"layer": ["ScaleLayer"]}
    others = [p for name, p in plugins.items() if name not in ("good", "broken", "misspelt")]
    assert all(p["status"] != "failed" for p in others), others


def test_plugins_text_listing_shows_the_failure_reason(site, clean_env):
    done = caramba_cli(["plugins"], clean_env(PYTHONPATH=str(site), CARAMBA_PLUGINS="good,broken"))
    assert done.returncode == 0
    assert "broken  broken-plugin 0.3.1  [failed: ImportError: boom: a dependency is missing]" in done.stdout
    assert "good  good-plugin 1.2.0  [loaded]" in done.stdout


def test_strict_mode_makes_a_broken_plugin_exit_3(site, clean_env):
    done = caramba_cli(["plugins", "--json"], clean_env(PYTHONPATH=str(site), CARAMBA_STRICT_PLUGINS="1",
                                                        CARAMBA_PLUGINS="good,broken"))
    assert done.returncode == 3
    assert "plugin 'broken' (broken-plugin 0.3.1) failed to load: ImportError: boom" in done.stderr
    assert "Traceback" not in done.stderr


def test_blocking_the_broken_plugin_satisfies_strict_mode(site, clean_env):
    env = clean_env(PYTHONPATH=str(site), CARAMBA_STRICT_PLUGINS="1", CARAMBA_PLUGINS="good,broken")
    done = caramba_cli(["-p", "no:broken", "plugins", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert listing(done)["broken"] == {**listing(done)["broken"], "status": "blocked",
                                       "reason": "blocked by -p no:broken"}


def test_caramba_plugins_env_selects_and_autoload_switch_disables(site, clean_env):
    only = listing(caramba_cli(["plugins", "--json"], clean_env(PYTHONPATH=str(site), CARAMBA_PLUGINS="good")))
    assert only["good"]["status"] == "loaded"
    assert only["broken"]["status"] == "blocked" and only["broken"]["reason"] == "not in CARAMBA_PLUGINS"
    none = caramba_cli(["plugins", "--json"], clean_env(PYTHONPATH=str(site), CARAMBA_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert json.loads(none.stdout) == {"plugins": []}


def test_manifest_requires_fails_when_the_plugin_of_an_installed_distribution_failed(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CARAMBA_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("CARAMBA_PLUGINS", "broken")
    rt = caramba.Runtime(plugins=[toy])
    assert rt.check_requires(["broken-plugin>=0.3"]) == [
        "broken-plugin>=0.3 is installed but its plugin 'broken' is failed: ImportError: boom: a dependency is missing"]
    assert rt.check_requires(["broken-plugin>=0.4"]) == [
        "broken-plugin 0.3.1 is installed but the manifest requires broken-plugin>=0.4"]
    assert rt.check_requires(["caramba-core>=0.1,<1"]) == []


def test_a_manifest_requiring_a_failed_plugin_says_it_failed_and_why(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CARAMBA_STRICT_PLUGINS", raising=False)
    monkeypatch.setenv("CARAMBA_PLUGINS", "broken")
    rt = caramba.Runtime(plugins=[toy])
    with pytest.raises(caramba.ManifestError) as info:
        rt.load_manifest_text("version: 2\nrequires: [broken-plugin>=0.3]\n", filename="m.yml")
    [problem] = info.value.problems
    assert problem.message.endswith("is failed: ImportError: boom: a dependency is missing")
    assert problem.hint.startswith("the plugin is installed but failed to load")
    assert "install the plugin distribution" not in problem.hint


def test_discovery_agrees_with_importlib_metadata(site):
    path = [str(site), *sys.path]
    for group in ("caramba", "console_scripts"):
        ours = {(ep.dist.name, ep.name, ep.value) for ep in discovery.entry_points(group, path)}
        theirs = {(ep.dist.metadata["Name"], ep.name, ep.value)
                  for ep in metadata.distributions(path=path) for ep in ep.entry_points if ep.group == group}
        # importlib.metadata.distributions() does not dedupe; the first distribution of a name wins in both
        first = {}
        for dist in metadata.distributions(path=path):
            first.setdefault(discovery.normalize(dist.metadata["Name"]), dist)
        theirs = {(d.metadata["Name"], ep.name, ep.value) for d in first.values() for ep in d.entry_points
                  if ep.group == group}
        assert ours == theirs, group
    found = discovery.find_distribution("Good_Plugin", path)
    assert found is not None and (found.name, found.version) == ("good-plugin", "1.2.0")


def test_embedding_without_entry_points_loads_validates_and_builds_from_a_string():
    import torch

    text = """
version: 2
targets:
  - name: t
    data: dataset.toy_regression
    system:
      ref: system.toy
      config:
        d_in: 4
        model:
          type: ToySequential
          layers:
            - {type: ToyLinear, d_in: 4, d_out: 3}
            - {type: ToyLinear, d_in: 3, d_out: 2}
    objective: objective.toy_mse
    trainer: trainer.toy
"""
    rt = caramba.Runtime(autoload=False, plugins=[toy])
    assert [p.name for p in rt.plugins] == ["caramba.testing.toy"]
    manifest = rt.load_manifest_text(text)
    model_cfg = manifest.target().system.config.model
    module = rt.build(model_cfg, "model")
    assert module.layers[1].node_path == "model.layers.1"
    y = module(torch.ones(5, 4), caramba.Context())
    assert y.shape == (5, 2)
    assert sum(p.numel() for p in module.parameters()) == model_cfg.num_params() == 4 * 3 + 3 + 3 * 2 + 2


def test_duplicate_registration_names_both_plugins_and_rolls_the_second_back():
    class First:
        @caramba.hookimpl
        def caramba_register_layers(self, registry):
            registry.add("Dup", config=toy.ToyLinearConfig, factory="m:a")

    class Second:
        @caramba.hookimpl
        def caramba_register_layers(self, registry):
            registry.add("Other", config=toy.ToyLinearConfig, factory="m:b")
            registry.add("Dup", config=toy.ToyLinearConfig, factory="m:c")

    rt = caramba.Runtime(autoload=False, plugins=[First(), Second()], strict=False)
    first, second = rt.plugins
    assert first.status == "loaded" and second.status == "failed"
    assert second.reason == ("RegistryError: layer 'Dup' is registered twice: by plugin 'First' and by plugin 'Second'"
                             "  (uninstall one of the distributions, or block one with -p no:NAME)")
    assert rt.registry("layer").names() == ["Dup"]  # 'Other' was rolled back with its plugin
    with pytest.raises(caramba.PluginError):
        caramba.Runtime(autoload=False, plugins=[First(), Second()], strict=True)


def test_registries_are_frozen_after_loading_and_lookups_suggest():
    rt = caramba.Runtime(autoload=False, plugins=[toy])
    with pytest.raises(caramba.RegistryError, match="frozen"):
        rt.registry("layer").add("Late", factory="m:a")
    with pytest.raises(caramba.CarambaError) as info:
        rt.get("layer", "ToyLinaer")
    assert info.value.exit_code == 2 and info.value.hint == "did you mean 'ToyLinear'?"
    with pytest.raises(caramba.UsageError, match="unknown component kind 'layers'"):
        rt.registry("layers")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factory": "no_colon"}, "factory must be 'module:attr'"),
        ({"factory": "m:a", "config": dict}, "config must be a caramba.Config subclass"),
    ],
)
def test_bad_registrations_fail_their_plugin(kwargs, message):
    class Plugin:
        @caramba.hookimpl
        def caramba_register_layers(self, registry):
            registry.add("X", **kwargs)

    rt = caramba.Runtime(autoload=False, plugins=[Plugin()], strict=False)
    assert rt.plugins[0].status == "failed" and message in rt.plugins[0].reason


def test_config_with_unresolvable_annotation_is_reported_not_raised(monkeypatch):
    module = ModuleType("unresolvable")
    monkeypatch.setitem(sys.modules, "unresolvable", module)
    exec("from __future__ import annotations\nfrom caramba import NodeConfig, hookimpl\n"
         "class C(NodeConfig, kw_only=True):\n    width: Missing\n"
         "@hookimpl\ndef caramba_register_layers(registry):\n    registry.add('C', config=C, factory='m:a')\n",
         module.__dict__)
    rt = caramba.Runtime(autoload=False, plugins=[module])
    with pytest.raises(caramba.ManifestError) as info:
        rt.parse(caramba.NodeConfig, {"type": "C", "width": 1})
    assert str(info.value.problems[0]) == (
        "<manifest>  <root>  the fields of C (C) cannot be resolved: NameError: name 'Missing' is not defined  "
        "(this is a bug in the plugin that registered it; please report it)")


def test_configure_hook_is_historic_and_sees_the_frozen_runtime():
    seen = []

    class Plugin:
        @caramba.hookimpl
        def caramba_configure(self, runtime):
            seen.append(runtime.registry("layer")._frozen)

    caramba.Runtime(autoload=False, plugins=[Plugin()])
    assert seen == [True]


def test_two_distributions_claiming_one_entry_point_name_fail_the_second(tmp_path, make_dist, clean_env):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "alpha-plugin", "1.0", "alpha_mod", GOOD, {"same": "alpha_mod"})
    make_dist(site, "beta-plugin", "2.0", "beta_mod", GOOD, {"same": "beta_mod"})
    done = caramba_cli(["plugins", "--json"], clean_env(PYTHONPATH=str(site), CARAMBA_PLUGINS="same"))
    rows = [p for p in json.loads(done.stdout)["plugins"] if p["name"] == "same"]
    assert [(p["distribution"], p["status"]) for p in rows] == [("alpha-plugin", "loaded"), ("beta-plugin", "failed")]
    assert rows[1]["reason"] == ("entry-point name 'same' is already taken by alpha-plugin 1.0; "
                                 "rename one of the entry points")


def test_validate_warns_about_a_failed_plugin_and_still_works(site, clean_env, tmp_path):
    (tmp_path / "empty.yml").write_text("version: 2\n")
    done = caramba_cli(["validate", str(tmp_path / "empty.yml")],
                       clean_env(PYTHONPATH=str(site), CARAMBA_PLUGINS="good,broken"))
    assert done.returncode == 0
    assert done.stdout == f"{tmp_path / 'empty.yml'}: valid (0 target(s): none)\n"
    assert done.stderr == ("warning: plugin 'broken' failed to load: ImportError: boom: a dependency is missing  "
                           "(caramba plugins shows why)\n")
