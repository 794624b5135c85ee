"""Fixtures shared by the plugin's tests.

Tests load the plugin explicitly (``Runtime(autoload=False, plugins=[...])``) so they do not
depend on what else is installed. ``caramba.testing.toy`` is caramba-core's own reference
plugin; its small system, data set, objective and trainer let a test run a real pipeline
around this plugin's components without any other caramba package.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from caramba import Runtime
from caramba.testing import toy

from caramba_plugin_example import plugin


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(autoload=False, plugins=[plugin, toy])


@pytest.fixture
def toy_manifest():
    """Manifest text: fit ``model`` (a node config) to a 4 → 1 regression set with plain SGD."""

    def make(model: dict[str, Any], *, steps: int = 40, sinks: tuple[str, ...] = ()) -> str:
        manifest = {
            "version": 2,
            "name": "plugin_test",
            "defaults": {"logging": {"sinks": list(sinks)}},
            "targets": [{
                "type": "experiment",
                "name": "fit",
                "data": {"ref": "dataset.toy_regression", "config": {"d_in": 4, "d_out": 1, "n": 128}},
                "system": {"ref": "system.toy", "config": {"d_in": 4, "model": model}},
                "objective": {"ref": "objective.toy_mse", "config": {}},
                "trainer": {"ref": "trainer.toy", "config": {}},
                "runs": [{"id": "r0", "seed": 0, "steps": steps, "train": {"lr": 0.05, "batch_size": 32}}],
            }],
        }
        return json.dumps(manifest, indent=2)  # JSON is YAML: caramba reads either

    return make

