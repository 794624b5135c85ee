"""trainer.orchestrated: trials leave no trace on the run, every batch is trained on once,
decisions are logged, and a corrupted batch sends the run to its safety strategy."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import caramba.testing.toy as toy
from caramba import Runtime, run_target


def _load_plugin(name: str = "orchestrate_plugin"):
    """Import the test plugin next to this file as the top-level module its factories name."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


MANIFEST = """
version: 2
name: orch
defaults:
  logging: {{eval_iters: 4}}
  runtime: {{save_every: {save_every}}}
targets:
- type: experiment
  name: mlp
  data: {data}
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
  trainer: trainer.orchestrated
  runs:
  - id: r
    seed: 3
    steps: {steps}
    train:
      batch_size: 16
      lr: 0.01
      progress: false
      orchestrator:
        portfolio:
        - {{name: adamw, optimizer: adamw}}
        - {{name: sgd, optimizer: sgd, lr: 0.1, momentum: 0.9, nesterov: true}}
        - {{name: lion, optimizer: lion, lr: 0.002}}
        - {{name: safe, optimizer: adamw, lr: 0.003, clipping: adagc}}
        start: {start}
        safety: safe
        skip_spikes: {skip}
        policies: {policies}
"""
DIGITS = "{ref: dataset.digits, config: {as: vectors}}"
BANDIT = "[{type: bandit, every: 12, trial_steps: 4, candidates: 3}]"


def manifest(*, policies: str = BANDIT, steps: int = 40, save_every: int = 100, start: str = "adamw",
             data: str = DIGITS, skip: str = "true") -> str:
    return MANIFEST.format(policies=policies, steps=steps, save_every=save_every, start=start, data=data, skip=skip)


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(plugins=[toy, _load_plugin()])


@pytest.fixture
def run(runtime, tmp_path):
    def go(text: str, name: str = "out") -> tuple[dict, Path]:
        report = run_target(runtime, runtime.load_manifest_text(text), None, root=tmp_path / name)
        return report, tmp_path / name / "orch" / "mlp" / "runs" / "r"

    return go


def _train_losses(run_dir: Path) -> dict[int, float]:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in recs if r["phase"] == "train"]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    return {r["step"]: r["loss"] for r in recs if r["phase"] == "train"}


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / f"step_{step:08d}" / "model.safetensors")


def _decisions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "decisions.jsonl").read_text().splitlines()]


def test_a_bandit_that_always_stays_equals_a_run_without_policies_bit_for_bit(run):
    # min_gain 1e9: every decision trial-runs all candidates from a snapshot and then stays. If the
    # trials consumed or skipped a batch, or left weights, optimizer state or RNG (dropout) changed,
    # the loss curve or the final weights would differ.
    stays = "[{type: bandit, every: 10, trial_steps: 4, candidates: 3, min_gain: 1.0e9}]"
    _, with_trials = run(manifest(policies=stays), "trials")
    _, plain = run(manifest(policies="[]"), "plain")
    decisions = _decisions(with_trials)
    assert [d["step"] for d in decisions] == [10, 20, 30]
    assert all(len(d["candidates"]) == 4 and not d["switched"] for d in decisions)
    assert _train_losses(with_trials) == _train_losses(plain)
    a, b = _weights(with_trials, 40), _weights(plain, 40)
    assert all(a[k].equal(b[k]) for k in a)


def test_switching_by_trials_equals_switching_at_the_same_steps_without_trials(run):
    report, bandit = run(manifest(), "bandit")
    switches = {str(d["step"]): d["choice"] for d in _decisions(bandit) if d["switched"]}
    assert switches, "the bandit never switched: the test shows nothing"
    script = "[{type: scripted, at: " + json.dumps(switches) + "}]"
    _, scripted = run(manifest(policies=script), "scripted")
    # Same strategies at the same steps: the same batches, losses and weights; trials left no trace.
    assert _train_losses(bandit) == _train_losses(scripted)
    assert sorted(_train_losses(bandit)) == list(range(1, 41))
    a, b = _weights(bandit, 40), _weights(scripted, 40)
    assert all(a[k].equal(b[k]) for k in a)
    assert report["runs"][0]["metrics"]["switches"] == len(switches)


