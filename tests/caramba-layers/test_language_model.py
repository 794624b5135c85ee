"""system.language_model: outputs, the LM head, tied embeddings, parameter counts and checks."""

from __future__ import annotations

import copy

import pytest
import torch

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.graph import Builder
from caramba_layers.specs.language_model import LanguageModelConfig

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])
V, D = 37, 16


def model(tied=True, head=True, attention=None):
    attn = attention or {"type": "AttentionLayer", "d_model": D, "n_heads": 4, "n_kv_heads": 2, "mode": "gqa"}
    layers = [
        {"type": "NestedTopology", "repeat": 2, "layers": [
            {"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": D}, attn]},
            {"type": "ResidualTopology", "layers": [{"type": "RMSNormLayer", "d_model": D},
                                                    {"type": "SwiGLULayer", "d_model": D, "d_ff": 24}]}]},
        {"type": "RMSNormLayer", "d_model": D},
    ]
    if head:
        layers.append({"type": "LinearLayer", "d_in": D, "d_out": V, "bias": False})
    return {"model": {"type": "TransformerModel", "tied_embeddings": tied,
                      "embedder": {"type": "token", "vocab_size": V, "d_model": D},
                      "topology": {"type": "StackedTopology", "layers": layers}}}


def build(data):
    config = RT.parse(LanguageModelConfig, data)
    torch.manual_seed(0)
    return config, RT.get("system", "system.language_model").load()(config, Builder(RT))


def check(data):
    """``[(field path, message)]`` of the problems validation reports for a system config."""
    try:
        RT.parse(LanguageModelConfig, data)
    except caramba.ManifestError as err:
        return [(p.path, p.message) for p in err.problems]
    return []


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("head", [True, False])
def test_outputs_and_parameter_count(tied, head):
    config, lm = build(model(tied, head))
    ids = torch.randint(0, V, (2, 5))
    out = lm({"input_ids": ids})
    assert out["logits"].shape == (2, 5, V) and out["hidden"].shape == (2, 5, D)
    torch.testing.assert_close(out["logits"], out["hidden"] @ lm.head.weight.T)
    assert (lm.head.weight is lm.embedder.embedding.weight) == tied
    assert config.num_params() == sum(p.numel() for p in lm.parameters())  # tied weights counted once
    assert check(model(tied, head)) == []


def test_hidden_is_the_topology_output_before_the_head():
    _, lm = build(model())
    ids = torch.randint(0, V, (1, 4))
    x = lm.embedder(ids)
    for layer in lm.topology.layers[:2]:
        x = layer(x, caramba.Context())
    torch.testing.assert_close(lm({"input_ids": ids})["hidden"], x)


def test_module_paths_follow_the_manifest():
    _, lm = build(model())
    assert lm.topology.layers[0].layers[1].layers[1].node_path == "topology.layers.0.layers.1.layers.1"
    assert lm.embedder.node_path == "embedder"


def test_kv_elements_per_token_sums_the_attention_layers():
    config, _ = build(model())
    assert config.kv_elements_per_token() == 2 * (2 * 2 * 4)  # 2 layers × (k + v) × 2 kv heads × head dim 4


def test_checks_report_vocab_and_head_problems():
    wrong_head = model()
    wrong_head["model"]["topology"]["layers"][-1]["d_out"] = V + 1
    assert "features" in check(wrong_head)[0][1]
    tied_mismatch = model()
    tied_mismatch["model"]["topology"]["layers"][-1] = {"type": "LinearLayer", "d_in": D, "d_out": V}
    tied_mismatch["model"]["topology"]["layers"].insert(-1, {"type": "LinearLayer", "d_in": D, "d_out": 8})
    tied_mismatch["model"]["topology"]["layers"][-1]["d_in"] = 8
    problem = check(tied_mismatch)[0]
    assert problem[0] == "model.topology.layers[3].d_in" and "tied_embeddings" in problem[1]
    patch = copy.deepcopy(model())
    patch["model"]["embedder"] = {"type": "patch", "img_size": 8, "patch_size": 4, "d_model": D}
    assert check(patch)[0][0] == "model.embedder.type"


def test_training_step_reduces_the_loss():
    _, lm = build(model())
    ids = torch.randint(0, V, (4, 9), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        logits = lm({"input_ids": ids[:, :-1]}, caramba.Context(training=True))["logits"]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
