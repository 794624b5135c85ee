"""Metrics sinks selected in ``defaults.logging.sinks`` (JSONL is core's and always on).

Each factory is ``Factory(config, session=session)``; the session opens sinks on rank 0
only. A sink writes under the run folder and is closed when the run ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caramba import Sink, require

__all__ = ["HDF5Sink", "TensorBoardSink", "WandbSink"]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class HDF5Sink(Sink):
    """``metrics.h5``: group per phase; per metric a resizable ``(n, 2)`` dataset of (step, value)."""

    def __init__(self, config: Any = None, *, session: Any) -> None:
        import h5py

        self.path = Path(session.run_dir) / "metrics.h5"
        self._f = h5py.File(self.path, "a")

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        group = self._f.require_group(phase)
        for name, value in _scalars(metrics).items():
            if name not in group:
                group.create_dataset(name, shape=(0, 2), maxshape=(None, 2), dtype="f8", chunks=(256, 2))
            ds = group[name]
            ds.resize(ds.shape[0] + 1, axis=0)
            ds[-1] = (step, value)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class TensorBoardSink(Sink):
    """TensorBoard event files under ``<run>/tb``; tags are ``<phase>/<metric>``."""

    def __init__(self, config: Any = None, *, session: Any) -> None:
        require("tensorboard", package="tensorboard", extra="caramba-trainers[tensorboard]",
                needed_by="the tensorboard sink")
        from torch.utils.tensorboard import SummaryWriter

        self._w = SummaryWriter(log_dir=str(Path(session.run_dir) / "tb"))

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        for name, value in _scalars(metrics).items():
            self._w.add_scalar(f"{phase}/{name}", value, step)

    def close(self) -> None:
        self._w.flush()
        self._w.close()


class WandbSink(Sink):
    """Weights & Biases; ``wandb_mode: offline`` (the default) writes ``<run>/wandb`` and needs no network.

    The API key, if any, is read by wandb from its own environment; caramba never logs it.
    """

    def __init__(self, config: Any = None, *, session: Any) -> None:
        wandb: Any = require("wandb", package="wandb", extra="caramba-trainers[wandb]", needed_by="the wandb sink")
        logging = session.manifest.spec.defaults.logging
        folder = Path(session.run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=logging.wandb_project or session.manifest.name,
                               entity=logging.wandb_entity or None, mode=logging.wandb_mode,
                               name=f"{session.target.name}/{session.run.id}", dir=str(folder),
                               config={"target": session.target.name, "run": session.run.id,
                                       "seed": session.run.seed}, reinit="finish_previous")

    def log(self, step: int, metrics: dict[str, float], *, phase: str = "train") -> None:
        self._run.log({f"{phase}/{k}": v for k, v in _scalars(metrics).items()}, step=step)

    def close(self) -> None:
        self._run.finish()
