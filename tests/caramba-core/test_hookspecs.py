"""The hook specifications are the plugin API: every parameter typed, nothing typed ``Any``,
and a registration hook gets a registrar that can only add entries of its kind for its plugin."""

from __future__ import annotations

import inspect
import typing

import pytest

import caramba
from caramba.pipeline._components import RunResult
from caramba.pipeline._session import RunSession
from caramba.plugins import hooks
from caramba.plugins._registry import KINDS, PLURALS, Registrar

SPECS = [fn for name, fn in vars(hooks).items() if name.startswith("caramba_") and callable(fn)]
TYPES = {"Registrar": Registrar, "RunSession": RunSession, "RunResult": RunResult, "Runtime": caramba.Runtime}


def test_there_is_one_registration_hook_per_kind():
    assert {f"caramba_register_{PLURALS[k]}" for k in KINDS} <= {fn.__name__ for fn in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda fn: fn.__name__)
def test_every_hook_parameter_and_result_is_typed_and_none_is_any(spec):
    signature = inspect.signature(spec)
    annotations = [p.annotation for p in signature.parameters.values()] + [signature.return_annotation]
    assert inspect.Parameter.empty not in annotations and inspect.Signature.empty not in annotations
    hints = typing.get_type_hints(spec, globalns={**vars(hooks), **TYPES})
    flat = repr(hints)
    assert "Any" not in flat, flat
    if spec.__name__.startswith("caramba_register_"):
        assert hints == {"registry": Registrar, "return": type(None)}


def test_the_typed_facade_has_no_any_either():
    for name, method in vars(hooks.Hooks).items():
        if callable(method) and not name.startswith("__"):
            hints = typing.get_type_hints(method, globalns={**vars(hooks), **TYPES})
            assert "Any" not in repr(hints), (name, hints)


class Greedy:
    """A plugin that tries to reach past its registrar."""

    seen: list[Registrar] = []

    @caramba.hookimpl
    def caramba_register_layers(self, registry):
        Greedy.seen.append(registry)
        registry.add("GreedyLayer", config=caramba.NodeConfig, factory="m:a")


def test_a_registrar_adds_entries_of_its_kind_in_its_plugins_name_and_nothing_else():
    Greedy.seen.clear()
    rt = caramba.Runtime(autoload=False, plugins=[Greedy()])
    [registrar] = Greedy.seen
    assert registrar.kind == "layer"
    assert rt.get("layer", "GreedyLayer").plugin == "Greedy"
    assert not hasattr(registrar, "get") and not hasattr(registrar, "remove_plugin")
    assert [n for n in dir(registrar) if not n.startswith("_")] == ["add", "kind"]
    with pytest.raises(caramba.RegistryError, match="frozen"):
        registrar.add("LateLayer", factory="m:a")


def test_a_trainers_run_config_is_a_field_of_its_entry():
    from caramba.testing import toy
    from caramba.testing.toy import ToyTrainerRunConfig

    rt = caramba.Runtime(autoload=False, plugins=[toy])
    assert rt.get("trainer", "trainer.toy").run_config is ToyTrainerRunConfig
    assert rt.get("layer", "ToyLinear").run_config is None


def test_only_a_trainer_declares_a_run_config():
    class Wrong:
        @caramba.hookimpl
        def caramba_register_layers(self, registry):
            registry.add("OddLayer", factory="m:a", run_config=caramba.Config)

    rt = caramba.Runtime(autoload=False, plugins=[Wrong()], strict=False)
    [info] = rt.plugins
    assert info.status == "failed" and "only a trainer has a run_config" in info.reason
