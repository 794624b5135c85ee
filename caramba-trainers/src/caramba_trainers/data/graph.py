"""One-graph node classification: ``dataset.graph_npy`` and ``dataset.karate``.

Every batch is the whole graph: ``inputs`` (N, F), ``adj`` (N, N), ``targets`` (N,) (also
as ``labels``, the original caramba's name),
``train_mask``/``val_mask`` (N,) booleans (``test_mask`` equals ``val_mask``). The split
is stratified by class so each class has training nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from caramba import CarambaError, require
from caramba_trainers.data.base import Dataset, _check_split, rng_for
from caramba_trainers.data.supervised import load_npy
from caramba_trainers.data_checks import DATASETS_EXTRA

__all__ = ["GraphDataset", "GraphNpyDataset", "KarateDataset", "normalize_adjacency"]


def normalize_adjacency(adj: np.ndarray) -> np.ndarray:
    """``D^-1/2 A D^-1/2`` (Kipf & Welling 2017), zero rows left at zero."""
    deg = adj.sum(axis=1)
    inv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    return (adj * inv[:, None] * inv[None, :]).astype(np.float32)


class GraphDataset(Dataset):
    def __init__(self, x: np.ndarray, adj: np.ndarray, labels: np.ndarray, *, add_self_loops: bool,
                 normalize: bool, val_frac: float, split_seed: int) -> None:
        n = len(x)
        if adj.shape != (n, n) or labels.shape != (n,):
            raise CarambaError(f"graph shapes disagree: x {x.shape}, adj {adj.shape}, labels {labels.shape}",
                               hint="expected x (N, F), adj (N, N), labels (N,)")
        adj = adj.astype(np.float32)
        if add_self_loops:
            adj = np.maximum(adj, np.eye(n, dtype=np.float32))
        if normalize:
            adj = normalize_adjacency(adj)
        val = np.zeros(n, dtype=bool)
        rng = rng_for(split_seed, 0x6AF)
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            val[members[: min(len(members) - 1, round(len(members) * val_frac))]] = True
        self.graph = {"inputs": torch.from_numpy(x.astype(np.float32)), "adj": torch.from_numpy(adj),
                      "targets": torch.from_numpy(labels.astype(np.int64)),
                      "labels": torch.from_numpy(labels.astype(np.int64)),  # the original's name
                      "train_mask": torch.from_numpy(~val), "val_mask": torch.from_numpy(val),
                      "test_mask": torch.from_numpy(val.copy())}
        self.meta = {"num_nodes": n, "d_in": int(x.shape[1]), "num_classes": int(labels.max()) + 1,
                     "n_train": int((~val).sum()), "n_val": int(val.sum())}

    def batch(self, split: str, index: int, batch_size: int, *, seed: int) -> dict[str, torch.Tensor]:
        _check_split(split)
        return dict(self.graph)

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Iterator[dict]:
        _check_split(split)
        if limit is None or limit > 0:
            yield dict(self.graph)


class GraphNpyDataset(GraphDataset):
    def __init__(self, config: Any) -> None:
        super().__init__(load_npy(config.x_path, "x_path"), load_npy(config.adj_path, "adj_path"),
                         load_npy(config.labels_path, "labels_path"), add_self_loops=config.add_self_loops,
                         normalize=config.normalize, val_frac=config.val_frac, split_seed=config.split_seed)


class KarateDataset(GraphDataset):
    def __init__(self, config: Any) -> None:
        nx: Any = require("networkx", package="networkx", extra=DATASETS_EXTRA, needed_by="dataset.karate")

        g = nx.karate_club_graph()
        nodes = sorted(g.nodes)
        adj = nx.to_numpy_array(g, nodelist=nodes, weight=None)
        labels = np.array([0 if g.nodes[v]["club"] == "Mr. Hi" else 1 for v in nodes])
        super().__init__(np.eye(len(nodes), dtype=np.float32), adj, labels, add_self_loops=config.add_self_loops,
                         normalize=config.normalize, val_frac=config.val_frac, split_seed=config.split_seed)
