"""Fault injection: the command line is run in-process on small manifests, and every failure
must be one clear message with the documented exit code, no traceback, and nothing that was
already written lost or altered (docs/reliability.md lists the promises)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from caramba.cli import main

# A digits MLP that trains in about a second: two checkpoints (steps 4 and 6) are kept.
MLP = """
version: 2
name: faults
targets:
  - type: experiment
    name: mlp
    data: {ref: dataset.digits, config: {as: vectors, val_frac: 0.2, split_seed: 0}}
    system:
      ref: system.mlp_classifier
      config: {d_in: 64, d_hidden: 32, n_layers: 2, n_classes: 10}
    objective: objective.classification_ce
    trainer: trainer.standard
    runs:
      - id: r
        seed: 1
        steps: 6
        train: {batch_size: 16, lr: 0.01, save_every: 2, eval_batches: 2, progress: false}
"""


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def assert_clean_failure(self, code: int, *needles: str) -> None:
        """Exit ``code``, one error (a one-line message, or a report of one problem), no traceback."""
        assert self.code == code, self.err
        assert "Traceback" not in self.err, self.err
        lines = self.err.splitlines()
        reports = [line for line in lines if line.endswith(": 1 problem") or line.endswith(" problems")]
        errors = [line for line in lines if line.startswith("error: ")]
        if reports:  # a manifest report: its head line, then one indented problem
            assert reports[0].endswith(": 1 problem") and not errors, self.err
            assert lines[lines.index(reports[0]) + 1].startswith("  ") and len(lines) == lines.index(reports[0]) + 2
        else:  # anything else: one line, after whatever progress the console showed
            assert len(errors) == 1 and lines[-1] == errors[0], self.err
        for needle in needles:
            assert needle in self.err, f"{needle!r} not in {self.err!r}"


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def run(*args: str) -> Outcome:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "faults.yml"
    path.write_text(MLP)
    return path


class Files:
    """Snapshots of a folder's files, to show that nothing written before a failure was lost."""

    @staticmethod
    def snapshot(folder: Path) -> dict[str, bytes]:
        # the lock file's text only says who took the lock last
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and p.name != "caramba.lock"}

    def assert_kept(self, before: dict[str, bytes], folder: Path) -> None:
        """Every file of ``before`` is still there with the same bytes."""
        after = self.snapshot(folder)
        for name, data in before.items():
            assert name in after, f"{name} was lost"
            assert after[name] == data, f"{name} was altered"


@pytest.fixture
def files() -> Files:
    return Files()


@pytest.fixture
def mlp_text() -> str:
    return MLP
