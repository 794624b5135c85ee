"""LoRA: the layer, the pass over a built model, merge/unmerge and adapter files."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from caramba.errors import CarambaError, CheckpointError, ManifestError
from caramba.graph import Context, NodeConfig
from caramba.plugins import Runtime
from caramba.testing import LayerConformance
from caramba_layers import plugin
from caramba_layers.modules.lora import (
    LoRALinear,
    apply_lora,
    load_adapters,
    lora_state_dict,
    merge_lora,
    save_adapters,
    unmerge_lora,
)

RT = Runtime(autoload=False, plugins=[plugin])


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(6, 6)
        self.k_proj = nn.Linear(6, 6)
        self.v_proj = nn.Linear(6, 4, bias=False)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.v_proj(torch.tanh(self.q_proj(x) + self.k_proj(x))))


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Block(), nn.Linear(4, 3)).double()


def perturb(m: nn.Module) -> None:
    """Give fresh adapters non-zero B so they change the output."""
    with torch.no_grad():
        for lora in (x for x in m.modules() if isinstance(x, LoRALinear)):
            lora.lora_B.normal_()


class TestLoRALinearLayer(LayerConformance):
    plugins = [plugin]
    spec_module = "caramba_layers.specs.lora"
    config = {"type": "LoRALinearLayer", "d_in": 8, "d_out": 5, "r": 2, "alpha": 4.0, "dropout": 0.1}
    input_shape = (2, 3, 8)


def test_lora_layer_is_the_frozen_linear_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    layer = RT.build(RT.parse(NodeConfig, {"type": "LoRALinearLayer", "d_in": 5, "d_out": 3, "r": 2,
                                           "alpha": 6.0}), "node").double()
    lin = layer.linear
    torch.testing.assert_close(lin.lora_B, torch.zeros(3, 2, dtype=torch.float64))
    perturb(layer)
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = x @ (lin.weight + lin.lora_B @ lin.lora_A * 3.0).T + lin.bias
    torch.testing.assert_close(layer(x, Context()), expected)
    assert not lin.weight.requires_grad and not lin.bias.requires_grad
    assert list(layer.state_dict()) == ["linear.weight", "linear.bias", "linear.lora_A", "linear.lora_B"]


def test_apply_lora_wraps_matching_linears_and_keeps_base_keys():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    wrapped = apply_lora(m, ["q_proj", "v_proj"], r=2, alpha=4.0)
    assert wrapped == ["0.q_proj", "0.v_proj"]
    assert isinstance(m[0].q_proj, LoRALinear) and type(m[0].k_proj) is nn.Linear
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # base keys and values unchanged
    assert set(after) - set(before) == {"0.q_proj.lora_A", "0.q_proj.lora_B", "0.v_proj.lora_A", "0.v_proj.lora_B"}
    x = torch.randn(2, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), torch.func.functional_call(model(), before, (x,)))  # B = 0: no change


def test_patterns_match_paths_and_no_match_is_an_error():
    assert apply_lora(model(), ["*.k_proj"]) == ["0.k_proj"]
    assert apply_lora(model(), ["1"]) == ["1"]
    with pytest.raises(CarambaError, match="match no nn.Linear") as err:
        apply_lora(model(), ["o_proj"])
    assert "0.q_proj" in err.value.hint


def test_only_adapter_parameters_receive_gradients():
    m = model()
    apply_lora(m, ["q_proj", "v_proj"], r=2, dropout=0.1)
    perturb(m)
    m(torch.randn(3, 6, dtype=torch.float64)).square().sum().backward()
    for name, p in m.named_parameters():
        is_adapter = "lora_" in name
        assert p.requires_grad == is_adapter, name
        assert (p.grad is not None) == is_adapter, name
    train_also = model()
    apply_lora(train_also, ["q_proj"], train_also=["1"])
    assert [n for n, p in train_also.named_parameters() if p.requires_grad] == [
        "0.q_proj.lora_A", "0.q_proj.lora_B", "1.weight", "1.bias"]


def test_merged_model_equals_unmerged_and_unmerge_restores_the_base():
    m = model()
    base = {k: v.clone() for k, v in m.state_dict().items()}
    apply_lora(m, ["q_proj", "v_proj", "k_proj"], r=3, alpha=5.0)
    perturb(m)
    m.eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    unmerged = m(x)
    merge_lora(m)
    assert all(layer.merged for layer in m.modules() if isinstance(layer, LoRALinear))
    torch.testing.assert_close(m(x), unmerged)
    assert not torch.equal(m[0].q_proj.weight, base["0.q_proj.weight"])
    merge_lora(m)  # idempotent
    torch.testing.assert_close(m(x), unmerged)
    unmerge_lora(m)
    torch.testing.assert_close(m[0].q_proj.weight, base["0.q_proj.weight"])
    torch.testing.assert_close(m(x), unmerged)


def test_adapters_save_and_load_alone(tmp_path):
    trained = model()
    apply_lora(trained, ["q_proj", "v_proj"], r=2, alpha=8.0)
    perturb(trained)
    trained.eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    save_adapters(trained, tmp_path / "adapters")
    meta = json.loads((tmp_path / "adapters" / "adapter.json").read_text())
    assert meta["modules"]["0.q_proj"]["r"] == 2 and meta["modules"]["0.v_proj"]["alpha"] == 8.0
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapters" / "adapter.safetensors"))
    assert set(saved) == set(lora_state_dict(trained)) == {
        "0.q_proj.lora_A", "0.q_proj.lora_B", "0.v_proj.lora_A", "0.v_proj.lora_B"}

    fresh = model()  # same base weights (same seed), no adapters yet
    assert load_adapters(fresh, tmp_path / "adapters") == ["0.q_proj", "0.v_proj"]
    fresh.eval()
    torch.testing.assert_close(fresh(x), trained(x))
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == list(saved)

    merged = model()
    apply_lora(merged, ["q_proj", "v_proj"], r=2, alpha=8.0)
    merge_lora(merged)
    load_adapters(merged, tmp_path / "adapters")  # loading into merged weights re-merges the new adapters
    merged.eval()
    torch.testing.assert_close(merged(x), trained(x))


def test_incompatible_or_missing_adapters_are_checkpoint_errors(tmp_path):
    m = model()
    apply_lora(m, ["q_proj"], r=2)
    save_adapters(m, tmp_path)
    other = model()
    apply_lora(other, ["q_proj"], r=4)
    with pytest.raises(CheckpointError, match="r=2"):
        load_adapters(other, tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        load_adapters(model(), tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no such module"):
        load_adapters(nn.Sequential(nn.Linear(6, 6)), tmp_path)


def test_bad_lora_fields_are_manifest_errors():
    with pytest.raises(ManifestError, match="r"):
        RT.parse(NodeConfig, {"type": "LoRALinearLayer", "d_in": 4, "d_out": 4, "r": 0})


def test_gradcheck():
    lora = LoRALinear(4, 3, r=2, alpha=2.0).double()
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, a, b: torch.func.functional_call(
        lora, {"lora_A": a, "lora_B": b, "weight": lora.weight, "bias": lora.bias}, (t,)),
        (x, lora.lora_A.detach().requires_grad_(), lora.lora_B.detach().requires_grad_()))
