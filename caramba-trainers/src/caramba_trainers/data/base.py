"""The dataset contract and the two shapes most datasets take.

* :class:`BlockDataset` -- one long token stream; training samples random windows from its
  head, validation walks the held-out tail.
* :class:`ArrayDataset` -- finite rows (inputs, targets); a fixed split, training walks a
  fresh permutation every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from caramba import CarambaError

__all__ = ["ArrayDataset", "BlockDataset", "Dataset", "rng_for", "split_indices"]

_SPLITS = ("train", "val")


def rng_for(*keys: int) -> np.random.Generator:
    """A generator that depends only on ``keys`` (seed, step, ...): batches are reproducible."""
    return np.random.Generator(np.random.PCG64([int(k) & 0xFFFFFFFF for k in keys]))


def split_indices(n: int, val_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed (train, val) partition of ``range(n)``; at least one row on each side."""
    perm = rng_for(seed, 0x5EED).permutation(n)
    n_val = min(n - 1, max(1, round(n * val_frac))) if val_frac > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise CarambaError(f"unknown data split '{split}'", hint="expected 'train' or 'val'")


class Dataset:
    """Base of every dataset: ``meta``, ``batch`` and ``iter_batches`` (see the module docs)."""

    meta: dict[str, Any]
    tokenizer: Any = None

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Iterator[dict]:
        raise NotImplementedError


class BlockDataset(Dataset):
    """Windows of ``block_size + 1`` tokens from one stream: ``input_ids``, ``target_ids``.

    ``tokens`` may be a ``np.memmap``: a batch reads only its windows, never the file.
    The last ``val_frac`` of the stream is held out; training windows end before it.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, val_frac: float, vocab_size: int,
                 *, source: str = "tokens") -> None:
        self.tokens = tokens
        self.block_size = block_size
        n = len(tokens)
        n_val = int(n * val_frac)
        if val_frac > 0:
            n_val = max(n_val, block_size + 1)
        self.bounds = {"train": (0, n - n_val), "val": (n - n_val, n)}
        for split, (lo, hi) in self.bounds.items():
            if (split == "train" or val_frac > 0) and hi - lo < block_size + 1:
                raise CarambaError(
                    f"{source}: {n} tokens leave {max(hi - lo, 0)} for the {split} split, fewer than "
                    f"block_size + 1 = {block_size + 1}", hint="use a smaller block_size or val_frac, or more data")
        self.meta = {"vocab_size": int(vocab_size), "block_size": block_size,
                     "n_train": self.bounds["train"][1], "n_val": n_val, "tokens_per_sample": block_size}

    def _windows(self, starts: np.ndarray) -> dict[str, torch.Tensor]:
        idx = starts[:, None] + np.arange(self.block_size + 1)[None, :]
        x = torch.from_numpy(np.asarray(self.tokens[idx]).astype(np.int64))  # x: (B, T+1)
        return {"input_ids": x[:, :-1].contiguous(), "target_ids": x[:, 1:].contiguous()}

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict[str, torch.Tensor]:
        _check_split(split)
        lo, hi = self.bounds[split]
        starts = rng_for(seed, index, _SPLITS.index(split)).integers(lo, hi - self.block_size, size=batch_size)
        return self._windows(starts)

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Iterator[dict]:
        _check_split(split)
        lo, hi = self.bounds[split]
        starts = np.arange(lo, hi - self.block_size, self.block_size)
        for i, b in enumerate(range(0, len(starts) - batch_size + 1, batch_size)):
            if limit is not None and i >= limit:
                return
            yield self._windows(starts[b:b + batch_size])


class ArrayDataset(Dataset):
    """Rows of ``arrays`` (all of length N) split once into train and val by ``split_seed``.

    Training step ``index`` takes rows ``index*B ... index*B+B-1`` of an endless sequence
    of per-epoch permutations, so every row is seen once per epoch.
    """

    def __init__(self, arrays: dict[str, np.ndarray], *, val_frac: float, split_seed: int,
                 meta: dict[str, Any]) -> None:
        self.arrays = arrays
        n = len(next(iter(arrays.values())))
        self.split = dict(zip(_SPLITS, split_indices(n, val_frac, split_seed), strict=True))
        self.meta = {**meta, "n_train": len(self.split["train"]), "n_val": len(self.split["val"])}

    def rows(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(a[rows])) for k, a in self.arrays.items()}

    def _positions(self, split: str, index: int, batch_size: int, seed: int) -> np.ndarray:
        pool = self.split[split]
        n = len(pool)
        q = index * batch_size + np.arange(batch_size)
        epochs, within = np.divmod(q, n)
        out = np.empty(batch_size, dtype=np.int64)
        for e in np.unique(epochs):
            perm = rng_for(seed, int(e), _SPLITS.index(split), 0xE90C).permutation(n)
            sel = epochs == e
            out[sel] = pool[perm[within[sel]]]
        return out

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict[str, torch.Tensor]:
        _check_split(split)
        if not len(self.split[split]):
            raise CarambaError(f"the {split} split is empty", hint="raise val_frac above 0")
        return self.rows(self._positions(split, index, batch_size, seed))

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Iterator[dict]:
        _check_split(split)
        pool = self.split[split]
        for i, b in enumerate(range(0, len(pool), batch_size)):
            if limit is not None and i >= limit:
                return
            yield self.rows(pool[b:b + batch_size])
