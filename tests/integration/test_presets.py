"""Every preset: each target validates and prints its plan, and each ``quick`` target runs end
to end on real data (train → verify → benchmark → artifacts) and reaches a stated outcome.

Bounds, and why they are meaningful:

* language models read bytes of the Python stdlib; a model that learnt only byte
  frequencies scores their unigram entropy, 3.14 nats/byte. Bound: held-out loss < 2.2.
* digits (10 balanced classes, chance 0.1): MLP held-out accuracy >= 0.9, ViT >= 0.8.
* karate club (2 clubs, the larger holds 50% of 34 members): GCN held-out accuracy >= 0.8.
* diffusion: the DDPM's samples are closer to the held-out data than samples of a Gaussian
  with the training data's mean and covariance (MMD² and nearest-neighbour distance).
* LoRA: on the new text the adapted model's held-out loss is below the frozen base's, and the
  base weights are bit-identical after training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import caramba
from caramba.cli import main

PRESETS = Path(__file__).resolve().parents[2] / "config" / "presets"
OURS = ["standard_transformer", "moe_transformer", "mamba_ssm", "vit", "lora_finetune", "mlp_classifier",
        "diffusion_vector", "graph_node_classification"]
LM_LOSS_BOUND = 2.2  # nats/byte; the stdlib corpus's unigram entropy is 3.14


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("presets")


_reports: dict[str, dict] = {}


def run_quick(out: Path, name: str, *overrides: str) -> dict:
    """``caramba run NAME --target quick --out OUT``, once per module; the report it wrote."""
    if name not in _reports:
        args = ["run", name, "--target", "quick", "--out", str(out)]
        for o in overrides:
            args += ["-s", o]
        assert main(args) == 0
        _reports[name] = json.loads((out / name / "quick" / "report.json").read_text())
    return _reports[name]


def metrics(report: dict, run: int = 0) -> dict[str, float]:
    return report["runs"][run]["metrics"]


# --- every target validates, and its plan prints --------------------------------------------


def test_the_presets_are_all_here() -> None:
    assert {p.stem for p in PRESETS.glob("*.yml")} >= set(OURS)


@pytest.mark.parametrize("name", OURS)
def test_every_target_validates_and_prints_its_plan(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(PRESETS / f"{name}.yml")]) == 0
    manifest = caramba.Runtime().load_manifest(str(PRESETS / f"{name}.yml"))
    names = [t.name for t in manifest.targets]
    assert "quick" in names and any(n.startswith("paper") for n in names)
    capsys.readouterr()
    for target in names:
        assert main(["run", name, "--target", target, "--dry-run"]) == 0
        plan = capsys.readouterr().out
        assert f"target {target} (experiment)" in plan
        assert "parameters " in plan and " steps" in plan


def test_a_preset_is_found_by_name_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caramba.cli._commands import find_manifest

    monkeypatch.chdir(tmp_path)
    found = Path(find_manifest(caramba.Runtime(), "vit"))
    assert found.name == "vit.yml" and found.resolve() == (PRESETS / "vit.yml").resolve()


# --- each quick target runs end to end --------------------------------------------------------


@pytest.mark.slow
def test_standard_transformer_learns_the_corpus_and_writes_the_tour_artifacts(out: Path) -> None:
    report = run_quick(out, "standard_transformer")
    assert metrics(report)["val_loss"] < LM_LOSS_BOUND
    assert all(check["passed"] for check in report["runs"][0]["verify"])
    (ppl,) = report["benchmarks"]["ppl"]["rows"]
    assert ppl["model"] == "GPT (quick)" and ppl["perplexity"] < 9.0  # exp(2.2)
    assert all(row["kv_ok"] for row in report["benchmarks"]["memory"]["rows"])
    folder = out / "standard_transformer" / "quick"
    for f in ("perplexity.csv", "latency.csv", "memory.csv", "summary.png", "tables.tex"):
        assert (folder / f).stat().st_size > 0, f
    assert "GPT (quick)" in (folder / "tables.tex").read_text()


@pytest.mark.slow
def test_moe_transformer_learns_the_corpus_with_its_load_balancing_loss(out: Path) -> None:
    m = metrics(run_quick(out, "moe_transformer"))
    assert m["val_loss"] < LM_LOSS_BOUND
    # Switch loss is 1.0 when balanced (weight 0.01 per layer, 2 layers): it reached the objective.
    assert 0.015 < m["aux_loss"] < 0.05


@pytest.mark.slow
def test_mamba_ssm_learns_the_corpus(out: Path) -> None:
    report = run_quick(out, "mamba_ssm")
    assert metrics(report)["val_loss"] < LM_LOSS_BOUND
    assert all(row["kv_bytes"] == 0 and row["state_bytes"] > 0 for row in report["benchmarks"]["memory"]["rows"])


def test_mlp_classifier_reaches_90_percent_held_out_accuracy(out: Path) -> None:
    assert metrics(run_quick(out, "mlp_classifier"))["val_acc"] >= 0.9


@pytest.mark.slow  # over 10 s on 2 cores
def test_vit_reaches_80_percent_held_out_accuracy(out: Path) -> None:
    assert metrics(run_quick(out, "vit"))["val_acc"] >= 0.8


def test_gcn_reaches_80_percent_held_out_accuracy_on_the_karate_club(out: Path) -> None:
    assert metrics(run_quick(out, "graph_node_classification"))["val_acc"] >= 0.8


@pytest.mark.slow
def test_ddpm_samples_are_closer_to_held_out_data_than_a_gaussian_fit(out: Path) -> None:
    rows = {r["role"]: r for r in run_quick(out, "diffusion_vector")["benchmarks"]["samples"]["rows"]}
    ddpm, gauss = rows["student"], rows["gaussian_fit"]
    assert ddpm["mmd2"] < gauss["mmd2"]
    assert ddpm["nn_distance"] < gauss["nn_distance"]
    folder = out / "diffusion_vector" / "quick"
    assert (folder / "diffusion_samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "diffusion.csv").read_text().count("\n") == 4  # header + DDPM, Gaussian fit, training rows


@pytest.mark.slow
def test_lora_adapts_the_standard_presets_checkpoint_to_new_text(out: Path) -> None:
    run_quick(out, "standard_transformer")
    base = out / "standard_transformer" / "quick" / "runs" / "train" / "checkpoints"
    report = run_quick(out, "lora_finetune", f"targets.quick.runs.adapt.train.init_checkpoint={base}")
    m = metrics(report)
    assert m["val_loss"] < m["init_val_loss"] - 0.3  # base vs adapted, held-out KJV text

    run = out / "lora_finetune" / "quick" / "runs" / "adapt"
    adapters = load_file(run / "adapters" / "adapter.safetensors")
    assert adapters and all(k.endswith((".lora_A", ".lora_B")) for k in adapters)
    assert len(adapters) == 2 * 7 * 2  # A and B, 7 projections per block, 2 blocks
    # The base stayed frozen: every base tensor of the adapted checkpoint equals the base's.
    (base_step,) = sorted(base.glob("step_*"))[-1:]
    (adapt_step,) = sorted((run / "checkpoints").glob("step_*"))[-1:]
    before, after = load_file(base_step / "model.safetensors"), load_file(adapt_step / "model.safetensors")
    assert set(after) - set(before) == set(adapters)
    assert all(before[k].equal(after[k]) for k in before)


def test_init_checkpoint_target_ref_runs_the_named_target_first(tmp_path: Path) -> None:
    text = """
