"""A quickstart run shared by the paper tests: the standard preset's quick target, shortened."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Path:
    """The target folder of ``caramba run standard_transformer --target quick`` (10 steps)."""
    from caramba.cli import main

    out = tmp_path_factory.mktemp("quickstart")
    assert main(["run", "standard_transformer", "--target", "quick", "--out", str(out),
                 "-s", "targets.quick.runs.train.steps=10"]) == 0
    return out / "standard_transformer" / "quick"
