"""Data parallelism on ``torch.distributed``: DDP and FSDP2, launched by ``torchrun``.

caramba never launches processes itself. ``torchrun --nproc_per_node=N -m caramba run ...``
(or ``--nnodes``/``--rdzv-endpoint`` for several machines) sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous; :meth:`Distributed.setup` joins that process group.

Order of application (as in torchtitan): the single-device model is built first, moved to
its device, then wrapped; the optimizer is built over the wrapped model's parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from caramba import RunError

__all__ = ["Distributed", "fsdp_blocks"]


@dataclass
class Distributed:
    """Rank, world size and strategy of this process (``none`` when not distributed)."""

    strategy: str = "none"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.strategy != "none" and self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, strategy: str, backend: str = "auto", device: str = "cpu") -> Distributed:
        """Join the process group ``torchrun`` described (a no-op for ``strategy: none``)."""
        if strategy == "none":
            return cls()
        if "WORLD_SIZE" not in os.environ and not dist.is_initialized():
            raise RunError(f"distributed_strategy '{strategy}' needs a process group",
                           path="train.distributed_strategy",
                           hint="launch with torchrun --nproc_per_node=N -m caramba run ..., "
                                "or set distributed_strategy: none")
        owns = False
        if not dist.is_initialized():
            if backend == "auto":
                backend = "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) \
                    else "gloo"
            dist.init_process_group(backend=backend)
            owns = True
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return cls(strategy, dist.get_rank(), dist.get_world_size(), local, owns)

    def device(self, requested: str) -> torch.device:
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda" and self.enabled:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device(requested)

    def wrap(self, model: nn.Module, device: torch.device, *, find_unused: bool = False,
             mixed_precision: torch.dtype | None = None) -> nn.Module:
        """The model wrapped for the strategy (the model itself when not distributed)."""
        if not self.enabled:
            return model
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            return DDP(model, device_ids=ids, find_unused_parameters=find_unused)
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=mixed_precision, reduce_dtype=torch.float32) \
            if mixed_precision is not None else MixedPrecisionPolicy()
        for block in fsdp_blocks(model):
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model

    def all_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over ranks (the tensor itself when not distributed)."""
        if not self.enabled:
            return value
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def fsdp_blocks(model: nn.Module) -> list[nn.Module]:
    """The units FSDP2 shards one by one: the entries of the longest ``layers`` list (the repeated blocks)."""
    best: list[nn.Module] = []
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) > len(best):
            best = list(layers)
    return best
