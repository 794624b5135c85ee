"""Tokenizers for the embedded corpora: bytes (no training) and a cached byte-level BPE."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from caramba import atomic_write_text

__all__ = ["BPETokenizer", "ByteTokenizer", "checkpoint_tokenizer", "train_bpe"]

EOS = "<|endoftext|>"
#: end-of-document tokens of common pretrained tokenizers (GPT-2/SmolLM, Llama 3, Llama 2/Mistral, Gemma)
EOS_TOKENS = (EOS, "<|end_of_text|>", "</s>", "<eos>")


class ByteTokenizer:
    """UTF-8 bytes are ids 0-255; id 256 ends a document."""

    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A ``tokenizers`` byte-level BPE with ``<|endoftext|>`` as its end-of-document id."""

    def __init__(self, tokenizer: object, vocab_size: int | None = None) -> None:
        self._tok = tokenizer
        self.vocab_size: int = vocab_size or tokenizer.get_vocab_size()
        self.eos_id: int = next((i for t in EOS_TOKENS if (i := tokenizer.token_to_id(t)) is not None), None)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids))


def train_bpe(*, texts: list[str], vocab_size: int, cache_dir: str | Path) -> BPETokenizer:
    """Train (or load from ``cache_dir``) a byte-level BPE of ``vocab_size`` on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    digest = hashlib.sha1(f"{vocab_size}".encode())
    for t in texts:
        digest.update(t.encode("utf-8", errors="replace"))
    path = Path(cache_dir) / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if path.exists():
        return BPETokenizer.load(path)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    atomic_write_text(path, tok.to_str())
    return BPETokenizer(tok)


def checkpoint_tokenizer(uri: str) -> BPETokenizer:
    """The tokenizer a pretrained checkpoint carries (``tokenizer.json`` or the GGUF's own)."""
    from caramba import CheckpointError
    from caramba_layers import load_tokenizer

    tok = load_tokenizer(uri)
    if tok is None:
        raise CheckpointError(f"{uri} carries no tokenizer", hint="use tokenizer: bpe or byte")
    wrapped = BPETokenizer(tok)
    if wrapped.eos_id is None:
        raise CheckpointError(f"the tokenizer of {uri} has none of {', '.join(EOS_TOKENS)} to separate documents")
    return wrapped
