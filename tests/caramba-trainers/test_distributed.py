"""Data parallelism under torchrun: 2 gloo processes on CPU match one process with the
same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

MANIFEST = """
version: 2
name: dp
defaults: {{logging: {{eval_iters: 2}}}}
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
        - {{type: DenseLayer, d_in: 64, d_out: 32, activation: gelu}}
        - {{type: DenseLayer, d_in: 32, d_out: 32, activation: gelu, normalization: layer_norm}}
        - {{type: ToyLinear, d_in: 32, d_out: 10}}
  objective: objective.classification_ce
  trainer: trainer.train
  runs:
  - id: r
    seed: 5
    steps: 5
    train: {{batch_size: {bs}, lr: 0.01, optimizer: adamw, grad_clip_norm: 1.0, gradient_accumulation_steps: 2,
            distributed_strategy: {strategy}, distributed_backend: gloo, progress: false}}
"""

TOY_PLUGIN_RUNNER = (
    "import sys, caramba.testing.toy as toy; from caramba import Runtime; from caramba.pipeline import run_target; "
    "rt = Runtime(plugins=[toy]); m = rt.load_manifest(sys.argv[1]); run_target(rt, m, None, root=sys.argv[2])"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, name: str, *, bs: int, strategy: str, nproc: int, steps: int = 5) -> Path:
    manifest = tmp_path / f"{name}.yml"
    manifest.write_text(MANIFEST.format(bs=bs, strategy=strategy).replace("steps: 5", f"steps: {steps}"))
    out = tmp_path / name
    script = tmp_path / "runner.py"
    script.write_text(TOY_PLUGIN_RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(script), str(manifest), str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}",
               "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", str(script), str(manifest),
               str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "dp" / "mlp" / "runs" / "r"


def _losses(run_dir: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["phase"] == "train"}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("single"), "single", bs=8, strategy="none", nproc=1)


def _assert_same_run(single: Path, other: Path) -> None:
    a, b = _losses(single), _losses(other)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5]
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    wa = load_file(single / "checkpoints" / "step_00000005" / "model.safetensors")
    wb = load_file(other / "checkpoints" / "step_00000005" / "model.safetensors")
    assert wa.keys() == wb.keys()
    # Weights: AdamW divides by sqrt(v), which magnifies last-bit differences of gradients near zero
    # (summation order differs between one process and an all-reduce), so they agree to 1e-5.
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-5, rtol=0), k


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path, single):
    _assert_same_run(single, _run(tmp_path, "ddp", bs=4, strategy="ddp", nproc=2))


@pytest.mark.slow
def test_fsdp2_matches_one_process_and_resumes_from_its_full_checkpoint(tmp_path, single):
    # 3 steps, then the same run extended to 5: the second launch resumes from step 3's
    # unsharded checkpoint (rank 0 reads it and FSDP shards it to every rank).
    _run(tmp_path, "fsdp", bs=4, strategy="fsdp", nproc=2, steps=3)
    resumed = _run(tmp_path, "fsdp", bs=4, strategy="fsdp", nproc=2, steps=5)
    assert [r for r in _losses(resumed)] == [1, 2, 3, 4, 5]
    _assert_same_run(single, resumed)
