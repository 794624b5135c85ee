"""plugins-template/ passes its own test suite, run the way a plugin author runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "plugins-template"


@pytest.mark.slow  # over 10 s on 2 cores
def test_the_template_passes_its_own_tests():
    # Its tests import caramba_plugin_example from src/, as an editable install would.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TEMPLATE / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=TEMPLATE, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 30 and "skipped" not in done.stdout, done.stdout[-1000:]


def test_the_template_declares_every_component_kind_it_ships():
    plugin = (TEMPLATE / "src" / "caramba_plugin_example" / "plugin.py").read_text()
    assert re.findall(r"^def (caramba_register_\w+)", plugin, re.M) == [
        "caramba_register_layers", "caramba_register_topologies", "caramba_register_sinks"]
