"""The triton backend registers like any plugin, is chosen on CUDA only, and imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import caramba
from caramba_kernels import plugin


def test_importing_the_plugin_imports_neither_torch_nor_triton():
    code = ("import sys, caramba_kernels, caramba_kernels.plugin; "
            "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_triton_and_liger_backends_are_registered():
    rt = caramba.Runtime(autoload=False, plugins=[plugin])
    assert rt.get("kernel_backend", "triton").factory == "caramba_kernels.backend:TritonBackend"
    assert rt.get("kernel_backend", "liger").factory == "caramba_kernels.liger:LigerBackend"


@pytest.mark.parametrize(("op", "device", "dtype", "answer"), [
    ("decode_attention", "cuda", "bf16", "triton"),
    ("decode_attention", "cuda", "fp16", "triton"),
    ("decode_attention", "cuda", "fp32", None),   # fp32 stays on the reference
    ("decode_attention", "cpu", "fp16", None),    # so do CPU and MPS
    ("decode_attention", "mps", "fp16", None),
    ("selective_scan", "cuda", "fp32", "triton"),
    ("selective_scan", "cpu", "fp32", None),
    ("rms_norm", "cuda", "bf16", "liger"),        # training kernels come from liger-kernel
    ("swiglu", "cuda", "fp32", "liger"),
    ("linear_cross_entropy", "cuda", "bf16", "liger"),
    ("rms_norm", "cpu", "fp32", None),
    ("layer_norm", "cuda", "bf16", None),         # ops no backend has a kernel for
])
def test_a_backend_is_selected_on_cuda_for_the_ops_and_dtypes_it_has_kernels_for(op, device, dtype, answer,
                                                                                  monkeypatch):
    monkeypatch.setenv("CARAMBA_KERNELS", "auto")
    monkeypatch.setattr(plugin, "triton_installed", lambda: True)
    monkeypatch.setattr(plugin, "liger_installed", lambda: True)
    rt = caramba.Runtime(autoload=False, plugins=[plugin])
    assert rt.hooks.select_kernel(op, device, dtype) == answer


def test_without_triton_nothing_is_selected(monkeypatch):
    monkeypatch.setenv("CARAMBA_KERNELS", "auto")
    monkeypatch.setattr(plugin, "triton_installed", lambda: False)
    monkeypatch.setattr(plugin, "liger_installed", lambda: False)
    rt = caramba.Runtime(autoload=False, plugins=[plugin])
    assert rt.hooks.select_kernel("decode_attention", "cuda", "bf16") is None


def test_without_caramba_kernels_auto_nothing_is_selected_even_on_cuda(monkeypatch):
    monkeypatch.delenv("CARAMBA_KERNELS", raising=False)
    monkeypatch.setattr(plugin, "triton_installed", lambda: True)
    monkeypatch.setattr(plugin, "liger_installed", lambda: True)
    rt = caramba.Runtime(autoload=False, plugins=[plugin])
    assert rt.hooks.select_kernel("decode_attention", "cuda", "bf16") is None
    assert rt.hooks.select_kernel("rms_norm", "cuda", "bf16") is None
