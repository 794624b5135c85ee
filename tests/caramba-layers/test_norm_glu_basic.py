"""Norms, GLU feed-forwards, Linear and Dropout against formulas written out in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import caramba
import caramba_layers.plugin as layers_plugin
from caramba.graph import NodeConfig
from caramba.testing import LayerConformance

RT = caramba.Runtime(autoload=False, plugins=[layers_plugin])


def build(**fields):
    torch.manual_seed(0)
    module = RT.build(RT.parse(NodeConfig, fields), "node").double()
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()  # away from the ones/zeros init, so every parameter matters
    return module


def test_rmsnorm_matches_the_formula():
    m = build(type="RMSNormLayer", d_model=6, eps=1e-3)
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    expected = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-3) * m.weight
    torch.testing.assert_close(m(x), expected)


def test_rmsnorm_without_affine_has_no_parameters():
    m = build(type="RMSNormLayer", d_model=6, elementwise_affine=False)
    x = torch.randn(4, 6, dtype=torch.float64)
    assert list(m.parameters()) == []
    torch.testing.assert_close(m(x), x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5))


def test_rmsnorm_matches_transformers_llama_rmsnorm():
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    ours = build(type="RMSNormLayer", d_model=8, eps=1e-6).float()
    ref = LlamaRMSNorm(8, eps=1e-6)
    ref.weight.data.copy_(ours.weight.data)
    x = torch.randn(2, 5, 8).to(torch.bfloat16)
    assert transformers is not None
    torch.testing.assert_close(ours(x.float()), ref(x.float()))
    torch.testing.assert_close(ours(x), ref(x))  # low precision: both normalise in float32


def test_layernorm_matches_the_formula():
    m = build(type="LayerNormLayer", d_model=5, eps=1e-4)
    x = torch.randn(3, 5, dtype=torch.float64)
    mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(m(x), (x - mean) / torch.sqrt(var + 1e-4) * m.weight + m.bias)


@pytest.mark.parametrize("activation,fn", [
    ("silu", lambda t: t * torch.sigmoid(t)), ("swiglu", lambda t: t * torch.sigmoid(t)),
    ("gelu", lambda t: 0.5 * t * (1 + torch.erf(t / 2 ** 0.5))),
    ("geglu", lambda t: 0.5 * t * (1 + torch.erf(t / 2 ** 0.5))),
    ("relu", lambda t: t.clamp(min=0)), ("reglu", lambda t: t.clamp(min=0)), ("sigmoid", torch.sigmoid),
])
def test_glu_matches_the_formula(activation, fn):
    m = build(type="GLULayer", d_model=4, d_ff=6, activation=activation)
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    gate = x @ m.w_gate.weight.T + m.w_gate.bias
    up = x @ m.w_up.weight.T + m.w_up.bias
    torch.testing.assert_close(m(x), (fn(gate) * up) @ m.w_down.weight.T + m.w_down.bias)


def test_glu_variant_names_read_as_their_activation():
    config = RT.parse(NodeConfig, {"type": "GLULayer", "d_model": 4, "d_ff": 8, "activation": "geglu"})
    assert config.activation == "gelu"
    with pytest.raises(caramba.ManifestError, match="activation"):
        RT.parse(NodeConfig, {"type": "GLULayer", "d_model": 4, "d_ff": 8, "activation": "tanh"})


def test_swiglu_is_silu_glu_without_bias():
    m = build(type="SwiGLULayer", d_model=4, d_ff=6, bias=False)
    x = torch.randn(5, 4, dtype=torch.float64)
    expected = (F.silu(x @ m.w_gate.weight.T) * (x @ m.w_up.weight.T)) @ m.w_down.weight.T
    torch.testing.assert_close(m(x), expected)


def test_linear_matches_the_formula_and_dropout_is_identity_in_eval():
    lin = build(type="LinearLayer", d_in=3, d_out=2)
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(lin(x), x @ lin.linear.weight.T + lin.linear.bias)
    drop = build(type="DropoutLayer", p=0.5).eval()
    torch.testing.assert_close(drop(x), x)
    drop.train()
    y = drop(torch.ones(1000, dtype=torch.float64))
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 350 < int((y == 0).sum()) < 650


@pytest.mark.parametrize("fields", [
    {"type": "RMSNormLayer", "d_model": 4}, {"type": "LayerNormLayer", "d_model": 4},
    {"type": "GLULayer", "d_model": 4, "d_ff": 3, "activation": "gelu"}, {"type": "LinearLayer", "d_in": 4, "d_out": 2},
])
def test_gradcheck(fields):
    m = build(**fields)
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: m(t), (x,))


class TestLinearConformance(LayerConformance):
    plugins = [layers_plugin]
    spec_module = "caramba_layers.specs.basic"
    config = {"type": "LinearLayer", "d_in": 8, "d_out": 3}
    compile = True


class TestDropoutConformance(LayerConformance):
    plugins = [layers_plugin]
    config = {"type": "DropoutLayer", "p": 0.1}


class TestRMSNormConformance(LayerConformance):
    plugins = [layers_plugin]
    spec_module = "caramba_layers.specs.norm"
    config = {"type": "RMSNormLayer", "d_model": 8, "eps": 1e-6}


class TestLayerNormConformance(LayerConformance):
    plugins = [layers_plugin]
    config = {"type": "LayerNormLayer", "d_model": 8}


class TestSwiGLUConformance(LayerConformance):
    plugins = [layers_plugin]
    spec_module = "caramba_layers.specs.glu"
    config = {"type": "SwiGLULayer", "d_model": 8, "d_ff": 12}


class TestGLUConformance(LayerConformance):
    plugins = [layers_plugin]
    config = {"type": "GLULayer", "d_model": 8, "d_ff": 12, "activation": "reglu", "bias": False}