def test_every_decision_is_logged_with_its_candidates_scores_and_choice(run):
    report, run_dir = run(manifest())
    decisions = _decisions(run_dir)
    assert [d["step"] for d in decisions] == [12, 24, 36]
    for d in decisions:
        assert d["policy"] == "bandit" and d["phase"] and d["time"] > 0 and d["reason"]
        scores = {c["strategy"]: c["held_out_loss"] for c in d["candidates"]}
        assert d["previous"] in scores and len(scores) == 4
        assert d["choice"] == min(scores, key=scores.get)  # min_gain 0: the best held-out loss wins
    trial_lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                   if '"phase": "trial"' in line]
    assert len(trial_lines) == 3 * 4 * 4  # decisions x candidates x trial steps
    assert report["runs"][0]["orchestrator"]["decisions"] == decisions
    on_disk = json.loads((run_dir.parents[1] / "report.json").read_text())
    assert on_disk["runs"][0]["orchestrator"]["decisions"] == decisions
    assert (run_dir / "orchestrator.png").stat().st_size > 10_000


CORRUPT = "{ref: dataset.corrupted_digits, config: {corrupt_from: 30, corrupt_steps: 3, factor: 200.0}}"


def test_a_corrupted_batch_sends_the_run_to_the_safety_strategy_and_it_recovers(run):
    # Plain SGD (lr 0.1, Nesterov, no clipping); training batches 30-32 have their inputs x200.
    # Fixed: the corrupted steps blow the weights up and the classifier collapses to chance.
    fixed, fixed_dir = run(manifest(policies="[]", start="sgd", steps=60, data=CORRUPT, skip="false"), "fixed")
    fixed_losses = _train_losses(fixed_dir)
    assert max(fixed_losses[s] for s in (32, 33)) > 1000
    fixed_m = fixed["runs"][0]["metrics"]
    assert fixed_m["val_acc"] < 0.3 and fixed_m["val_loss"] > 2.0
    # Orchestrated: the spike at step 31 is detected before its update, which is dropped; the
    # safety policy switches to AdamW with AdaGC, whose clipping and skips keep the run on track.
    report, run_dir = run(manifest(policies="[{type: safety}]", start="sgd", steps=60, data=CORRUPT), "safe")
    decisions = _decisions(run_dir)
    assert [(d["step"], d["policy"], d["previous"], d["choice"]) for d in decisions] == [(31, "safety", "sgd", "safe")]
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["phase"] == "train" and r["skipped"]] == [31, 32, 33]
    m = report["runs"][0]["metrics"]
    assert m["val_acc"] > 0.85 and m["val_loss"] < fixed_m["val_loss"] / 3


def test_without_spikes_the_safety_policy_never_fires(run):
    report, run_dir = run(manifest(policies="[{type: safety}]", start="sgd", steps=60), "clean")
    assert _decisions(run_dir) == []
    assert report["runs"][0]["metrics"]["val_acc"] > 0.9


def test_the_docs_example_runs_and_logs_its_first_decision(tmp_path):
    text = (Path(__file__).parents[2] / "docs" / "orchestrated.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    rt = Runtime()
    m = rt.load_manifest_text(example, overrides=("targets.mlp.runs.0.steps=12",))
    report = run_target(rt, m, None, root=tmp_path)
    run_dir = tmp_path / "orchestrated_digits" / "mlp" / "runs" / "train"
    first = _decisions(run_dir)[0]
    assert first["step"] == 0 and first["policy"] == "bandit" and len(first["candidates"]) == 3
    assert report["runs"][0]["metrics"]["decisions"] == 1
