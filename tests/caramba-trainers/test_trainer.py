"""The standard trainer end to end through manifests: training, evaluation, sinks, resume
of a finished run, the NaN guard, AMP, and clear errors for bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from caramba import CarambaError, ManifestError, RunError
from caramba_trainers.checkpoint import find_latest


def _run_dir(report: dict, tmp_path: Path) -> Path:
    return tmp_path / "out" / report["metadata"]["name"] / report["metadata"]["target"] / "runs" / "r"


def test_digits_mlp_learns_and_reports_validation_accuracy(run_manifest, digits, tmp_path):
    report = run_manifest(digits(steps=60, save_every=20, lr=0.01, scheduler="cosine", warmup_steps=5,
                                 eval_every=20, sinks="[hdf5, tensorboard]"))
    metrics = report["runs"][0]["metrics"]
    assert metrics["val_acc"] > 0.8 and metrics["val_loss"] < 1.0 and metrics["steps"] == 60
    run_dir = _run_dir(report, tmp_path)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["phase"] == "val"] == [20, 40, 60]
    with h5py.File(run_dir / "metrics.h5") as f:
        loss = f["train/loss"][:]
        assert loss.shape == (60, 2) and loss[0, 0] == 1 and loss[-1, 0] == 60
        assert f["val/val_acc"].shape == (3, 2)
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert report["runs"][0]["checkpoint"].endswith("step_00000060")


def test_a_finished_run_is_not_trained_again(run_manifest, digits, tmp_path):
    text = digits(steps=10, save_every=5)
    first = run_manifest(text)
    run_dir = _run_dir(first, tmp_path)
    mtime = (run_dir / "checkpoints" / "step_00000010" / "state.json").stat().st_mtime_ns
    second = run_manifest(text)
    assert second["runs"][0]["metrics"]["loss"] == first["runs"][0]["metrics"]["loss"]
    assert (run_dir / "checkpoints" / "step_00000010" / "state.json").stat().st_mtime_ns == mtime


NAN_MANIFEST = """
version: 2
name: nan
defaults: {{runtime: {{save_every: 1}}, logging: {{eval_iters: 1}}}}
targets:
- type: experiment
  name: reg
  data: {{ref: dataset.npy_supervised, config: {{x_path: {x}, y_path: {y}, val_frac: 0.2}}}}
  system: {{ref: system.toy, config: {{d_in: 3, model: {{type: ToyLinear, d_in: 3, d_out: 1}}}}}}
  objective: {{ref: objective.mse, config: {{pred_key: logits}}}}
  trainer: trainer.standard
  runs:
  - {{id: r, seed: 0, steps: 50, train: {{batch_size: 4, lr: 0.01, progress: false}}}}
"""


def test_non_finite_loss_stops_with_the_last_good_checkpoint_kept(run_manifest, tmp_path):
    import numpy as np

    from caramba_trainers.data.supervised import NpySupervisedDataset
    from caramba_trainers.specs import NpySupervisedConfig

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.save(tmp_path / "y.npy", x.sum(1, keepdims=True))
    np.save(tmp_path / "x.npy", x)
    config = NpySupervisedConfig(x_path=str(tmp_path / "x.npy"), y_path=str(tmp_path / "y.npy"), val_frac=0.2)
    clean = NpySupervisedDataset(config)
    first = set(clean.batch("train", 0, 4, seed=0)["inputs"][:, 0].tolist())
    row = next(r for r in clean.split["train"] if float(x[r, 0]) not in first)
    x[row] = np.nan  # one poisoned training row, not in the first batch
    np.save(tmp_path / "x.npy", x)
    data = NpySupervisedDataset(config)
    bad = next(i for i in range(100) if data.batch("train", i, 4, seed=0)["inputs"].isnan().any())
    assert bad >= 1, "pick another row: the first batch must be clean for this test"

    with pytest.raises(RunError, match=rf"stopped at step {bad + 1}: the loss became nan.*last good checkpoint") as err:
        run_manifest(NAN_MANIFEST.format(x=tmp_path / "x.npy", y=tmp_path / "y.npy"))
    ckpt = find_latest(tmp_path / "out" / "nan" / "reg" / "runs" / "r" / "checkpoints")
    assert ckpt.step == bad and str(ckpt.path) in str(err.value)
    assert all(bool(t.isfinite().all()) for t in ckpt.model.values())


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_amp_trains_on_cpu(run_manifest, digits, amp_dtype):
    report = run_manifest(digits(steps=20, use_amp="true", amp_dtype=amp_dtype, lr=0.01))
    assert report["runs"][0]["metrics"]["val_loss"] < 2.0


@pytest.mark.slow  # over 10 s on 2 cores
def test_wandb_offline_sink_writes_a_local_run(run_manifest, digits, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    text = digits(steps=3, sinks="[wandb]").replace("logging: {", "logging: {wandb_mode: offline, ")
    report = run_manifest(text)
    assert list((_run_dir(report, tmp_path) / "wandb").glob("offline-run-*"))


def test_karate_node_classification_and_diffusion_datasets_train(run_manifest, digits):
    karate = (digits(steps=30, lr=0.05)
              .replace("{ref: dataset.digits, config: {as: vectors}}", "dataset.karate")
              .replace("d_in: 64", "d_in: 34").replace("{type: DenseLayer, d_in: 64", "{type: DenseLayer, d_in: 34")
              .replace("d_out: 10", "d_out: 2").replace("objective.classification_ce", "objective.node_classification"))
    metrics = run_manifest(karate)["runs"][0]["metrics"]
    # one-hot features without message passing: the labelled nodes are learnt, held-out ones are not
    assert metrics["acc"] == 1.0 and 0.0 <= metrics["val_acc"] <= 1.0
    diffusion = (digits(steps=5)
                 .replace("{ref: dataset.digits, config: {as: vectors}}",
                          "{ref: dataset.diffusion_vector, config: {source: digits}}")
                 .replace("objective.classification_ce", "{ref: objective.diffusion, config: {pred_key: logits}}")
                 .replace("d_out: 10", "d_out: 64").replace("name: mlp", "name: diffusion"))
    assert run_manifest(diffusion)["runs"][0]["metrics"]["val_loss"] > 0


def test_a_blockwise_phase_is_rejected_when_the_manifest_loads(runtime, digits):
    with pytest.raises(ManifestError, match="phase 'blockwise' is not run by this trainer.*trainer.upcycle"):
        runtime.load_manifest_text(digits(phase="blockwise"))


def test_unknown_train_fields_are_reported_with_a_suggestion(runtime, digits):
    with pytest.raises(ManifestError, match="unknown field 'grad_clip'.*did you mean 'grad_clip_norm'"):
        runtime.load_manifest_text(digits(grad_clip=1.0))


def test_ddp_without_torchrun_is_a_clear_error(run_manifest, digits, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(CarambaError, match="needs a process group.*" ) as err:
        run_manifest(digits(distributed_strategy="ddp"))
    assert "torchrun" in err.value.hint


def test_an_unknown_optimizer_suggests_the_registered_ones(run_manifest, digits):
    with pytest.raises(CarambaError, match="unknown optimizer 'adamm'") as err:
        run_manifest(digits(optimizer="adamm"))
    assert "adamw" in err.value.hint
