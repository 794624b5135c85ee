"""Shared measurement helpers: held-out batches, token-weighted NLL, device timing, peak memory.

Held-out data always comes from the target dataset's ``iter_batches(split, ...)`` with a
held-out split (``val``/``test``), never from the training region.
"""

from __future__ import annotations

import math
import os
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import RunError
from caramba_infer.generate import lm_logits

__all__ = [
    "ByteTokenizer",
    "PeakMemory",
    "device_of",
    "held_out_batches",
    "model_bytes",
    "nll_sum",
    "ppl",
    "synchronize",
]


class ByteTokenizer:
    """UTF-8 bytes as token ids; id 0 (NUL) is end-of-sequence."""

    eos_id = 0

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 < i < 256).decode("utf-8", errors="replace")


def device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so wall-clock timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def dataset(session: Any) -> Any:
    ds = session.create("dataset", session.target.data)
    if not hasattr(ds, "iter_batches"):
        raise RunError(f"dataset '{session.target.data.ref}' has no iter_batches(split, batch_size, limit=...)",
                       hint="held-out evaluation needs a dataset that follows the caramba dataset contract")
    return ds


def held_out_batches(session: Any, split: str, batch_size: int, limit: int, *,
                     block_size: int | None = None, device: Any = None,
                     ds: Any = None) -> Iterator[dict[str, torch.Tensor]]:
    """``{"input_ids", "target_ids"}`` batches of ``split`` (at most ``limit``), cropped to ``block_size``."""
    ds = ds if ds is not None else dataset(session)
    n = 0
    for batch in ds.iter_batches(split, batch_size, limit=limit):
        ids, targets = batch["input_ids"], batch["target_ids"]
        if block_size is not None:
            ids, targets = ids[:, :block_size], targets[:, :block_size]
        n += 1
        yield {"input_ids": ids.to(device), "target_ids": targets.to(device)}
    if n == 0:
        raise RunError(f"the '{split}' split of dataset '{session.target.data.ref}' yielded no batches",
                       hint="lower batch_size, or hold out more data (val_frac)")


@torch.no_grad()
def nll_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
    """Summed next-token NLL (nats, float64 accumulation) and the number of scored tokens."""
    logits = lm_logits(model, batch["input_ids"])
    targets = batch["target_ids"]
    loss = F.cross_entropy(logits.flatten(0, 1).double(), targets.flatten(), ignore_index=-100, reduction="sum")
    return float(loss), int((targets != -100).sum())


def ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


class PeakMemory:
    """Peak memory above the level at entry, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the process RSS sampled every
    millisecond from ``/proc/self/statm`` by a background thread (torch's CPU allocations
    are invisible to ``tracemalloc``); without ``/proc`` it falls back to the growth of
    ``getrusage``'s high-water mark, which is 0 when an earlier peak was higher.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self.method = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda_max_memory_allocated"
            return self
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._statm = "/proc/self/statm"
        if os.path.exists(self._statm):
            self.method = "rss_sampled"
            self._base = self._rss()
            self._max = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        else:
            self.method = "ru_maxrss"
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def _rss(self) -> int:
        with open(self._statm) as f:
            return int(f.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self.method == "rss_sampled":
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, self._rss()) - self._base
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base
        self.peak = max(self.peak, 0)
