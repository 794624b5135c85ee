"""Datasets: every factory returns an object with ``meta``, ``batch`` and ``iter_batches``.

``batch(split, index, batch_size, *, seed)`` is a pure function of its arguments, so the
step counter alone is the data cursor a checkpoint needs. ``iter_batches(split, ...)`` is a
sequential, unshuffled pass; ``"val"`` never overlaps what ``"train"`` samples.
"""

from caramba_trainers.data.base import Dataset, rng_for

__all__ = ["Dataset", "rng_for"]
