"""Random mutations of valid manifests never produce anything but a CarambaError.

Two kinds of mutation: structural (delete a key, replace a value with one of another
type, misspell a key, add a key, duplicate a list item) on the parsed document written
back as YAML, and textual (delete, insert or replace characters) on the YAML text. A
mutant either loads, and then its dry-run plan works too, or raises a ``CarambaError``;
any other exception is a bug the report would turn into a traceback.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import caramba
from caramba.manifest._source import load_text, to_plain
from caramba.pipeline._runner import plan

HERE = Path(__file__).parent
BASE_TEXT = (HERE / "malformed" / "_base.yml").read_text()
BASE = to_plain(load_text(BASE_TEXT))

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 100), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "x", "${d}", "${nope}", "ToyLinear", "Residual", "trainer.toy", "1e-3", "yes", "[", "$${d}",
                     "${d}-${d}", "targets"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["type", "d_in", "layers",
                                                                                        "ref", "x"]), inner,
                                                                       max_size=3)), max_leaves=6)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in paths(BASE) if p]


def mutate(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "replace":
        parent[last] = value
    elif op == "rename" and isinstance(parent, dict):
        parent[str(last)[::-1] or "k"] = parent.pop(last)
    elif op == "add" and isinstance(parent, dict):
        parent[f"extra_{len(parent)}"] = value
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:
        parent[last] = value
    return doc


def outcome(rt: caramba.Runtime, text: str, overrides: list[str] = ()) -> None:
    try:
        manifest = rt.load_manifest_text(text, filename="fuzz.yml", overrides=overrides)
    except caramba.CarambaError as exc:
        assert str(exc)  # the report renders
        return
    for target in manifest.targets:  # a mutant that loads must also plan
        with contextlib.suppress(caramba.CarambaError):
            plan(manifest, target.name)


def test_unmutated_base_loads(rt):
    rt.load_manifest_text(BASE_TEXT, filename="fuzz.yml")


@pytest.fixture(autouse=True)
def _subnormal_floats():
    """A CPU training run earlier in the session flushes denormals; hypothesis' floats need them."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_flush_denormal(False)


@SETTINGS
@given(path=st.sampled_from(ALL_PATHS), op=st.sampled_from(["delete", "replace", "rename", "add", "duplicate"]),
       value=values)
def test_structural_mutations_raise_only_caramba_errors(rt, path, op, value):
    outcome(rt, yaml.safe_dump(mutate(BASE, path, op, value), sort_keys=False))


@SETTINGS
@given(data=st.data())
def test_text_mutations_raise_only_caramba_errors(rt, data):
    text = BASE_TEXT
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        piece = data.draw(st.sampled_from([":", "-", " ", "\t", "{", "}", "[", "]", "!", "&a", "*a", "'", '"', "#",
                                           "\n", "${", "<<: *a", "~", "?", "|", ">", "%", "@", "`", "\\", "\x00",
                                           "\u00e9", "0x1F", "1e3", ".inf"]))
        if op == "delete":
            text = text[:i] + text[i + 1:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        else:
            text = text[:i] + piece + text[i + 1:]
    outcome(rt, text)


@SETTINGS
@given(path=st.sampled_from(["targets.quick.runs.0.steps", "targets.0.system.config.d_in", "vars.d", "vars",
                             "targets.quick.runs.r.train", "defaults.logging", "targets.-1.name", "name",
                             "targets.quick.runs.0.train.lr.x", "targets[0].data", "targets.5", ".", "a..b"]),
       value=st.sampled_from(["", "1", "-1", "x", "[1, 2]", "{a: 1}", "${d}", "${nope}", "null", "[", "!!python/none",
                              "true", "1e-3"]))
def test_override_mutations_raise_only_caramba_errors(rt, path, value):
    outcome(rt, BASE_TEXT, [f"{path}={value}"])
