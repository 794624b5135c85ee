"""Resume is exact: SIGKILL a training process at random steps, rerun it, and the loss
curve and final weights equal an uninterrupted run's, bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

MANIFEST = """
version: 2
name: resume
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
            - {type: DropoutLayer, p: 0.1}
          - {type: RMSNormLayer, d_model: 32}
          - {type: LinearLayer, d_in: 32, d_out: 257}
  objective: objective.next_token_ce
  trainer: trainer.train
  runs:
  - id: r
    seed: 11
    steps: 40
    train: {batch_size: 8, lr: 0.003, optimizer: adamw, weight_decay: 0.1, scheduler: cosine, warmup_steps: 4,
            gradient_accumulation_steps: 2, grad_clip_norm: 1.0, eval_every: 10, keep_checkpoints: 2,
            progress: false}
"""


def _cmd(manifest: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "caramba", "run", str(manifest), "--out", str(out)]


def _train_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        if rec["phase"] == "train":
            lines.append(rec)
    return lines


@pytest.mark.slow
def test_sigkilled_runs_resume_to_the_same_loss_bit_for_bit(tmp_path):
    manifest = tmp_path / "m.yml"
    manifest.write_text(MANIFEST)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    ref_out = tmp_path / "ref"
    subprocess.run(_cmd(manifest, ref_out), check=True, env=env, capture_output=True)
    ref_run = ref_out / "resume" / "lm" / "runs" / "r"
    ref = {rec["step"]: rec["loss"] for rec in _train_lines(ref_run)}
    assert sorted(ref) == list(range(1, 41))

    out = tmp_path / "killed"
    run_dir = out / "resume" / "lm" / "runs" / "r"
    rng = random.Random(2024)
    kills = []
    for _ in range(3):
        target = max(s["step"] for s in _train_lines(run_dir)) + rng.randint(4, 9) if _train_lines(run_dir) \
            else rng.randint(4, 9)
        proc = subprocess.Popen(_cmd(manifest, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            lines = _train_lines(run_dir)
            if lines and lines[-1]["step"] >= target:
                break
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(_train_lines(run_dir)[-1]["step"])
    assert kills[-1] < 40, f"the run finished before the last kill (killed at {kills})"
    subprocess.run(_cmd(manifest, out), check=True, env=env, capture_output=True)

    # Every step, including those replayed after a kill, has the uninterrupted run's loss.
    lines = _train_lines(run_dir)
    assert {rec["step"] for rec in lines} == set(range(1, 41))
    for rec in lines:
        assert rec["loss"] == ref[rec["step"]], f"step {rec['step']} differs after kills at {kills}"
    # And the final weights are identical.
    a = load_file(ref_run / "checkpoints" / "step_00000040" / "model.safetensors")
    b = load_file(run_dir / "checkpoints" / "step_00000040" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equal(b[k]), k
