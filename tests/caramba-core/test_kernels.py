"""Kernel selection: one backend per op, bound on the op sites after the model is placed."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from torch import nn

import caramba
from caramba import KernelBackend, PluginError, UsageError, select_kernels


class Site(nn.Module):
    """An op site: its own torch code unless a backend's function is bound."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.kernel = "unbound"

    def kernel_ops(self):
        return ("double",)

    def use_kernel(self, op, fn):
        self.kernel = fn

    def forward(self, x):
        return self.kernel(x) if self.kernel not in (None, "unbound") else x * 2


def fast_double(x):
    return x + x


class CpuBackend(KernelBackend):
    name = "fast"

    def __init__(self, config=None):
        pass

    def supports(self, op, device, dtype):
        return op == "double" and device == "cpu" and dtype == "fp32"

    def get(self, op):
        return fast_double


@pytest.fixture
def backend_module(monkeypatch):
    mod = types.ModuleType("kernels_test_backend")
    mod.CpuBackend = CpuBackend
    monkeypatch.setitem(sys.modules, "kernels_test_backend", mod)
    return mod


class Provides:
    """A plugin that registers the ``fast`` backend and answers for ``device``."""

    def __init__(self, device: str) -> None:
        self.device = device

    @caramba.hookimpl
    def caramba_register_kernel_backends(self, registry):
        registry.add("fast", factory="kernels_test_backend:CpuBackend", summary="x + x")

    @caramba.hookimpl
    def caramba_select_kernel(self, op, device, dtype):
        return "fast" if device == self.device else None


def model():
    return nn.Sequential(Site(), Site())


def test_without_backends_every_site_runs_the_torch_reference_silently(caplog):
    m = model()
    with caplog.at_level(logging.INFO, logger="caramba.kernels"):
        chosen = select_kernels(m, caramba.Runtime(autoload=False))
    assert chosen == {"device": "cpu", "dtype": "fp32", "ops": {"double": "torch"}}
    assert [site.kernel for site in m] == [None, None]
    assert caplog.records == []


def test_the_selected_backend_is_bound_on_every_site(backend_module):
    m = model()
    chosen = select_kernels(m, caramba.Runtime(autoload=False, plugins=[Provides("cpu")]))
    assert chosen["ops"] == {"double": "fast"}
    assert [site.kernel for site in m] == [fast_double, fast_double]
    assert torch.equal(m(torch.tensor([1.0, 3.0])), torch.tensor([4.0, 12.0]))


def test_a_device_no_backend_serves_falls_back_with_one_logged_line(backend_module, caplog):
    m = model()
    with caplog.at_level(logging.INFO, logger="caramba.kernels"):
        chosen = select_kernels(m, caramba.Runtime(autoload=False, plugins=[Provides("cuda")]))
    assert chosen["ops"] == {"double": "torch"}
    assert [site.kernel for site in m] == [None, None]
    assert [r.getMessage() for r in caplog.records] == [
        "kernels: double run the torch reference on cpu/fp32 (no backend serves this device and dtype)"]


def test_a_pin_overrides_the_hooks(backend_module):
    rt = caramba.Runtime(autoload=False, plugins=[Provides("cpu")])
    m = model()
    assert select_kernels(m, rt, pins={"double": "torch"})["ops"] == {"double": "torch"}
    assert m[0].kernel is None
    m = model()
    assert select_kernels(m, rt, pins={"*": "fast"})["ops"] == {"double": "fast"}


def test_pinning_an_unknown_backend_names_the_field_and_the_choices(backend_module):
    rt = caramba.Runtime(autoload=False, plugins=[Provides("cpu")])
    with pytest.raises(UsageError) as info:
        select_kernels(model(), rt, pins={"double": "fats"})
    assert info.value.exit_code == 2
    assert info.value.path == "defaults.kernels.double"
    assert "fast" in info.value.hint


def test_pinning_a_backend_that_cannot_run_here_is_an_error_not_a_fallback(backend_module):
    rt = caramba.Runtime(autoload=False, plugins=[Provides("cpu")])
    with pytest.raises(UsageError, match="cannot run double on cpu/fp64"):
        select_kernels(model().double(), rt, pins={"double": "fast"})


def test_the_manifest_pins_kernels_and_an_override_changes_a_pin():
    text = "version: 2\ndefaults: {kernels: {decode_attention: triton}}\n"
    rt = caramba.Runtime(autoload=False)
    assert rt.load_manifest_text(text).spec.defaults.kernels == {"decode_attention": "triton"}
    changed = rt.load_manifest_text(text, overrides=["defaults.kernels.decode_attention=torch"])
    assert changed.spec.defaults.kernels == {"decode_attention": "torch"}


class BrokenBackend(CpuBackend):
    def get(self, op):
        raise ImportError("libcuda.so.1: cannot open shared object file")


def test_a_backend_whose_kernel_fails_to_load_degrades_to_the_reference_with_a_warning(backend_module, caplog):
    backend_module.CpuBackend = BrokenBackend
    rt = caramba.Runtime(autoload=False, plugins=[Provides("cpu")])
    m = model()
    with caplog.at_level(logging.INFO, logger="caramba.kernels"):
        assert select_kernels(m, rt)["ops"] == {"double": "torch"}
    assert m[0].kernel is None
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "double (kernel backend 'fast' cannot load its double kernel: ImportError: libcuda" in record.getMessage()


def test_a_pinned_backend_whose_kernel_fails_to_load_is_a_plugin_failure(backend_module):
    backend_module.CpuBackend = BrokenBackend
    rt = caramba.Runtime(autoload=False, plugins=[Provides("cpu")])
    with pytest.raises(PluginError) as info:
        select_kernels(model(), rt, pins={"double": "fast"})
    assert info.value.exit_code == 3 and info.value.path == "defaults.kernels.double"
