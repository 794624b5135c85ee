"""Choosing kernel backends for a built model: once, after it is placed on its device.

An op site is a module that declares ``kernel_ops() -> tuple[str, ...]`` (attention:
``("decode_attention",)``) and takes ``use_kernel(op, fn)``: ``fn`` is the backend's function
for the op, or ``None`` for the module's own PyTorch code (the reference, named ``"torch"``).
:func:`select_kernels` asks ``caramba_select_kernel(op, device, dtype)`` once per op, binds
the answer on every site and returns the choices, which the run folder records
(``kernels.json``). Nothing is asked inside ``forward()``.

A pin (the manifest's ``defaults.kernels: {decode_attention: torch}``, ``"*"`` for every op,
or ``-s defaults.kernels.decode_attention=triton``) overrides the hooks; a pinned backend that
cannot run the op on this device is an error, never a silent fallback. Without a pin, a
device no backend serves runs the reference, and one line says so.

A backend is a registered ``kernel_backend`` whose factory returns a :class:`KernelBackend`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from caramba.errors import CarambaError, PluginError, UsageError, did_you_mean

__all__ = ["REFERENCE", "KernelBackend", "kernel_sites", "select_kernels"]

#: The name of the modules' own PyTorch code: the default, and always available.
REFERENCE = "torch"

log = logging.getLogger("caramba.kernels")


class KernelBackend:
    """A family of kernels: which ops it runs on which device/dtype, and the function for each."""

    name: str = ""

    def supports(self, op: str, device: str, dtype: str) -> bool:
        """Whether :meth:`get` has a kernel for ``op`` on ``device`` (``"cuda"``) and ``dtype`` (``"bf16"``)."""
        return False

    def get(self, op: str) -> Callable[..., Any]:
        """The function that runs ``op`` (its signature is the op's, documented by the op site)."""
        raise KeyError(op)


def kernel_sites(model: Any) -> dict[str, list[Any]]:
    """The modules that declare kernel ops, grouped by op."""
    sites: dict[str, list[Any]] = {}
    for module in model.modules():
        if callable(getattr(module, "kernel_ops", None)):
            for op in module.kernel_ops():
                sites.setdefault(op, []).append(module)
    return sites


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` -> ``"bf16"``; the names backends answer for."""
    return {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}.get(
        str(dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))


def select_kernels(model: Any, runtime: Any, *, device: Any = None, dtype: Any = None,
                   pins: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Bind one backend per op on every op site of ``model``; returns what was chosen.

    ``device`` and ``dtype`` default to those of the model's first parameter. The result,
    ``{"device": "cuda", "dtype": "bf16", "ops": {"decode_attention": "triton"}}``, is what a
    run folder records.
    """
    first = next(iter(model.parameters()), None)
    device_type = str(getattr(device, "type", device) or (first.device.type if first is not None else "cpu"))
    device_type = device_type.split(":")[0]
    dtype_str = dtype_name(dtype if dtype is not None else (first.dtype if first is not None else "float32"))
    pins = dict(pins or {})
    chosen: dict[str, str] = {}
    fallbacks: list[str] = []
    broken: list[str] = []
    for op, modules in sorted(kernel_sites(model).items()):
        pinned = pins.get(op, pins.get("*"))
        name = pinned or runtime.hooks.select_kernel(op, device_type, dtype_str) or REFERENCE
        fn = None
        if name != REFERENCE:
            try:
                fn = _kernel(runtime, name, op, device_type, dtype_str, pinned=pinned is not None)
                if fn is None:
                    fallbacks.append(op)
            except PluginError as exc:
                if pinned is not None:
                    raise
                broken.append(f"{op} ({exc.message})")  # a broken install degrades, it does not stop a run
            if fn is None:
                name = REFERENCE
        elif pinned is None and len(runtime.registry("kernel_backend")):
            fallbacks.append(op)
        for module in modules:
            module.use_kernel(op, fn)
        chosen[op] = name
    if fallbacks:
        log.info("kernels: %s run the %s reference on %s/%s (no backend serves this device and dtype)",
                 ", ".join(fallbacks), REFERENCE, device_type, dtype_str)
    if broken:
        log.warning("kernels: the %s reference runs for %s", REFERENCE, "; ".join(broken))
    return {"device": device_type, "dtype": dtype_str, "ops": chosen}


def _kernel(runtime: Any, name: str, op: str, device: str, dtype: str, *, pinned: bool) -> Callable[..., Any] | None:
    """The backend's function for ``op``, or ``None`` when it cannot run it here (an error if pinned)."""
    registry = runtime.registry("kernel_backend")
    entry = registry.find(name)
    if entry is None:
        where = f"defaults.kernels.{op}" if pinned else f"caramba_select_kernel({op})"
        raise UsageError(f"unknown kernel backend '{name}'", path=where,
                         hint=did_you_mean(name, [REFERENCE, *registry.names()]))
    factory = entry.load()  # a RegistryError (a PluginError) when the backend's module cannot import
    try:
        backend: KernelBackend = factory(entry.config() if entry.config is not None else None)
        if not backend.supports(op, device, dtype):
            if pinned:
                raise UsageError(f"kernel backend '{name}' cannot run {op} on {device}/{dtype}",
                                 path=f"defaults.kernels.{op}",
                                 hint=f"pin '{REFERENCE}' (the reference) or remove the pin")
            return None
        return backend.get(op)
    except CarambaError:
        raise
    except Exception as exc:
        raise PluginError(f"kernel backend '{name}' cannot load its {op} kernel: {type(exc).__name__}: {exc}",
                          path=f"defaults.kernels.{op}" if pinned else "",
                          hint=f"reinstall the plugin that provides '{name}', or pin '{REFERENCE}'") from exc
