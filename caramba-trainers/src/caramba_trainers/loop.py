"""Reusable pieces of a training loop: precision, batches, the optimizer step, evaluation,
and saving/restoring the whole training state.

The standard trainer is these pieces in order; other trainers (upcycle) reuse them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caramba import CheckpointError, Context, RunError
from caramba_trainers.checkpoint import Checkpoint, save_checkpoint, set_rng_state
from caramba_trainers.distributed import Distributed

__all__ = [
    "BatchSource",
    "Precision",
    "StepResult",
    "evaluate",
    "optimizer_step",
    "restore_training_state",
    "save_training_state",
    "to_device",
    "unwrap",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Precision:
    """Weight dtype, autocast dtype (or ``None``) and the fp16 gradient scaler."""

    param_dtype: torch.dtype
    amp_dtype: torch.dtype | None
    scaler: Any  # torch.amp.GradScaler or None
    device_type: str

    @classmethod
    def resolve(cls, device: torch.device, dtype: str, use_amp: bool, amp_dtype: str) -> Precision:
        bf16_ok = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
        if dtype == "auto":
            dtype = "bfloat16" if device.type == "cuda" and bf16_ok else "float32"
        amp = None
        if use_amp:
            if amp_dtype == "auto":
                amp_dtype = "bfloat16" if bf16_ok else "float16"
            amp = _DTYPES[amp_dtype]
        # fp16 gradients underflow without loss scaling (Micikevicius et al. 2018).
        scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
        return cls(_DTYPES[dtype], amp, scaler, device.type)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)


def to_device(batch: dict[str, Any], device: torch.device, *, non_blocking: bool = False) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _rank_slice(batch: dict[str, Any], rank: int, world: int, per_rank: int) -> dict[str, Any]:
    return {k: v[rank * per_rank:(rank + 1) * per_rank] if isinstance(v, torch.Tensor) and v.ndim
            and v.shape[0] == per_rank * world else v for k, v in batch.items()}


class BatchSource:
    """Training micro-batches by global index, this rank's share, prefetched by worker threads.

    Micro-batch ``i`` is ``dataset.batch("train", i, batch_size * world, seed=seed)`` cut
    into ``world`` equal row blocks; rank ``r`` gets block ``r``. So a run on ``world``
    processes sees exactly the rows a single process with ``batch_size * world`` sees.
    Batches are pure functions of ``i``: prefetching ahead changes nothing but speed.
    """

    def __init__(self, dataset: Any, batch_size: int, seed: int, dist: Distributed, *,
                 workers: int = 0, pin_memory: bool = False, ahead: int = 2) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.dist = dist
        self.pin = pin_memory and torch.cuda.is_available()
        self.ahead = ahead * max(1, workers)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caramba-data") if workers else None
        self._pending: dict[int, Future[dict[str, Any]]] = {}

    def _load(self, index: int) -> dict[str, Any]:
        world = self.dist.world_size if self.dist.enabled else 1
        batch = self.dataset.batch("train", index, self.batch_size * world, seed=self.seed)
        if world > 1:
            batch = _rank_slice(batch, self.dist.rank, world, self.batch_size)
        if self.pin:
            batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return batch

    def get(self, index: int) -> dict[str, Any]:
        if self.pool is None:
            return self._load(index)
        for i in range(index, index + self.ahead):
            if i not in self._pending:
                self._pending[i] = self.pool.submit(self._load, i)
        for stale in [i for i in self._pending if i < index]:
            self._pending.pop(stale).cancel()
        return self._pending.pop(index).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class StepResult:
    loss: float
    metrics: dict[str, float]
    grad_norm: float | None
    skipped: bool = False


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision, *,
                   clip: float | Callable[[nn.Module], float] = 0.0) -> tuple[float | None, bool]:
    """Unscale, clip, step, update the scaler and zero the grads.

    ``clip`` is a global-norm bound (0 = off), or a function that clips the model's
    (unscaled) gradients in place and returns their norm before clipping.
    Returns ``(grad_norm, skipped)``: ``skipped`` when the fp16 scaler found inf/NaN
    gradients and left the weights alone (it then lowers its scale).
    """
    scaler = precision.scaler
    norm = None
    if scaler is not None:
        scaler.unscale_(optimizer)
    if callable(clip):
        norm = float(clip(model))
    elif clip > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
    skipped = False
    if scaler is not None:
        before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        skipped = scaler.get_scale() < before
    else:
        if norm is not None and not torch.isfinite(torch.tensor(norm)):
            raise FloatingPointError(f"gradient norm is {norm}")
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, skipped


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Any, objective: Callable[..., Any], *, batch_size: int, limit: int | None,
             device: torch.device, precision: Precision, split: str = "val") -> dict[str, float]:
    """Mean loss and metrics over ``dataset.iter_batches(split, ...)``, in eval mode."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    n = 0
    try:
        for batch in dataset.iter_batches(split, batch_size, limit=limit):
            batch = to_device(batch, device)
            ctx = Context(training=False)
            with precision.autocast():
                outputs = model(batch, ctx)
                _, metrics = objective(outputs, batch, ctx)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise RunError(f"the {split} split gave no batch of size {batch_size}",
                       hint="lower batch_size or raise the dataset's val_frac")
    return {k: v / n for k, v in totals.items()}


