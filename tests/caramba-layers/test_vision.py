"""system.image_classifier: a ViT classifier read against a hand-written reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import caramba
from caramba.pipeline._session import TargetSession

MANIFEST = """
version: 2
targets:
  - name: t
    data: dataset.digits
    objective: objective.classification_ce
    trainer: trainer.standard
    system:
      ref: system.image_classifier
      config:
        n_classes: 3
        model:
          embedder: {type: patch, img_size: 4, patch_size: 2, in_channels: 1, d_model: 8, pool: POOL}
          topology:
            type: StackedTopology
            layers:
              - {type: AttentionLayer, d_model: 8, n_heads: 2, is_causal: false, rope_enabled: false}
"""


def _build(pool: str):
    rt = caramba.Runtime()
    manifest = rt.load_manifest_text(MANIFEST.replace("POOL", pool))
    target = manifest.target("t")
    return target.system.config, TargetSession(rt, manifest, target, None).build_system()


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_logits_are_the_head_of_the_pooled_token(pool: str) -> None:
    torch.manual_seed(0)
    config, model = _build(pool)
    x = torch.randn(5, 1, 4, 4)
    logits = model({"inputs": x})["logits"]
    # Reference: patches by unfold, position embeddings, one attention over every token, pool, norm, head.
    e = model.embedder
    patches = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)  # (B, 4, 4)
    tokens = patches @ e.proj.weight.reshape(8, -1).T + e.proj.bias
    if pool == "cls":
        tokens = torch.cat([e.cls_token.expand(5, -1, -1), tokens], dim=1)
    tokens = tokens + e.pos_embedding
    attn = model.topology.layers[0]
    q, k, v = (proj(tokens).reshape(5, -1, 2, 4).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    h = attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(5, -1, 8))
    pooled = h[:, 0] if pool == "cls" else h.mean(dim=1)
    expected = model.head(model.norm(pooled))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert logits.shape == (5, 3)
    assert sum(p.numel() for p in model.parameters()) == config.num_params()


def test_a_classifier_without_pooling_is_rejected_at_validation() -> None:
    rt = caramba.Runtime()
    with pytest.raises(caramba.ManifestError, match="one vector per image"):
        rt.load_manifest_text(MANIFEST.replace("POOL", "none"))


def test_a_topology_that_changes_width_is_rejected_at_validation() -> None:
    rt = caramba.Runtime()
    text = MANIFEST.replace("POOL", "cls").replace(
        "- {type: AttentionLayer", "- {type: LinearLayer, d_in: 8, d_out: 6}\n              - {type: X")
    attention = "              - {type: X, d_model: 8, n_heads: 2, is_causal: false, rope_enabled: false}\n"
    text = text.replace(attention, "")
    with pytest.raises(caramba.ManifestError, match="outputs 6 features"):
        rt.load_manifest_text(text)
