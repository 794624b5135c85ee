"""The pipeline runner: lifecycle hooks in order, verify, benchmarks, provenance, atomic files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import caramba
from caramba.pipeline import atomic_write_json, atomic_write_text, run_target
from caramba.testing import toy

MANIFEST = """
version: 2
name: piped
targets:
  - name: t
    data: {ref: dataset.toy_regression, config: {n: 32, d_in: 3}}
    system: {ref: system.toy, config: {d_in: 3, model: {type: ToyLinear, d_in: 3, d_out: 1}}}
    objective: objective.toy_mse
    trainer: trainer.toy
    labels: {student: "Toy student"}
    runs:
      - id: r
        seed: [1, 2]
        steps: 2
        verify: {type: toy_threshold, max_loss: MAX, fail_fast: FAIL_FAST}
    benchmarks:
      - {id: mse, config: {type: toy_loss}, repeats: 2}
"""


class Recorder:
    """A plugin that records the lifecycle hooks it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @caramba.hookimpl
    def caramba_run_start(self, session):
        self.calls.append(("run_start", session.run.id))

    @caramba.hookimpl
    def caramba_step_end(self, session, step, metrics):
        self.calls.append(("step_end", session.run.id, step, sorted(metrics)))

    @caramba.hookimpl
    def caramba_run_end(self, session, result):
        self.calls.append(("run_end", session.run.id, sorted(result.models)))

    @caramba.hookimpl
    def caramba_artifacts_written(self, session, paths):
        self.calls.append(("artifacts_written", [Path(p).name for p in paths]))


def manifest_text(max_loss: float = 1e6, fail_fast: bool = False) -> str:
    return MANIFEST.replace("MAX", str(max_loss)).replace("FAIL_FAST", str(fail_fast).lower())


def test_lifecycle_hooks_fire_in_order_for_every_run(tmp_path):
    recorder = Recorder()
    rt = caramba.Runtime(autoload=False, plugins=[toy, recorder])
    report = run_target(rt, rt.load_manifest_text(manifest_text()), root=tmp_path)
    steps = [("step_end", rid, s, ["loss", "mse"]) for rid in ("r__s1", "r__s2") for s in (1, 2)]
    assert recorder.calls == [
        ("run_start", "r__s1"), *steps[:2], ("run_end", "r__s1", ["student"]),
        ("run_start", "r__s2"), *steps[2:], ("run_end", "r__s2", ["student"]),
        ("artifacts_written", ["report.json"]),
    ]
    assert [r["id"] for r in report["runs"]] == ["r__s1", "r__s2"]
    rows = report["benchmarks"]["mse"]["rows"]
    assert [row["model"] for row in rows] == ["Toy student", "Toy student"]  # labelled, once per repeat
    assert json.loads((tmp_path / "piped" / "t" / "report.json").read_text())["runs"][1]["seed"] == 2


def test_a_failed_verify_warns_or_stops_the_run(tmp_path):
    rt = caramba.Runtime(autoload=False, plugins=[toy])
    report = run_target(rt, rt.load_manifest_text(manifest_text(max_loss=0.0)), root=tmp_path / "a")
    assert [v["passed"] for r in report["runs"] for v in r["verify"]] == [False, False]
    with pytest.raises(caramba.RunError) as info:
        run_target(rt, rt.load_manifest_text(manifest_text(max_loss=0.0, fail_fast=True)), root=tmp_path / "b")
    assert info.value.exit_code == 1
    assert "verify 'toy_threshold' failed for run 'r__s1'" in str(info.value)


def test_select_kernel_takes_the_first_answer_and_defaults_to_torch():
    class Picky:
        @caramba.hookimpl
        def caramba_select_kernel(self, op, device, dtype):
            return "triton" if (op, device) == ("attention", "cuda") else None

    from caramba.graph import Builder

    builder = Builder(caramba.Runtime(autoload=False, plugins=[Picky()]))
    assert builder.select_kernel("attention", "cuda", "bf16") == "triton"
    assert builder.select_kernel("attention", "cpu", "fp32") == "torch"


def test_preset_dirs_let_run_find_a_manifest_by_name(tmp_path, capsys):
    (tmp_path / "tiny.yml").write_text(manifest_text())

    class Presets:
        @caramba.hookimpl
        def caramba_preset_dirs(self):
            return [str(tmp_path)]

    from caramba.cli._commands import find_manifest

    rt = caramba.Runtime(autoload=False, plugins=[toy, Presets()])
    assert find_manifest(rt, "tiny") == str(tmp_path / "tiny.yml")
    with pytest.raises(caramba.UsageError) as info:
        find_manifest(rt, "tiyn")
    assert info.value.hint == "did you mean 'tiny'?"


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "state.json"
    atomic_write_json(path, {"step": 1})
    atomic_write_json(path, {"step": 2})
    assert json.loads(path.read_text()) == {"step": 2}

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "half")
    assert json.loads(path.read_text()) == {"step": 2}  # the old version survives a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]
