"""A run records which backend ran each op; a pin that cannot run is a usage error before training."""

from __future__ import annotations

import json

import pytest

import caramba
from caramba import UsageError, run_target

MANIFEST = """
version: 2
name: kernels_run
defaults: {logging: {eval_iters: 1}}
targets:
- type: experiment
  name: tiny
  data: {ref: dataset.text, config: {corpus: stdlib, tokenizer: byte, block_size: 16, max_chars: 20000}}
  system:
    ref: system.language_model
    config:
      model:
        type: TransformerModel
        embedder: {type: token, vocab_size: 257, d_model: 16}
        topology:
          type: StackedTopology
          layers:
          - type: ResidualTopology
            layers:
            - {type: RMSNormLayer, d_model: 16}
            - {type: AttentionLayer, d_model: 16, n_heads: 2}
          - type: ResidualTopology
            layers:
            - {type: RMSNormLayer, d_model: 16}
            - {type: SwiGLULayer, d_model: 16, d_ff: 32}
  objective: objective.next_token_ce
  trainer: trainer.standard
  runs:
  - {id: r, seed: 0, steps: 2, train: {batch_size: 2, lr: 0.001, progress: false, device: cpu}}
"""


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("CARAMBA_CACHE_DIR", str(tmp_path / "cache"))
    rt = caramba.Runtime()  # every installed plugin, caramba-kernels included
    if rt.registry("kernel_backend").find("triton") is None:
        pytest.skip("caramba-kernels is not installed")

    def go(*overrides: str):
        return run_target(rt, rt.load_manifest_text(MANIFEST, overrides=overrides), root=tmp_path / "out")
    return go


def test_the_run_folder_records_the_backend_of_every_op(run, tmp_path):
    run()
    chosen = json.loads((tmp_path / "out" / "kernels_run" / "tiny" / "runs" / "r" / "kernels.json").read_text())
    # on a CPU in fp32 every op runs the torch reference
    assert chosen == {"device": "cpu", "dtype": "fp32",
                      "ops": {"decode_attention": "torch", "rms_norm": "torch", "swiglu": "torch"}}


def test_pinning_a_backend_that_cannot_run_here_stops_the_run_with_the_field(run):
    with pytest.raises(UsageError) as info:
        run("defaults.kernels.decode_attention=triton")
    assert info.value.path == "defaults.kernels.decode_attention"
    assert "cannot run decode_attention on cpu/fp32" in str(info.value)
