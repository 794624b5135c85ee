"""The cache protocol between layers and decoders, with reference implementations.

A layer that caches per-token tensors while decoding (attention) declares them with
``cache_fields() -> {name: trailing_shape}``; e.g. GQA ``{"k": (n_kv, hd), "v": (n_kv, hd)}``,
DBA ``{"k_sem": (H, d_s), "k_geo": (H, d_g), "v": (H, d_v)}``. A decoder creates one cache
per such module, keyed by the module's ``node_path`` in ``Context.caches``. In ``forward``
the layer calls ``cache.append(k=..., v=...)`` with ``(B, T_new, *shape)`` tensors and gets
back ``(B, length, *shape)`` views of everything stored, new tokens included. A decode kernel
instead calls ``cache.write(...)`` and reads ``cache.storage(name)`` in place.

While decoding with static shapes (``Context.decode`` set), the layer calls
``cache.write(slots, span, k=..., v=...)`` instead: the new tokens are written at cache rows
``slots`` (a ``(T,)`` long tensor) in place, ``length`` is left to the decoder, and the first
``span`` rows come back, so the call compiles to one graph for every length up to ``span``.

A layer with a recurrent state (an SSM) declares ``state_fields()`` instead and reads and
writes ``ctx.cache(path).tensors`` (``None`` before the first call), advancing ``length``.

Storage kinds other than a plain dtype (quantised caches) implement the same protocol in
their plugins. This module imports torch.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["KVCacheBase", "RecurrentState", "StaticKVCache"]


class KVCacheBase:
    """Length bookkeeping every KV cache shares: ``length``, ``max_len``, ``truncate``, ``reset``.

    A storage kind subclasses it and implements ``append`` with :meth:`_reserve` and
    ``nbytes``.
    """

    fields: tuple[str, ...] = ()

    def __init__(self, fields: dict[str, tuple[int, ...]], max_len: int) -> None:
        self.fields = tuple(fields)
        self.max_len = max_len
        self.length = 0

    def _reserve(self, new: dict[str, torch.Tensor]) -> tuple[int, int]:
        """``(start, end)`` of the rows ``new`` will fill; checks its fields and the capacity."""
        self._check_fields(new)
        end = self.length + next(iter(new.values())).shape[1]
        if end > self.max_len:
            raise ValueError(f"cache overflow: {end} tokens > max_len {self.max_len}; "
                             "create the cache with a larger max_len")
        return self.length, end

    def _check_fields(self, new: dict[str, torch.Tensor]) -> None:
        if set(new) != set(self.fields):
            raise ValueError(f"cache fields are {sorted(self.fields)}, got {sorted(new)}")

    def truncate(self, length: int) -> None:
        """Forget everything after ``length`` tokens (speculative rollback)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length

    def reset(self) -> None:
        self.length = 0


class StaticKVCache(KVCacheBase):
    """Preallocated ``(B, max_len, *shape)`` buffers per field; static shapes for ``torch.compile``."""

    def __init__(self, fields: dict[str, tuple[int, ...]], batch: int, max_len: int, *,
                 dtype: torch.dtype = torch.float32, device: Any = None) -> None:
        super().__init__(fields, max_len)
        self.buffers = {name: torch.zeros(batch, max_len, *shape, dtype=dtype, device=device)
                        for name, shape in fields.items()}

    def store(self, **new: torch.Tensor) -> None:
        """Store ``new`` after the cached tokens without reading anything back."""
        start, end = self._reserve(new)
        for name, value in new.items():
            self.buffers[name][:, start:end] = value.to(self.buffers[name].dtype)
        self.length = end

    def append(self, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        self.store(**new)
        return {name: buf[:, : self.length] for name, buf in self.buffers.items()}

    def storage(self, name: str) -> torch.Tensor:
        """The whole ``(B, max_len, *shape)`` buffer of a field, for kernels that read it in place."""
        return self.buffers[name]

    def write(self, slots: torch.Tensor, span: int, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        """Store ``new`` (``(B, T, *shape)``) at rows ``slots`` in place; views of the first ``span`` rows."""
        self._check_fields(new)
        for name, value in new.items():
            self.buffers[name].index_copy_(1, slots, value.to(self.buffers[name].dtype))
        return {name: buf[:, :span] for name, buf in self.buffers.items()}

    def static_tensors(self) -> list[torch.Tensor]:
        """The tensors written in place while decoding (a compiler keeps their addresses fixed)."""
        return list(self.buffers.values())

    def nbytes(self) -> int:
        """Bytes actually allocated by the buffers."""
        return sum(b.numel() * b.element_size() for b in self.buffers.values())


class RecurrentState:
    """A recurrent layer's state between decode steps: ``tensors`` plus tokens seen."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] | None = None
        self.length = 0

    def reset(self) -> None:
        self.tensors = None
        self.length = 0
