"""train.init_checkpoint from a Hugging Face Llama folder, with LoRA on top: the run's starting
held-out loss is the loss transformers computes for that checkpoint on the same batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import caramba
from caramba.cli import main

transformers = pytest.importorskip("transformers")


def test_a_run_starts_from_an_hf_llama_and_reports_its_held_out_loss(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "llama")
    from caramba_layers.hf import HFCheckpoint

    model = HFCheckpoint().model_config(tmp_path / "llama")
    data = {"ref": "dataset.text", "config": {"corpus": "stdlib", "tokenizer": "byte", "block_size": 32,
                                              "max_chars": 200000}}
    manifest = {
        "version": 2, "name": "from_hf",
        "targets": [{
            "name": "tune", "data": data,
            "system": {"ref": "system.language_model",
                       "config": {"model": model, "lora": {"targets": ["q_proj", "v_proj"], "r": 4}}},
            "objective": "objective.next_token_ce", "trainer": "trainer.standard",
            "runs": [{"id": "adapt", "steps": 2, "train": {
                "init_checkpoint": str(tmp_path / "llama"), "batch_size": 4, "eval_batches": 3, "progress": False}}],
        }],
    }
    path = tmp_path / "m.yml"
    path.write_text(yaml.safe_dump(manifest))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "from_hf" / "tune" / "report.json").read_text())

    # The reference: transformers' loss on the same three held-out batches.
    rt = caramba.Runtime()
    ds = rt.get("dataset", "dataset.text").load()(rt.load_manifest(str(path)).target("tune").data.config)
    losses = []
    with torch.no_grad():
        for batch in ds.iter_batches("val", 4, limit=3):
            logits = hf(batch["input_ids"]).logits
            losses.append(float(F.cross_entropy(logits.flatten(0, 1), batch["target_ids"].flatten())))
    assert report["runs"][0]["metrics"]["init_val_loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)
    assert (tmp_path / "out" / "from_hf" / "tune" / "runs" / "adapt" / "adapters" / "adapter.safetensors").exists()
