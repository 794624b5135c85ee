"""A manifest with a verify block and all three benchmarks runs on CPU and writes every artifact."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess

import pytest

import caramba
from caramba.errors import ManifestError, RunError
from caramba.pipeline import run_target
from caramba_infer import plugin as infer_plugin
from caramba_infer import testing

MANIFEST = """
version: 2
name: infer_e2e
targets:
  - type: experiment
    name: pair
    data: {ref: dataset.infer_text, config: {block_size: 32}}
    system:
      ref: system.infer_tiny_lm
      config: {d_model: 32, n_heads: 4, n_kv_heads: 2, mixers: [gqa, decoupled]}
    objective: objective.infer_ce
    trainer: trainer.infer_pair
    labels: {teacher: "GQA teacher", student: "DBA_student & co"}
    runs:
      - id: main
        steps: 15
        train: {lr: 0.01, batch_size: 4, student_noise: 0.002}
        verify:
          - type: compare
            batches: 2
            attention: {max_mean_l1: 10.0}
            logits: {max_mean_l1: 10.0, max_max_l1: 100.0}
          - type: fidelity
            batches: 2
            max_delta_nll: 1.0
          - type: eval
            tokenizer: dataset
            max_new_tokens: 4
            cases:
              - {id: digits, prompt: "width = ", kind: int_greedy, answer: 70}
              - {id: kw, prompt: "def ", kind: choice_logprob, choices: ["fill", "zzzz"], answer: "fill"}
              - {id: ws, prompt: "import ", kind: exact_match_greedy, answer: "re"}
            thresholds: {min_student_accuracy: 0.0, max_accuracy_drop: 1.0}
    benchmarks:
      - id: ppl
        config: {type: perplexity, num_batches: 3, batch_size: 2}
        models: [teacher, student]
      - id: lat
        config: {type: latency, prompt_lengths: [8, 16], generation_lengths: [4], warmup_runs: 1, timed_runs: 2}
        models: [teacher, student]
      - id: mem
        config: {type: memory, sequence_lengths: [16, 32], cache_kinds: [fp32, fp16, q8_0], decode_steps: 2}
        models: [teacher, student]
"""


def runtime() -> caramba.Runtime:
    return caramba.Runtime(autoload=False, plugins=[infer_plugin, testing])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    rt = runtime()
    report = run_target(rt, rt.load_manifest_text(MANIFEST), "pair", root=root)
    return report, root / "infer_e2e" / "pair"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_verify_results_land_in_the_runs_report(finished):
    report, folder = finished
    saved = json.loads((folder / "report.json").read_text())
    checks = {c["name"]: c for c in saved["runs"][0]["verify"]}
    assert set(checks) == {"compare", "fidelity", "eval"}
    assert checks["compare"]["passed"] and checks["compare"]["metrics"]["logits_mean_l1"] > 0
    assert set(checks["compare"]["metrics"]["layers"]) == {"blocks.0.mixer", "blocks.1.mixer"}
    fid = checks["fidelity"]["metrics"]
    assert fid["ppl_ratio"] == pytest.approx(2.718281828 ** fid["delta_nll"], rel=1e-9)
    assert {c["id"] for c in checks["eval"]["metrics"]["cases"]["student"]} == {"digits", "kw", "ws"}


def test_every_artifact_exists_and_parses(finished):
    report, folder = finished
    saved = json.loads((folder / "report.json").read_text())
    assert set(saved["benchmarks"]) == {"ppl", "lat", "mem"}
    assert set(saved["summary"]["models"]) == {"GQA teacher", "DBA_student & co"}
    assert "DBA_student & co vs GQA teacher" in saved["summary"]["ratios"]

    from caramba_infer.artifacts import CSV_COLUMNS

    for kind in ("perplexity", "latency", "memory"):
        rows = read_csv(folder / f"{kind}.csv")
        assert list(rows[0]) == CSV_COLUMNS[kind]
        assert {r["model"] for r in rows} == {"GQA teacher", "DBA_student & co"}
    ppl = read_csv(folder / "perplexity.csv")
    assert all(r["split"] == "val" and float(r["perplexity"]) > 1 for r in ppl)
    lat = read_csv(folder / "latency.csv")
    assert len(lat) == 2 * 2 and all(float(r["tokens_per_sec"]) > 0 for r in lat)
    mem = read_csv(folder / "memory.csv")
    assert len(mem) == 2 * 3 * 2
    assert all(r["kv_ok"] == "True" for r in mem if r["cache_kind"] in ("fp32", "fp16"))

    from PIL import Image

    for name in ("summary.png", "latency_vs_context.png", "memory_scaling.png"):
        with Image.open(folder / name) as img:
            img.verify()
            assert img.format == "PNG"

    tex = (folder / "tables.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\") and "&" in line][1:]
    assert [re.split(r"(?<!\\)&", line)[0].strip() for line in body] == ["GQA teacher", r"DBA\_student \& co"]
    assert str(folder / "tables.tex") in report["artifacts"]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_tables_compile_with_pdflatex(finished, tmp_path):
    _, folder = finished
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   f"\\input{{{folder / 'tables.tex'}}}\n\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0


def test_a_failing_verify_with_fail_fast_stops_the_run(tmp_path):
    text = MANIFEST.replace("max_delta_nll: 1.0", "max_delta_nll: -5.0\n            fail_fast: true")
    rt = runtime()
    with pytest.raises(RunError, match="fidelity"):
        run_target(rt, rt.load_manifest_text(text), "pair", root=tmp_path)


def test_compare_without_a_reference_model_names_the_roles_the_run_produced(tmp_path):
    text = MANIFEST.replace("student_noise: 0.002}", "student_noise: 0.002, teacher: false}")
    rt = runtime()
    with pytest.raises(RunError, match=r"needs the model 'teacher'.*\['student'\]"):
        run_target(rt, rt.load_manifest_text(text), "pair", root=tmp_path)


def test_verify_thresholds_are_required_and_reported_at_their_path():
    text = MANIFEST.replace("max_delta_nll: 1.0", "split: val")
    with pytest.raises(ManifestError, match=r"verify\[1\].*fidelity needs a threshold"):
        runtime().load_manifest_text(text)
