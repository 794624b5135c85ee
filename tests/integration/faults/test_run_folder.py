"""One run per folder: a rerun with other settings is refused before anything is written,
a second run into a folder in use exits 2 naming the holder, a killed holder's lock is no
obstacle, and a resumed run logs each step once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caramba.pipeline._runfolder import folder_lock


def _target(out: Path) -> Path:
    return out / "faults" / "mlp"


def test_a_rerun_with_other_settings_is_refused_listing_them_and_nothing_is_rewritten(cli, manifest, tmp_path, files):
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    before = files.snapshot(_target(out))

    outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].seed=2",
                  "-s", "targets[0].runs[0].train.lr=0.02")
    outcome.assert_clean_failure(2, "runs/r holds a run with other settings", "run.seed: 1 -> 2",
                                 "run.train.lr: 0.01 -> 0.02")
    files.assert_kept(before, _target(out))  # manifest.resolved.yml and overrides.json included


def test_settings_that_do_not_change_results_resume_the_same_run(cli, manifest, tmp_path):
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].train.keep_checkpoints=5",
                  "-s", "targets[0].runs[0].train.progress=true")
    assert outcome.code == 0, outcome.err
    overrides = json.loads((_target(out) / "overrides.json").read_text())
    assert overrides == ["targets[0].runs[0].train.keep_checkpoints=5", "targets[0].runs[0].train.progress=true"]


def test_a_second_run_into_a_folder_in_use_exits_naming_the_holder(cli, manifest, tmp_path, files):
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    before = files.snapshot(_target(out))
    with folder_lock(_target(out)):  # another open of the lock file: flock conflicts as between processes
        outcome = cli("run", manifest, "--out", out, "-s", "targets[0].runs[0].train.lr=0.02")
    outcome.assert_clean_failure(2, f"{_target(out)} is in use by another caramba run (pid {os.getpid()} on",
                                 "--out")
    files.assert_kept(before, _target(out))


HOLDER = """
import sys, time
from pathlib import Path

import pytest
from caramba.pipeline._runfolder import folder_lock
with folder_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_lock_of_a_killed_run_is_not_in_the_way(cli, manifest, tmp_path):
    folder = _target(tmp_path / "out")
    folder.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = cli("run", manifest, "--out", tmp_path / "out")
        busy.assert_clean_failure(2, f"pid {holder.pid} on")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    assert (folder / "caramba.lock").exists()  # left behind by the killed holder
    outcome = cli("run", manifest, "--out", tmp_path / "out")
    assert outcome.code == 0, outcome.err


def test_a_resumed_run_logs_each_step_once(cli, manifest, tmp_path):
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    run_dir = _target(out) / "runs" / "r"
    first = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # as if killed after logging step 6 but before its checkpoint was committed
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"run_id": "r", "phase": "train", "st')  # a line cut by the kill
    assert cli("run", manifest, "--out", out).code == 0
    again = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["phase"], r["step"]) for r in again]
    assert len(steps) == len(set(steps)), steps
    assert [r["loss"] for r in again if r["phase"] == "train"] == [r["loss"] for r in first if r["phase"] == "train"]


def test_an_unreadable_fingerprint_is_refused(cli, manifest, tmp_path):
    out = tmp_path / "out"
    assert cli("run", manifest, "--out", out).code == 0
    (_target(out) / "runs" / "r" / "fingerprint.json").write_text("[]")
    cli("run", manifest, "--out", out).assert_clean_failure(2, "fingerprint.json is not a fingerprint")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_checkpoint_the_finished_step_before_exiting(cli, manifest, tmp_path, monkeypatch, signum):
    from caramba_trainers.standard import TrainingRun

    step = TrainingRun._step

    def signalled_during_step_3(self: TrainingRun, index: int):
        if index == 2:
            os.kill(os.getpid(), signum)  # arrives mid-step; the loop answers after it
        return step(self, index)

    monkeypatch.setattr(TrainingRun, "_step", signalled_during_step_3)
    out = tmp_path / "out"
    outcome = cli("run", manifest, "--out", out)
    ckpts = _target(out) / "runs" / "r" / "checkpoints"
    outcome.assert_clean_failure(128 + signum, f"stopped by {signal.Signals(signum).name} after step 3",
                                 str(ckpts / "step_00000003"), "run the same command again to resume")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run's handlers are gone

    monkeypatch.setattr(TrainingRun, "_step", step)
    resumed = cli("run", manifest, "--out", out)
    said = resumed.err.replace("\n", "")  # the console wraps long paths
    assert resumed.code == 0 and "resumed run 'r'" in said and "step_00000003 (step 3)" in said
