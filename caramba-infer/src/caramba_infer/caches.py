"""Cache kinds and per-model cache creation.

A *cache kind* decides how one attention layer's per-token tensors are stored: a plain
dtype (``fp32``, ``fp16``, ``bf16``) or block-quantised (``q8_0``, ``q4_0``: ``qblock``
values share one fp16 scale, as in ggml). Every kind implements the protocol of
:mod:`caramba.nn`: ``append(**fields)`` returns ``(B, length, *shape)`` views of
everything stored, ``truncate(n)``, ``reset()``, ``length`` and ``nbytes()``.

Reads come back in the dtype the layer appended (its compute dtype), so a layer never
sees the storage dtype: an fp16 cache under an fp32 model is a storage choice only.

:func:`create_caches` walks ``model.modules()`` and creates one cache per module that
declares ``cache_fields()`` (attention) and one :class:`SnapshotState` per module that
declares ``state_fields()`` (SSM), keyed by ``module.node_path``: caches are found by
path, never by call order.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from caramba import CarambaError
from caramba.nn import KVCacheBase, RecurrentState, StaticKVCache

__all__ = [
    "CACHE_KINDS",
    "CacheKind",
    "DTypeCacheKind",
    "DTypeKVCache",
    "QuantizedCacheKind",
    "QuantizedKVCache",
    "QuantizedStorage",
    "SnapshotState",
    "analytic_kv_bytes_per_token",
    "cache_kind",
    "cached_modules",
    "create_caches",
]


class DTypeKVCache(StaticKVCache):
    """:class:`StaticKVCache` whose reads come back in the appended tensors' dtype."""

    def append(self, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = next(iter(new.values())).dtype
        return _as_dtype(super().append(**new), dtype)

    def write(self, slots: torch.Tensor, span: int, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        dtype = next(iter(new.values())).dtype
        return _as_dtype(super().write(slots, span, **new), dtype)


def _as_dtype(views: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v if v.dtype == dtype else v.to(dtype) for k, v in views.items()}


class QuantizedStorage(NamedTuple):
    """One field of a quantised cache as kernels read it (see :class:`QuantizedKVCache`)."""

    codes: torch.Tensor  # (B, blocks · qblock · bits/8) int8 (q8) or uint8 (q4, low nibble first)
    scales: torch.Tensor  # (B, blocks) fp16
    bits: int
    qblock: int
    heads: int
    width: int
    capacity: int  # tokens


class QuantizedKVCache(KVCacheBase):
    """Block-quantised static cache: ``bits`` ∈ {8, 4} symmetric integers with an fp16 scale per block.

    Each field of a sequence is one token-major stream of values (``n = heads · width`` per
    token), cut into blocks of ``qblock`` consecutive values with no padding: a block may
    straddle two tokens when ``n`` is not a multiple of ``qblock`` (DBA's narrow fields), so
    stored bytes equal the analytic ``n · (bits/8 + 2/qblock)`` per token whenever
    ``max_len · n`` is a multiple of ``qblock``. ``scale = max|x| / qmax`` (q8_0: 127, q4_0: 7);
    4-bit values are stored offset by 8, two per byte, low nibble first.

    Error: a value is within half a step (``scale/2``) of its input, except the values of a
    block that a later token completes: that block is requantised with its final scale, so
    they are within one step.
    """

    def __init__(self, fields: dict[str, tuple[int, ...]], batch: int, max_len: int, *,
                 bits: int, qblock: int = 32, device: Any = None) -> None:
        if bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {bits}")
        if qblock % 2:
            raise ValueError(f"qblock must be even, got {qblock}")
        super().__init__(fields, max_len)
        self.bits, self.qblock = bits, qblock
        self.shapes = dict(fields)
        self.widths = {name: math.prod(shape) for name, shape in fields.items()}
        self.codes: dict[str, torch.Tensor] = {}
        self.scales: dict[str, torch.Tensor] = {}
        for name, n in self.widths.items():
            blocks = math.ceil(max_len * n / qblock)
            dtype = torch.int8 if bits == 8 else torch.uint8
            self.codes[name] = torch.zeros(batch, blocks * qblock * bits // 8, dtype=dtype, device=device)
            self.scales[name] = torch.zeros(batch, blocks, dtype=torch.float16, device=device)

    @property
    def qmax(self) -> int:
        return 127 if self.bits == 8 else 7

    def storage(self, name: str) -> QuantizedStorage:
        """The field's codes and scales, as :func:`caramba_kernels.decode_attention` reads them."""
        shape = self.shapes[name]
        heads = shape[0] if len(shape) > 1 else 1
        return QuantizedStorage(self.codes[name], self.scales[name], self.bits, self.qblock, heads,
                                self.widths[name] // heads, self.max_len)

    def _blocks(self, name: str) -> torch.Tensor:
        """The codes as ``(B, blocks, bytes per block)``."""
        codes = self.codes[name]
        return codes.view(codes.shape[0], -1, self.qblock * self.bits // 8)

    def _quantise(self, blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, nb, qblock)`` floats -> codes ``(B, nb, qblock·bits/8)`` and fp16 scales ``(B, nb)``."""
        scale = (blocks.abs().amax(-1) / self.qmax).to(torch.float16)
        inv = torch.where(scale > 0, 1.0 / scale.float(), torch.zeros_like(scale, dtype=torch.float32))
        q = torch.round(blocks * inv[..., None]).clamp_(-self.qmax - (self.bits == 4), self.qmax)
        if self.bits == 8:
            return q.to(torch.int8), scale
        u = (q + 8).to(torch.uint8)  # 0..15
        return u[..., 0::2] | (u[..., 1::2] << 4), scale

    def _values(self, name: str, b0: int, b1: int) -> torch.Tensor:
        """Blocks ``b0:b1`` dequantised: ``(B, (b1-b0)·qblock)`` float32."""
        codes, scale = self._blocks(name)[:, b0:b1], self.scales[name][:, b0:b1]
        if self.bits == 8:
            q = codes.float()
        else:
            q = torch.stack(((codes & 0xF).float() - 8, (codes >> 4).float() - 8), dim=-1).flatten(-2)
        return (q * scale.float()[..., None]).flatten(1)

    def _write(self, name: str, start: int, end: int, value: torch.Tensor) -> None:
        n, qb = self.widths[name], self.qblock
        b0, b1 = start * n // qb, math.ceil(end * n / qb)
        flat = value.reshape(value.shape[0], -1).float()
        held = start * n - b0 * qb  # values of earlier tokens in the first block: requantised with it
        if held:
            flat = torch.cat((self._values(name, b0, b0 + 1)[:, :held], flat), dim=1)
        flat = nn.functional.pad(flat, (0, (b1 - b0) * qb - flat.shape[1]))
        codes, scale = self._quantise(flat.view(flat.shape[0], b1 - b0, qb))
        self._blocks(name)[:, b0:b1] = codes
        self.scales[name][:, b0:b1] = scale

    def _dequantise(self, name: str, end: int, dtype: torch.dtype) -> torch.Tensor:
        n = self.widths[name]
        x = self._values(name, 0, math.ceil(end * n / self.qblock))[:, : end * n]
        return x.reshape(x.shape[0], end, *self.shapes[name]).to(dtype)

    def store(self, **new: torch.Tensor) -> None:
        """Quantise and store ``new`` after the cached tokens without reading anything back."""
        start, end = self._reserve(new)
        for name, value in new.items():
            self._write(name, start, end, value)
        self.length = end

    def append(self, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        self.store(**new)
        dtype = next(iter(new.values())).dtype
        return {name: self._dequantise(name, self.length, dtype) for name in self.codes}

    @property
    def static_writes(self) -> bool:
        """Whether :meth:`write` is static-shaped: every field a whole number of blocks per token."""
        return all(n % self.qblock == 0 for n in self.widths.values())

    def write(self, slots: torch.Tensor, span: int, **new: torch.Tensor) -> dict[str, torch.Tensor]:
        """Write at cache rows ``slots``; the first ``span`` rows dequantised.

        A field whose tokens fill whole blocks is written in place at ``slots`` (static shapes);
        a field with blocks straddling tokens is stored after the cached tokens, which must be
        where ``slots`` start (eager decoding only: see :attr:`static_writes`).
        """
        self._check_fields(new)
        dtype = next(iter(new.values())).dtype
        for name, value in new.items():
            n, qb = self.widths[name], self.qblock
            b, t = value.shape[:2]
            if n % qb == 0:
                per = n // qb  # blocks per token
                codes, scale = self._quantise(value.reshape(b, t * per, qb).float())
                self._blocks(name).view(b, self.max_len, per, -1).index_copy_(1, slots, codes.view(b, t, per, -1))
                self.scales[name].view(b, self.max_len, per).index_copy_(1, slots, scale.view(b, t, per))
            else:
                start = int(slots[0])
                self._write(name, start, start + t, value)
        return {name: self._dequantise(name, span, dtype) for name in self.codes}

    def static_tensors(self) -> list[torch.Tensor]:
        return [*self.codes.values(), *self.scales.values()]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.codes.values(), *self.scales.values()))


class SnapshotState(RecurrentState):
    """A recurrent state that remembers itself at past lengths, so rollback is exact.

    :meth:`snapshot` is called by the generator after every forward; :meth:`restore`
    returns to a remembered length (``False`` when none is held: the caller replays).
    At most ``keep`` snapshots are held, the most recent ones.
    """

    def __init__(self, keep: int = 256) -> None:
        super().__init__()
        self.keep = keep
        self.snapshots: dict[int, dict[str, torch.Tensor] | None] = {0: None}

    def snapshot(self) -> None:
        tensors = None if self.tensors is None else {k: v.clone() for k, v in self.tensors.items()}
        self.snapshots[self.length] = tensors
        while len(self.snapshots) > self.keep:
            del self.snapshots[min(k for k in self.snapshots if k != 0)]

    def restore(self, length: int) -> bool:
        for k in [k for k in self.snapshots if k > length]:
            del self.snapshots[k]
        if length not in self.snapshots:
            return False
        self._load(self.snapshots[length])
        self.length = length
        return True

    def reset(self) -> None:
        zero = self.snapshots.get(0)
        self._load(zero)
        self.length = 0
        self.snapshots = {0: zero}

    def _load(self, saved: dict[str, torch.Tensor] | None) -> None:
        """Copy ``saved`` into the state tensors in place (a compiled decoder holds their addresses)."""
        if saved is not None and self.tensors is not None and self.tensors.keys() == saved.keys():
            for name, tensor in self.tensors.items():
                tensor.copy_(saved[name])
        else:
            self.tensors = None if saved is None else {k: v.clone() for k, v in saved.items()}

    def nbytes(self) -> int:
        return 0 if self.tensors is None else sum(t.numel() * t.element_size() for t in self.tensors.values())


# --- kinds -------------------------------------------------------------------------------

class CacheKind:
    """How a cache stores its tensors. ``create`` builds one layer's cache."""

    name: str = ""

    def create(self, fields: dict[str, tuple[int, ...]], batch: int, max_len: int, device: Any = None) -> Any:
        raise NotImplementedError  # pragma: no cover - abstract

    def bytes_per_element(self) -> float:
        """Analytic storage bytes per cached element (scales included for quantised kinds)."""
        raise NotImplementedError  # pragma: no cover - abstract


class DTypeCacheKind(CacheKind):
    def __init__(self, config: Any = None, *, name: str = "fp32", dtype: torch.dtype = torch.float32) -> None:
        self.name, self.dtype = name, dtype

    def create(self, fields: dict[str, tuple[int, ...]], batch: int, max_len: int, device: Any = None) -> Any:
        return DTypeKVCache(fields, batch, max_len, dtype=self.dtype, device=device)

    def bytes_per_element(self) -> float:
        return float(torch.empty((), dtype=self.dtype).element_size())


class QuantizedCacheKind(CacheKind):
    def __init__(self, config: Any = None, *, name: str = "q8_0", bits: int = 8) -> None:
        self.name, self.bits = name, bits
        self.qblock = config.qblock if config is not None else 32

    def create(self, fields: dict[str, tuple[int, ...]], batch: int, max_len: int, device: Any = None) -> Any:
        return QuantizedKVCache(fields, batch, max_len, bits=self.bits, qblock=self.qblock, device=device)

    def bytes_per_element(self) -> float:
        return self.bits / 8 + 2 / self.qblock  # codes + one fp16 scale per block


def fp32(config: Any = None) -> CacheKind:
    return DTypeCacheKind(config, name="fp32", dtype=torch.float32)


def fp16(config: Any = None) -> CacheKind:
    return DTypeCacheKind(config, name="fp16", dtype=torch.float16)


def bf16(config: Any = None) -> CacheKind:
    return DTypeCacheKind(config, name="bf16", dtype=torch.bfloat16)


def q8_0(config: Any = None) -> CacheKind:
    return QuantizedCacheKind(config, name="q8_0", bits=8)


def q4_0(config: Any = None) -> CacheKind:
    return QuantizedCacheKind(config, name="q4_0", bits=4)


#: The built-in kinds by name; the pipeline resolves names through the ``cache_kind`` registry.
CACHE_KINDS = {"fp32": fp32, "fp16": fp16, "bf16": bf16, "q8_0": q8_0, "q4_0": q4_0}


def cache_kind(kind: str | CacheKind, runtime: Any = None) -> CacheKind:
    """A :class:`CacheKind` from a name (registered ``cache_kind`` when a runtime is given)."""
    if isinstance(kind, CacheKind):
        return kind
    if runtime is not None:
        entry = runtime.get("cache_kind", kind)
        config = entry.config() if entry.config is not None else None
        return entry.load()(config)
    if kind not in CACHE_KINDS:
        from caramba import did_you_mean

        raise CarambaError(f"unknown cache kind '{kind}'", hint=did_you_mean(kind, CACHE_KINDS))
    return CACHE_KINDS[kind]()


# --- per model ---------------------------------------------------------------------------

def cached_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that declare ``cache_fields()`` or ``state_fields()``, by node path."""
    out: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not (hasattr(module, "cache_fields") or hasattr(module, "state_fields")):
            continue
        path = getattr(module, "node_path", "")
        if not path:
            raise CarambaError(f"module '{name}' ({type(module).__name__}) declares a cache but has no node_path",
                               hint="build models with caramba's Builder, which sets node_path on every node")
        if path in out:
            raise CarambaError(f"two cached modules share the node path '{path}'",
                               hint="node paths must be unique; build the model with caramba's Builder")
        out[path] = module
    return out


def create_caches(model: nn.Module, kind: str | CacheKind = "fp32", *, batch: int = 1, max_len: int,
                  device: Any = None, runtime: Any = None, keep_snapshots: int = 256) -> dict[str, Any]:
    """One cache per attention module and one :class:`SnapshotState` per SSM module, by node path."""
    if device is None:
        device = next((p.device for p in model.parameters()), None)
    kind = cache_kind(kind, runtime)
    caches: dict[str, Any] = {}
    for path, module in cached_modules(model).items():
        if hasattr(module, "cache_fields"):
            fields = {k: tuple(int(s) for s in v) for k, v in module.cache_fields().items()}
            caches[path] = kind.create(fields, batch, max_len, device)
        else:
            caches[path] = SnapshotState(keep=keep_snapshots)
    return caches


def analytic_kv_bytes_per_token(model: nn.Module, kind: str | CacheKind = "fp32", runtime: Any = None) -> float:
    """KV bytes per token per sequence from the layers' configs: Σ ``kv_elements_per_token()`` × bytes/element.

    Uses each attention module's ``config.kv_elements_per_token()`` (the formula the
    dry-run prints), falling back to the product of its ``cache_fields()`` shapes.
    """
    kind = cache_kind(kind, runtime)
    elements = 0
    for module in cached_modules(model).values():
        if not hasattr(module, "cache_fields"):
            continue
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "kv_elements_per_token"):
            elements += int(config.kv_elements_per_token())
        else:
            elements += sum(math.prod(s) for s in module.cache_fields().values())
    return elements * kind.bytes_per_element()
