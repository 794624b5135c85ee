"""Checkpoint integrity: a changed byte is caught by the content hash, the checkpoint is named
in a warning and skipped for the previous one, and when none is readable the run refuses
instead of silently retraining over them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _run_dir(out: Path) -> Path:
    return out / "faults" / "mlp" / "runs" / "r"


def _flip_a_tensor_byte(step_dir: Path) -> None:
    path = step_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + 5] ^= 0x40  # inside the first tensor's data: same size, still parses
    path.write_bytes(bytes(data))


@pytest.fixture
def trained(cli, manifest, tmp_path) -> tuple[Path, dict]:
    """A finished run (checkpoints at steps 4 and 6) and its report."""
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    return out, json.loads((out / "faults" / "mlp" / "report.json").read_text())


def test_a_flipped_byte_is_named_skipped_and_the_run_redone_from_the_previous_checkpoint(cli, manifest, trained):
    out, first = trained
    ckpts = _run_dir(out) / "checkpoints"
    _flip_a_tensor_byte(ckpts / "step_00000006")

    outcome = cli("run", manifest, "--out", out)
    assert outcome.code == 0, outcome.err
    assert f"warning: skipping checkpoint {ckpts / 'step_00000006'}" in outcome.err
    assert "does not match the SHA-256 recorded when it was written" in outcome.err
    # resumed from step 4 and retrained: the report holds the same numbers as the first run
    report = json.loads((out / "faults" / "mlp" / "report.json").read_text())
    for key in ("loss", "acc", "val_loss", "val_acc"):
        assert report["runs"][0]["metrics"][key] == first["runs"][0]["metrics"][key], key


@pytest.mark.parametrize("damage", ["flip", "not-json", "a-list", "bad-step", "missing-file"])
def test_when_no_checkpoint_is_readable_the_run_refuses_and_changes_nothing(cli, manifest, trained, files, damage):
    out, _ = trained
    ckpts = _run_dir(out) / "checkpoints"
    for step_dir in ckpts.glob("step_*"):
        state = step_dir / "state.json"
        if damage == "flip":
            _flip_a_tensor_byte(step_dir)
        elif damage == "not-json":
            state.write_text("{not json")
        elif damage == "a-list":
            state.write_text("[1, 2]")
        elif damage == "bad-step":
            state.write_text(state.read_text().replace('"step": ', '"step": "x', 1).replace(',', '",', 1))
        else:
            (step_dir / "optimizer.safetensors").unlink()
    before = files.snapshot(out)

    outcome = cli("run", manifest, "--out", out)
    outcome.assert_clean_failure(2, f"none of the 2 checkpoints in {ckpts} is readable",
                                 "auto_resume: false")
    files.assert_kept(before, out)


def test_retraining_over_unreadable_checkpoints_is_an_explicit_choice(cli, manifest, trained):
    out, first = trained
    ckpts = _run_dir(out) / "checkpoints"
    for step_dir in ckpts.glob("step_*"):
        _flip_a_tensor_byte(step_dir)
    outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].train.auto_resume=false")
    assert outcome.code == 0, outcome.err
    report = json.loads((out / "faults" / "mlp" / "report.json").read_text())
    assert report["runs"][0]["metrics"]["loss"] == first["runs"][0]["metrics"]["loss"]
    assert cli("run", manifest, "--out", out).code == 0  # the new checkpoints verify
