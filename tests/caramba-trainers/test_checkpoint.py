"""Checkpoints: safetensors + JSON, exact round trips, and atomicity under a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from caramba.errors import CheckpointError
from caramba_trainers.checkpoint import find_latest, list_checkpoints, load_checkpoint, save_checkpoint
from caramba_trainers.optim import build_adamw


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))


def _train_step(model, opt, seed):
    ids = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(seed))
    loss = model(ids).logsumexp(-1).mean() + torch.nn.functional.dropout(model.embed.weight, 0.5).sum() * 1e-3
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.detach()


def test_round_trip_continues_training_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    opt = build_adamw(model.parameters(), lr=0.01, weight_decay=0.1)
    _train_step(model, opt, 1)
    path = save_checkpoint(tmp_path, 1, model_state=model.state_dict(), optimizer_state=opt.state_dict(),
                           state={"metrics": {"loss": 1.5}})
    ref = [_train_step(model, opt, s) for s in (2, 3)]

    torch.manual_seed(123)  # scramble the RNG: the checkpoint restores it
    fresh = Tied()
    fresh_opt = build_adamw(fresh.parameters(), lr=0.01, weight_decay=0.1)
    ckpt = load_checkpoint(path)
    assert ckpt.state["model_aliases"] == {"head.weight": "embed.weight"}  # tied weight stored once
    fresh.load_state_dict(ckpt.model)
    fresh_opt.load_state_dict(ckpt.optimizer)
    from caramba_trainers.checkpoint import set_rng_state

    set_rng_state(ckpt.rng, ckpt.state["rng"])
    again = [_train_step(fresh, fresh_opt, s) for s in (2, 3)]
    assert [float(x) for x in again] == [float(x) for x in ref]
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    assert fresh.head.weight.data_ptr() == fresh.embed.weight.data_ptr()


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path):
    model = Tied()
    path = save_checkpoint(tmp_path, 3, model_state=model.state_dict())
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "rng.safetensors", "state.json"]
    assert json.loads((path / "state.json").read_text())["step"] == 3
    assert json.loads((tmp_path / "latest.json").read_text()) == {"step": 3, "path": "step_00000003"}


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model_state={"w": torch.full((2,), float(step))}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000004", "step_00000005"]


def test_a_truncated_checkpoint_is_skipped_for_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, 1, model_state={"w": torch.ones(100)})
    bad = save_checkpoint(tmp_path, 2, model_state={"w": torch.ones(100) * 2})
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(bad)
    assert find_latest(tmp_path).step == 1


WRITER = textwrap.dedent("""
    import sys, torch
    from caramba_trainers.checkpoint import save_checkpoint
    root = sys.argv[1]
    step = 0
    while True:  # writing is all this loop does, so a kill lands mid-write
        step += 1
        save_checkpoint(root, step, model_state={"w": torch.full((1_000_000,), float(step))},
                        state={"metrics": {"value": step}}, keep=3)
""")


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    import random

    rng = random.Random(7)
    hit_mid_write = 0
    for attempt in range(3):
        root = tmp_path / f"a{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)])
        try:
            deadline = time.time() + 60
            while len(list_checkpoints(root)) < 2 and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        leftovers = [p for p in root.iterdir() if p.name.startswith((".tmp-", ".old-"))]
        hit_mid_write += bool(leftovers)
        ckpt = find_latest(root)
        assert ckpt is not None
        w = ckpt.model["w"]
        assert ckpt.state["metrics"]["value"] == ckpt.step
        assert bool((w == float(ckpt.step)).all()) and w.numel() == 1_000_000
    assert hit_mid_write >= 1, "no kill landed inside a write; the test did not exercise atomicity"
