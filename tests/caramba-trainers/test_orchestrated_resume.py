"""SIGKILL an orchestrated run while its bandit trial-runs candidates, rerun it, and the loss
curve, the decisions and the final weights equal an uninterrupted run's, bit for bit (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

MANIFEST = """
version: 2
name: orchresume
defaults:
  logging: {eval_iters: 2}
  runtime: {save_every: 3}
targets:
- type: experiment
  name: lm
  data: {ref: dataset.text, config: {block_size: 32, max_chars: 100000}}
  system:
    ref: system.language_model
    config:
      model:
        tied_embeddings: false
        embedder: {type: token, vocab_size: 257, d_model: 32}
        topology:
          type: StackedTopology
          layers:
          - type: ResidualTopology
            layers:
            - {type: RMSNormLayer, d_model: 32}
            - {type: AttentionLayer, d_model: 32, n_heads: 4, mode: standard}
            - {type: DropoutLayer, p: 0.1}
          - type: ResidualTopology
            layers:
            - {type: RMSNormLayer, d_model: 32}
            - {type: SwiGLULayer, d_model: 32, d_ff: 64}
          - {type: RMSNormLayer, d_model: 32}
          - {type: LinearLayer, d_in: 32, d_out: 257}
  objective: objective.next_token_ce
  trainer: trainer.orchestrated
  runs:
  - id: r
    seed: 5
    steps: 24
    train:
      batch_size: 8
      lr: 0.003
      scheduler: cosine
      warmup_steps: 3
      progress: false
      keep_checkpoints: 2
      orchestrator:
        portfolio:
        - {name: adamw, optimizer: adamw, clipping: adagc}
        - {name: lion, optimizer: lion, lr: 0.001}
        - {name: sgd, optimizer: sgd, lr: 0.3, momentum: 0.9, nesterov: true}
        safety: adamw
        trial_eval_batches: 2
        policies: [{type: safety}, {type: bandit, every: 8, trial_steps: 3, candidates: 2}]
"""


def _cmd(manifest: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "caramba", "run", str(manifest), "--out", str(out)]


def _lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    out = []
    for raw in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:  # a line cut by the kill
            continue
    return out


def _decisions(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in (run_dir / "decisions.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_during_a_trial_then_resume_gives_the_uninterrupted_weights(tmp_path):
    manifest = tmp_path / "m.yml"
    manifest.write_text(MANIFEST)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref_out = tmp_path / "ref"
    subprocess.run(_cmd(manifest, ref_out), check=True, env=env, capture_output=True)
    ref_dir = ref_out / "orchresume" / "lm" / "runs" / "r"
    ref_losses = {r["step"]: r["loss"] for r in _lines(ref_dir) if r["phase"] == "train"}
    assert sorted(ref_losses) == list(range(1, 25))
    assert [d["step"] for d in _decisions(ref_dir)] == [8, 16]

    out = tmp_path / "killed"
    run_dir = out / "orchresume" / "lm" / "runs" / "r"
    kills = []
    for decision_step in (8, 16):  # kill inside the trials of each decision
        proc = subprocess.Popen(_cmd(manifest, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            trial = [r for r in _lines(run_dir) if r["phase"] == "trial" and r["step"] > decision_step + 1]
            if trial:
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(max((r["step"] for r in _lines(run_dir) if r["phase"] == "train"), default=0))
        assert not (run_dir / "checkpoints" / "step_00000024").exists(), f"finished before the kill ({kills})"
    subprocess.run(_cmd(manifest, out), check=True, env=env, capture_output=True)

    losses: dict[int, float] = {}
    for r in _lines(run_dir):
        if r["phase"] == "train":
            assert losses.setdefault(r["step"], r["loss"]) == r["loss"] == ref_losses[r["step"]], (r["step"], kills)
    assert sorted(losses) == list(range(1, 25))
    assert _decisions(run_dir) == _decisions(ref_dir)
    a = load_file(ref_dir / "checkpoints" / "step_00000024" / "model.safetensors")
    b = load_file(run_dir / "checkpoints" / "step_00000024" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
