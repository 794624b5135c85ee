"""``dataset.tokens``: a token file read through a memory map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from caramba import CarambaError, DataError
from caramba_trainers.data.base import BlockDataset

__all__ = ["TokenDataset", "open_tokens"]


def open_tokens(path: str | Path, dtype: str = "uint16") -> np.ndarray:
    """A read-only memmap of a 1-D ``.npy`` file, or of a raw ``.bin``/``.tokens`` file of ``dtype``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"token file '{path}' does not exist", path="data.config.path",
                           hint="write one with numpy.save(path, tokens) or point path at an existing file")
    try:
        if path.suffix == ".npy":
            tokens = np.load(path, mmap_mode="r")  # object arrays are refused here: they would need pickle
        else:
            tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
    except ValueError as exc:
        raise CarambaError(f"token file '{path}' cannot be read as tokens: {exc}", path="data.config.path",
                           hint="expected a 1-D array of integer token ids saved with numpy.save") from None
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise CarambaError(f"token file '{path}' holds a {tokens.dtype} array of shape {tokens.shape}",
                           path="data.config.path", hint="expected a 1-D array of integer token ids")
    return tokens


def _max_token(tokens: np.ndarray, chunk: int = 1 << 24) -> int:
    return max(int(tokens[i:i + chunk].max()) for i in range(0, len(tokens), chunk))


class TokenDataset(BlockDataset):
    def __init__(self, config: Any) -> None:
        tokens = open_tokens(config.path, config.dtype)
        vocab = config.vocab_size if config.vocab_size is not None else _max_token(tokens) + 1
        super().__init__(tokens, config.block_size, config.val_frac, vocab, source=config.path)
        if config.tokenizer_checkpoint:
            from caramba_trainers.data.tokenizers import checkpoint_tokenizer

            self.tokenizer = checkpoint_tokenizer(config.tokenizer_checkpoint)