version: 2
name: chain
targets:
  - name: base
    data: {ref: dataset.digits, config: {as: vectors}}
    system: {ref: system.mlp_classifier, config: {d_in: 64, d_hidden: 16, n_layers: 1, n_classes: 10}}
    objective: objective.classification_ce
    trainer: trainer.standard
    runs: [{id: train, steps: 30, train: {batch_size: 32, lr: 1.0e-2, progress: false}}]
  - name: tuned
    data: {ref: dataset.digits, config: {as: vectors}}
    system: {ref: system.mlp_classifier, config: {d_in: 64, d_hidden: 16, n_layers: 1, n_classes: 10}}
    objective: objective.classification_ce
    trainer: trainer.standard
    runs: [{id: more, steps: 5, train: {init_checkpoint: "target:base", batch_size: 32, lr: 1.0e-3,
                                        progress: false}}]
"""
    path = tmp_path / "chain.yml"
    path.write_text(text)
    assert main(["run", str(path), "--target", "tuned", "--out", str(tmp_path / "out")]) == 0
    base = json.loads((tmp_path / "out" / "chain" / "base" / "report.json").read_text())
    tuned = json.loads((tmp_path / "out" / "chain" / "tuned" / "report.json").read_text())
    # The tuned run started where base ended: its starting held-out loss is base's final one.
    assert tuned["runs"][0]["metrics"]["init_val_loss"] == pytest.approx(base["runs"][0]["metrics"]["val_loss"])


def test_init_checkpoint_naming_a_missing_run_is_a_clear_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "graph_node_classification", "--target", "quick", "--out", str(tmp_path),
                 "-s", "targets.quick.runs.train.train.init_checkpoint=target:paper/nope"])
    assert code == 1
    assert "target 'paper' has no run 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("entry", ["python -m caramba", "caramba"])
@pytest.mark.slow  # over 10 s on 2 cores
def test_both_entry_points_run_a_quick_target(entry: str, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "caramba"
    if entry == "caramba" and not script.exists():
        pytest.skip("the caramba console script is not installed next to this interpreter")
    command = [sys.executable, "-m", "caramba"] if entry == "python -m caramba" else [str(script)]
    proc = subprocess.run([*command, "run", "graph_node_classification", "--target", "quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "artifacts in" in proc.stderr
    assert (tmp_path / "graph_node_classification" / "quick" / "report.json").exists()
