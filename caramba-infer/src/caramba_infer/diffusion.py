"""Sample quality of a generative model on vectors: the ``diffusion_samples`` benchmark and
the ``diffusion_samples`` artifact writer (``diffusion.csv``, ``diffusion_samples.png``).

Each model's samples ``Y`` are compared with the held-out rows ``X`` (never the training
rows) by two distances, both 0 for identical distributions and smaller is better:

* ``mmd2``: the unbiased squared maximum mean discrepancy (Gretton et al. 2012, eq. 3) with
  the mean of Gaussian kernels of bandwidths ``σ · {1/4, 1/2, 1}``, ``σ`` the median pairwise
  distance of ``X`` (the smaller scales see cluster structure the median alone smooths away);
  fixed for every model so their numbers compare;
* ``nn_distance``: the mean of the nearest-neighbour distance from each held-out row to the
  samples (coverage) and from each sample to the held-out rows (precision).

Two reference rows put the numbers in scale: ``gaussian_fit`` (samples of a Gaussian with
the training rows' mean and covariance: what a model must beat to have learnt more than
two moments) and ``train_data`` (training rows themselves: the floor at this sample size).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from caramba import ArtifactWriter, Benchmark, BenchmarkResult, RunError, atomic_write_bytes, atomic_write_text
from caramba_infer.evaluation import dataset

__all__ = ["COLUMNS", "DiffusionSamples", "DiffusionSamplesWriter", "mmd2_unbiased", "nn_distances"]

COLUMNS = ["model", "role", "method", "n_samples", "n_held_out", "dim", "mmd2", "nn_distance", "nn_data_to_samples",
           "nn_samples_to_data", "bandwidth"]


_SCALES = (0.25, 0.5, 1.0)


def _rows(ds: Any, split: str, limit: int) -> torch.Tensor:
    parts, n = [], 0
    for batch in ds.iter_batches(split, 256):
        if "x0" not in batch:
            raise RunError(f"the dataset's batches have no 'x0' (they have {sorted(batch)})",
                           hint="the diffusion_samples benchmark needs vectors x0, e.g. dataset.diffusion_vector")
        parts.append(batch["x0"].double().flatten(1))
        n += len(parts[-1])
        if n >= limit:
            break
    if not parts:
        raise RunError(f"the {split} split is empty", hint="raise the dataset's val_frac")
    return torch.cat(parts)[:limit]


def median_distance(x: torch.Tensor) -> float:
    d = torch.cdist(x, x)
    return float(d[~torch.eye(len(x), dtype=torch.bool)].median())


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> float:
    """``MMD²_u`` (Gretton et al. 2012, eq. 3), ``k = mean_s exp(-|a - b|² / (2 (s σ)²))``, ``s ∈ {1/4, 1/2, 1}``."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * (s * bandwidth) ** 2)) for s in _SCALES) / len(_SCALES)

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


def nn_distances(data: torch.Tensor, samples: torch.Tensor) -> tuple[float, float]:
    """(mean distance from each data row to its nearest sample, and from each sample to its nearest row)."""
    d = torch.cdist(data, samples)  # (N_data, N_samples)
    return float(d.min(dim=1).values.mean()), float(d.min(dim=0).values.mean())


def gaussian_fit(train: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    mean = train.mean(dim=0)
    cov = torch.cov(train.T).reshape(train.shape[1], train.shape[1])
    # A tiny ridge keeps the Cholesky factor defined for constant features (digit border pixels).
    chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(len(mean), dtype=cov.dtype))
    z = torch.randn(n, len(mean), generator=generator, dtype=train.dtype)
    return mean + z @ chol.T


