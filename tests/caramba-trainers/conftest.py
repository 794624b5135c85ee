"""Fixtures for caramba-trainers tests: a runtime with every installed plugin plus the toy
plugin, manifests run in-process, and a private cache folder for tokenized corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import caramba.testing.toy as toy
from caramba import Runtime
from caramba.pipeline import run_target


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tokenized corpora are cached per session; the BPE test checks the cache is reused.
    os.environ.setdefault("CARAMBA_CACHE_DIR", str(tmp_path_factory.mktemp("caramba-cache")))


@pytest.fixture(scope="session")
def runtime() -> Runtime:
    return Runtime(plugins=[toy])


@pytest.fixture
def run_manifest(runtime: Runtime, tmp_path: Path):
    def run(text: str, target: str | None = None, overrides: tuple[str, ...] = ()) -> dict:
        manifest = runtime.load_manifest_text(text, overrides=overrides)
        return run_target(runtime, manifest, target, root=tmp_path / "out")

    return run


DIGITS_MLP = """
version: 2
name: digits
defaults:
  logging: {{eval_iters: 4, sinks: {sinks}}}
  runtime: {{save_every: {save_every}}}
targets:
- type: experiment
  name: mlp
  data: {{ref: dataset.digits, config: {{as: vectors}}}}
  system:
    ref: system.toy
    config:
      d_in: 64
      model:
        type: ToySequential
        layers:
        - {{type: DenseLayer, d_in: 64, d_out: 32, activation: relu, dropout: 0.1}}
        - {{type: ToyLinear, d_in: 32, d_out: 10}}
  objective: objective.classification_ce
  trainer: trainer.train
  runs:
  - id: r
    seed: 3
    steps: {steps}
    train: {train}
"""


def digits_manifest(*, steps: int = 20, save_every: int = 5, sinks: str = "[]", **train: object) -> str:
    fields = {"batch_size": 16, "lr": 0.01, **train}
    body = "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"
    return DIGITS_MLP.format(steps=steps, save_every=save_every, sinks=sinks, train=body)


@pytest.fixture
def digits():
    return digits_manifest
