"""The infer components in a manifest of real components: caramba-layers' language model,
caramba-trainers' text dataset, objective and standard trainer."""

from __future__ import annotations

import csv
import json

import pytest

import caramba
from caramba import run_target
from caramba_infer import plugin as infer_plugin

layers = pytest.importorskip("caramba_layers.plugin")
trainers = pytest.importorskip("caramba_trainers.plugin")

MANIFEST = """
version: 2
name: real
vars: {{d: 32}}
targets:
  - type: experiment
    name: lm
    data: {{ref: dataset.text, config: {{corpus: stdlib, tokenizer: byte, block_size: 32, max_chars: 40000,
                                        val_frac: 0.2, cache_dir: "{cache}"}}}}
    system:
      ref: system.language_model
      config:
        model:
          embedder: {{type: token, vocab_size: 257, d_model: "${{d}}"}}
          topology:
            type: StackedTopology
            layers:
              - {{type: ResidualTopology, layers: [{{type: RMSNormLayer, d_model: "${{d}}"}},
                  {{type: AttentionLayer, d_model: "${{d}}", n_heads: 4, mode: decoupled, sem_dim: 8, geo_dim: 16}}]}}
              - {{type: ResidualTopology, layers: [{{type: RMSNormLayer, d_model: "${{d}}"}},
                  {{type: SSMLayer, d_model: "${{d}}", d_state: 4}}]}}
              - {{type: RMSNormLayer, d_model: "${{d}}"}}
    objective: objective.next_token_ce
    trainer: trainer.standard
    labels: {{student: "DBA+SSM"}}
    runs:
      - id: r
        steps: 4
        train: {{batch_size: 4, lr: 0.003, progress: false}}
        verify:
          - type: eval
            max_new_tokens: 3
            cases: [{{id: kw, prompt: "import ", kind: choice_logprob, choices: ["os", "zz"], answer: "os"}}]
            thresholds: {{min_student_accuracy: 0.0}}
    benchmarks:
      - {{id: ppl, config: {{type: perplexity, num_batches: 2, batch_size: 2}}}}
      - {{id: lat, config: {{type: latency, prompt_lengths: [8], generation_lengths: [3], timed_runs: 1}}}}
      - {{id: mem, config: {{type: memory, sequence_lengths: [16], cache_kinds: [fp32, bf16], decode_steps: 1}}}}
"""


@pytest.mark.slow  # over 10 s on 2 cores
def test_real_components_run_through_verify_benchmarks_and_artifacts(tmp_path):
    rt = caramba.Runtime(autoload=False, plugins=[layers, trainers, infer_plugin])
    manifest = rt.load_manifest_text(MANIFEST.format(cache=tmp_path / "cache"))
    report = run_target(rt, manifest, "lm", root=tmp_path)
    folder = tmp_path / "real" / "lm"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["runs"][0]["verify"][0]["name"] == "eval"
    assert list(saved["summary"]["models"]) == ["DBA+SSM"]
    with open(folder / "memory.csv", newline="") as f:
        mem = list(csv.DictReader(f))
    assert [r["kv_ok"] for r in mem] == ["True", "True"]
    assert all(int(r["state_bytes"]) > 0 for r in mem)  # the SSM's recurrent state, reported apart
    for name in ("perplexity.csv", "latency.csv", "summary.png", "latency_vs_context.png", "memory_scaling.png",
                 "tables.tex"):
        assert str(folder / name) in report["artifacts"]
