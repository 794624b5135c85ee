"""The liger backend's functions against the layers' own torch code and full-logit cross-entropy."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")
if importlib.util.find_spec("liger_kernel") is None:  # found, not imported: its import takes seconds
    pytest.skip("liger-kernel is not installed", allow_module_level=True)
import caramba
import caramba_layers.plugin as layers_plugin
from caramba import NodeConfig, select_kernels
from caramba_kernels import liger
from caramba_kernels import plugin as kernels_plugin

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
gpu_only = pytest.mark.skipif(not ON_GPU, reason="liger-kernel's norms do not run in Triton's CPU interpreter")
RT = caramba.Runtime(autoload=False, plugins=[layers_plugin, kernels_plugin])


@pytest.mark.slow  # importing liger-kernel imports torch._dynamo: ~25 s on 2 busy cores
def test_linear_cross_entropy_equals_cross_entropy_of_the_full_logits_with_gradients():
    tokens, d, vocab = (4096, 256, 32000) if ON_GPU else (12, 16, 40)
    torch.manual_seed(0)
    hidden = torch.randn(tokens, d, device=DEVICE, requires_grad=True)
    weight = (torch.randn(vocab, d, device=DEVICE) / d ** 0.5).requires_grad_()
    target = torch.randint(0, vocab, (tokens,), device=DEVICE)
    target[::5] = -100  # ignored positions count in neither the loss nor its mean
    loss = liger.linear_cross_entropy(hidden, weight, target)
    grads = torch.autograd.grad(loss, (hidden, weight))
    h64, w64 = hidden.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    want = F.cross_entropy(h64 @ w64.T, target, ignore_index=-100)
    want_grads = torch.autograd.grad(want, (h64, w64))
    assert abs(loss.item() - want.item()) < 1e-4 * want.item()
    for got, ref in zip(grads, want_grads):
        assert (got.double() - ref).abs().max() <= 1e-3 * ref.abs().max()


def build(fields, dtype):
    torch.manual_seed(0)
    module = RT.build(RT.parse(NodeConfig, fields), "layer").to(DEVICE, dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fields", [{"type": "RMSNormLayer", "d_model": 576},
                                    {"type": "SwiGLULayer", "d_model": 576, "d_ff": 1536}])
def test_liger_layers_match_their_torch_path_in_outputs_and_gradients(fields, dtype):
    reference, fused = build(fields, dtype), build(fields, dtype)
    op = "rms_norm" if fields["type"] == "RMSNormLayer" else "swiglu"
    assert select_kernels(fused, RT)["ops"] == {op: "liger"}
    x = torch.randn(4, 256, 576, device=DEVICE, dtype=dtype, requires_grad=True)
    outs, grads = [], []
    for m in (reference, fused):
        out = m(x)
        outs.append(out)
        grads.append(torch.autograd.grad(out.float().square().sum(), [x, *m.parameters()]))
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert (outs[0].float() - outs[1].float()).abs().max() <= tol * outs[0].float().abs().max()
    for a, b in zip(*grads):
        assert (a.float() - b.float()).abs().max() <= 10 * tol * a.float().abs().max()