class DiffusionSamples(Benchmark):
    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        c = self.config
        ds = dataset(session)
        held_out = _rows(ds, c.split, c.max_rows)
        train = _rows(ds, "train", c.max_rows)
        n = c.n_samples or len(held_out)
        sigma = median_distance(held_out)
        gen = torch.Generator().manual_seed(c.seed)

        drawn: dict[str, tuple[str, torch.Tensor]] = {}
        for role, model in models.items():
            if not hasattr(model, "sample"):
                raise RunError(f"model '{role}' has no sample(n, method=...) method",
                               hint="the diffusion_samples benchmark measures generative systems such as "
                                    "system.diffusion_denoiser")
            model.eval()
            device = next(model.parameters()).device
            g = torch.Generator(device=device).manual_seed(c.seed)
            y = model.sample(n, method=c.method, steps=c.steps, eta=c.eta, generator=g)
            drawn[role] = (session.label(role), y.detach().double().cpu().flatten(1))
        drawn["gaussian_fit"] = ("Gaussian fit", gaussian_fit(train, n, gen))
        drawn["train_data"] = ("training rows", train[torch.randperm(len(train), generator=gen)[:n]])

        rows = []
        for role, (label, y) in drawn.items():
            to_samples, to_data = nn_distances(held_out, y)
            rows.append({"model": label, "role": role, "method": c.method if role in models else "-",
                         "n_samples": len(y), "n_held_out": len(held_out), "dim": held_out.shape[1],
                         "mmd2": mmd2_unbiased(held_out, y, sigma), "nn_distance": (to_samples + to_data) / 2,
                         "nn_data_to_samples": to_samples, "nn_samples_to_data": to_data, "bandwidth": sigma})
        # The writer draws the samples; they stay in memory (the report keeps only the scores).
        session.results["diffusion_samples"] = {"held_out": held_out.float(),
                                                **{label: y.float() for label, y in drawn.values()}}
        return BenchmarkResult("diffusion_samples", rows, {r["model"]: r["mmd2"] for r in rows})


class DiffusionSamplesWriter(ArtifactWriter):
    """``diffusion.csv`` (the rows above) and ``diffusion_samples.png``: held-out rows next to each
    model's samples (a scatter of the first two dimensions; 8×8 images for 64-dim rows)."""

    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        rows = [r for b in report.get("benchmarks", {}).values() if b.get("type") == "diffusion_samples"
                for r in b["rows"]]
        if not rows:
            return []
        folder = Path(session.target_dir)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        written = [atomic_write_text(folder / "diffusion.csv", buf.getvalue())]
        samples = session.results.get("diffusion_samples")
        if samples:
            written.append(self._plot(samples, rows, folder))
        return written

    def _plot(self, samples: dict[str, torch.Tensor], rows: list[dict[str, Any]], folder: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        score = {r["model"]: r for r in rows}
        panels = [("held-out data", samples["held_out"])] + [(k, v) for k, v in samples.items() if k != "held_out"]
        images = panels[0][1].shape[1] == 64
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), squeeze=False,
                                 layout="constrained")
        lo, hi = float(samples["held_out"].min()), float(samples["held_out"].max())  # one scale for all panels
        for ax, (name, x) in zip(axes[0], panels, strict=True):
            title = name
            if name in score:
                title += f"\nMMD² {score[name]['mmd2']:.4f}  NN {score[name]['nn_distance']:.3f}"
            if images:
                grid = x[:36].reshape(-1, 8, 8)
                grid = torch.cat([grid, grid.new_full((36 - len(grid), 8, 8), lo)]) if len(grid) < 36 else grid
                grid = torch.nn.functional.pad(grid, (0, 1, 0, 1), value=hi)  # a dark line between digits
                tiles = grid.reshape(6, 6, 9, 9).permute(0, 2, 1, 3).reshape(54, 54)
                ax.imshow(tiles.numpy(), cmap="gray_r", vmin=lo, vmax=hi)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=4, alpha=0.6)
                ax.set_xlim(*_limits(samples["held_out"][:, 0]))
                ax.set_ylim(*_limits(samples["held_out"][:, 1]))
            ax.set_title(title, fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return atomic_write_bytes(folder / "diffusion_samples.png", buf.getvalue())


def _limits(v: torch.Tensor) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    pad = 0.15 * (hi - lo)
    return lo - pad, hi + pad
