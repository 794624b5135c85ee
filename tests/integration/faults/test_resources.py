"""Failures of the machine: a full disk, a read-only or forbidden folder, no memory. Each is
one line naming the file or resource and a fix, exit 1 (2 when the output folder itself
cannot be used), no traceback, and every checkpoint already written still loads."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import caramba_trainers.checkpoint as checkpoint
from caramba.pipeline import _files as pipeline_files
from caramba_trainers.checkpoint import find_latest, list_checkpoints, load_checkpoint
from caramba_trainers.standard import TrainingRun


def _run_dir(out: Path) -> Path:
    return out / "faults" / "mlp" / "runs" / "r"


def _assert_checkpoints_intact(out: Path) -> list[Path]:
    root = _run_dir(out) / "checkpoints"
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")], "a half-written checkpoint was left"
    committed = list_checkpoints(root)
    for path in committed:
        load_checkpoint(path)  # size and SHA-256 verified
    return committed


def _results(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    """The checkpoints and the report: what a launch that extends the run must never lose."""
    return {k: v for k, v in snapshot.items() if "/checkpoints/" in k or k.endswith("report.json")}


@pytest.fixture
def trained(cli, manifest, tmp_path, files) -> tuple[Path, dict[str, bytes]]:
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    return out, files.snapshot(out)


def test_a_full_disk_while_checkpointing_fails_in_one_line_and_keeps_what_was_written(cli, manifest, trained,
                                                                                       monkeypatch, files):
    out, before = trained
    write = checkpoint._write_synced

    def full_at_step_8(path: Path, data: bytes, hashes: dict[str, str] | None = None) -> int:
        if "step_00000008" in str(path.parent) and path.name == "optimizer.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return write(path, data, hashes)

    monkeypatch.setattr(checkpoint, "_write_synced", full_at_step_8)
    # extending the finished run to 10 steps: its checkpoint at step 8 hits the full disk
    outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].steps=10")
    outcome.assert_clean_failure(1, "No space left on device: ", "optimizer.safetensors", "free space on that disk")
    assert [p.name for p in _assert_checkpoints_intact(out)] == ["step_00000004", "step_00000006"]
    files.assert_kept(_results(before), out)

    monkeypatch.setattr(checkpoint, "_write_synced", write)  # space again: the rerun resumes and finishes
    assert cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].steps=10").code == 0
    assert find_latest(_run_dir(out) / "checkpoints").step == 10


def test_permission_denied_on_the_report_names_the_file(cli, manifest, trained, monkeypatch, files):
    out, before = trained
    write = pipeline_files.atomic_write_bytes

    def forbidden(path: str | Path, data: bytes) -> Path:
        if Path(path).name == "report.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return write(path, data)

    monkeypatch.setattr(pipeline_files, "atomic_write_bytes", forbidden)
    outcome = cli("run", manifest, "--out", out)
    outcome.assert_clean_failure(1, "Permission denied: ", "report.json", "check the permissions")
    files.assert_kept(before, out)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    MemoryError(),
])
def test_out_of_memory_is_one_line_with_what_to_lower(cli, manifest, trained, monkeypatch, files, error):
    out, before = trained

    def no_memory(self: TrainingRun, step: int) -> None:
        raise error

    monkeypatch.setattr(TrainingRun, "_step", no_memory)
    outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].steps=10")
    outcome.assert_clean_failure(1, "error: out of memory", "lower batch_size", "a rerun resumes from them")
    _assert_checkpoints_intact(out)
    files.assert_kept(_results(before), out)


# --- real filesystems: a tiny tmpfs and a read-only one (needs the right to mount) ---------------


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[callable]:
    mounted: list[Path] = []

    def make(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


def test_a_really_full_disk_stops_the_run_cleanly_and_a_rerun_with_space_resumes(cli, manifest, mount):
    out = mount("small", "size=160k")
    keep_all = ["-s", "targets[0].runs[0].steps=40", "-s", "targets[0].runs[0].train.keep_checkpoints=100"]
    outcome = cli("run", manifest, "--out", out, *keep_all)
    outcome.assert_clean_failure(1, "No space left on device", "free space on that disk")
    written = _assert_checkpoints_intact(out)
    assert written, "the disk filled before the first checkpoint; the test needs a larger tmpfs"

    subprocess.run(["mount", "-o", "remount,size=8m", str(out)], check=True)
    assert cli("run", manifest, "--out", out, *keep_all).code == 0
    assert find_latest(_run_dir(out) / "checkpoints").step == 40


def test_a_read_only_output_folder_is_refused_before_any_work(cli, manifest, mount):
    out = mount("readonly", "ro,size=64k")
    outcome = cli("run", manifest, "--out", out)
    outcome.assert_clean_failure(2, f"cannot write to the artifacts folder {out / 'faults' / 'mlp'}",
                                 "Read-only file system", "--out")
    assert json.dumps(sorted(os.listdir(out))) == "[]"
