"""SSMLayer with the fused scan bound gives its own torch path's outputs, gradients and decode state."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
import caramba
import caramba_layers.plugin as layers_plugin
from caramba import Context, NodeConfig, select_kernels
from caramba.nn import RecurrentState
from caramba_kernels import plugin as kernels_plugin

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RT = caramba.Runtime(autoload=False, plugins=[layers_plugin, kernels_plugin])


def build():
    torch.manual_seed(0)
    node = RT.parse(NodeConfig, {"type": "SSMLayer", "d_model": 8, "d_state": 4, "d_conv": 3})
    return RT.build(node, "ssm").to(DEVICE)


def test_fused_scan_matches_the_torch_path_in_outputs_and_gradients():
    reference, fused = build(), build()
    assert select_kernels(fused, RT, pins={"selective_scan": "triton"})["ops"] == {"selective_scan": "triton"}
    x = torch.randn(2, 7, 8, device=DEVICE)
    outs = [m(x) for m in (reference, fused)]
    assert (outs[0] - outs[1]).abs().max() < 1e-5
    for out in outs:
        (out ** 2).sum().backward()
    for (name, p), q in zip(reference.named_parameters(), fused.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-4 * p.grad.abs().max() + 1e-6, name


def test_fused_decode_steps_carry_the_state_like_the_torch_path():
    reference, fused = build(), build()
    select_kernels(fused, RT, pins={"selective_scan": "triton"})
    x = torch.randn(2, 6, 8, device=DEVICE)
    outs = []
    with torch.no_grad():
        for m in (reference, fused):
            state = RecurrentState()
            ctx = Context(caches={"ssm": state})
            outs.append(torch.cat([m(x[:, :4], ctx)] + [m(x[:, t:t + 1], ctx) for t in (4, 5)], 1))
    assert (outs[0] - outs[1]).abs().max() < 1e-5
