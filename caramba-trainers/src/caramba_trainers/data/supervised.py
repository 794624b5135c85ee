"""Supervised rows: ``dataset.npy_supervised`` and ``dataset.digits`` (``inputs``, ``targets``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from caramba import CarambaError, DataError, require
from caramba_trainers.data.base import ArrayDataset
from caramba_trainers.data_checks import DATASETS_EXTRA

__all__ = ["DigitsDataset", "NpySupervisedDataset", "load_npy"]


def load_npy(path: str, field: str, *, mmap: bool = False) -> np.ndarray:
    if not Path(path).exists():
        raise DataError(f"file '{path}' does not exist", path=f"data.config.{field}",
                           hint="write it with numpy.save, or fix the path")
    return np.load(path, mmap_mode="r" if mmap else None)


def _targets(y: np.ndarray) -> np.ndarray:
    # Integer labels stay class ids (int64 for cross entropy); anything else is a regression target.
    return y.astype(np.int64) if y.dtype.kind in "iub" else y.astype(np.float32)


class NpySupervisedDataset(ArrayDataset):
    def __init__(self, config: Any) -> None:
        x = load_npy(config.x_path, "x_path", mmap=config.mmap)
        y = load_npy(config.y_path, "y_path", mmap=config.mmap)
        if len(x) != len(y):
            raise CarambaError(f"x has {len(x)} rows but y has {len(y)}", path="data.config.y_path",
                               hint="inputs and targets must have one row each per example")
        meta: dict[str, Any] = {"input_shape": list(x.shape[1:])}
        if y.dtype.kind in "iub":
            meta["num_classes"] = int(np.max(y)) + 1
        # Rows are converted per batch, so a memmap is never read whole.
        super().__init__({"inputs": _Float32View(x), "targets": _TargetView(y)},
                         val_frac=config.val_frac, split_seed=config.split_seed, meta=meta)


class _Float32View:
    """Row access that converts to float32 on read (keeps a memmap lazy)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, rows: Any) -> np.ndarray:
        return np.asarray(self.a[rows], dtype=np.float32)


class _TargetView(_Float32View):
    def __getitem__(self, rows: Any) -> np.ndarray:
        return _targets(np.asarray(self.a[rows]))


class DigitsDataset(ArrayDataset):
    def __init__(self, config: Any) -> None:
        require("sklearn", package="scikit-learn", extra=DATASETS_EXTRA, needed_by="dataset.digits")
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)  # x: (N, 8, 8), pixel values in [0, 1]
        x = x[:, None, :, :] if config.as_ == "images" else x.reshape(len(x), 64)
        super().__init__({"inputs": x, "targets": digits.target.astype(np.int64)},
                         val_frac=config.val_frac, split_seed=config.split_seed,
                         meta={"num_classes": 10, "input_shape": list(x.shape[1:])})