# --- state -------------------------------------------------------------------------------------


def _is_fsdp(dist: Distributed) -> bool:
    return dist.enabled and dist.strategy == "fsdp"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper or a ``torch.compile`` wrapper (checkpoints use its names)."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_state(model: nn.Module, dist: Distributed) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict; a collective under FSDP."""
    if _is_fsdp(dist):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return unwrap(model).state_dict()


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, dist: Distributed) -> dict[str, Any]:
    if _is_fsdp(dist):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optimizer.state_dict()


def save_training_state(root: str | Path, step: int, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                        precision: Precision, dist: Distributed, state: dict[str, Any],
                        keep: int | None = None) -> Path | None:
    """Save model, optimizer, scaler, RNG and ``state`` (rank 0 writes; all ranks join FSDP gathers)."""
    m = model_state(model, dist)
    o = optimizer_state(model, optimizer, dist)
    path = None
    if dist.is_main:
        extra = dict(state)
        if precision.scaler is not None:
            extra["grad_scaler"] = precision.scaler.state_dict()
        path = save_checkpoint(root, step, model_state=m, optimizer_state=o, state=extra, keep=keep)
    dist.barrier()
    return path


def restore_training_state(ckpt: Checkpoint, *, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                           precision: Precision, dist: Distributed) -> None:
    """Load a checkpoint into the model, optimizer, scaler and RNGs (raises :class:`CheckpointError`)."""
    try:
        if _is_fsdp(dist):
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            # Rank 0 hands the full state to the others, which shard it (every rank read the files,
            # but only rank 0's copy is used, so a stale file cache elsewhere cannot matter).
            opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
            set_model_state_dict(model, ckpt.model if dist.is_main else {}, options=opts)
            if optimizer is not None and ckpt.optimizer is not None:
                set_optimizer_state_dict(model, optimizer, ckpt.optimizer if dist.is_main else {}, options=opts)
        else:
            unwrap(model).load_state_dict(ckpt.model, strict=True)
            if optimizer is not None and ckpt.optimizer is not None:
                optimizer.load_state_dict(ckpt.optimizer)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} does not fit this model: {exc}",
                              hint="the manifest's model or optimizer changed since it was written; "
                                   "move the run folder away to start fresh") from exc
    if precision.scaler is not None and "grad_scaler" in ckpt.state:
        precision.scaler.load_state_dict(ckpt.state["grad_scaler"])
    set_rng_state(ckpt.rng, ckpt.state.get("rng", {}))


def micro_batches(source: BatchSource, step: int, accum: int) -> Iterator[dict[str, Any]]:
    """The ``accum`` micro-batches of optimizer step ``step``."""
    for k in range(accum):
        yield source.get(step * accum + k)
