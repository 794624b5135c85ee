"""Objectives: ``objective(outputs, batch, ctx) -> (loss, metrics)``.

Every objective adds ``ctx.total_aux_loss()`` (MoE load balancing, router z-loss, ...)
to its loss and reports the main term and the aux term separately.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from caramba import Context, RunError

__all__ = ["ClassificationCE", "DiffusionEps", "MSE", "NextTokenCE", "NodeClassification", "Objective"]


def _get(d: dict[str, Any], key: str, where: str, field: str) -> torch.Tensor:
    if key not in d:
        raise RunError(f"the {where} has no '{key}' (it has: {', '.join(sorted(d)) or 'nothing'})",
                       path=f"objective.config.{field}", hint=f"set {field} to one of those keys")
    return d[key]


class Objective:
    """Base: subclasses compute the main loss; the aux losses are added here."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def __call__(self, outputs: dict, batch: dict, ctx: Context | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        ctx = ctx if ctx is not None else Context()
        loss, metrics = self.main(outputs, batch, ctx)
        aux = ctx.total_aux_loss()
        if isinstance(aux, torch.Tensor) or aux != 0.0:
            metrics["main_loss"] = float(loss.detach())
            metrics["aux_loss"] = float(aux.detach()) if isinstance(aux, torch.Tensor) else float(aux)
            loss = loss + aux
        metrics["loss"] = float(loss.detach())
        return loss, metrics


class NextTokenCE(Objective):
    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        logits = _get(outputs, c.logits_key, "model output", "logits_key")  # logits: (B, T, V)
        targets = _get(batch, c.target_key, "batch", "target_key")  # targets: (B, T)
        loss = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=c.ignore_index,
                               label_smoothing=c.label_smoothing)
        return loss, {}


class ClassificationCE(Objective):
    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        logits = _get(outputs, c.logits_key, "model output", "logits_key")  # logits: (B, C)
        labels = _get(batch, c.labels_key, "batch", "labels_key")  # labels: (B,)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=c.ignore_index,
                               label_smoothing=c.label_smoothing)
        keep = labels != c.ignore_index
        acc = (logits.argmax(-1)[keep] == labels[keep]).float().mean()
        return loss, {"acc": float(acc)}


class MSE(Objective):
    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        pred = _get(outputs, self.config.pred_key, "model output", "pred_key")
        target = _get(batch, self.config.target_key, "batch", "target_key")
        return F.mse_loss(pred.float(), target.float().reshape(pred.shape)), {}


class DiffusionEps(MSE):
    """``|| eps_theta(x_t, t) - eps ||^2`` (Ho et al. 2020, eq. 14: the simplified loss).

    ``eps`` is the batch's when the dataset noised it (``dataset.diffusion_vector``); when the
    batch holds only ``x0``, the system drew the noise and returns it in its outputs.
    """

    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        key = self.config.target_key
        if key not in batch and key in outputs:
            batch = {**batch, key: outputs[key]}
        return super().main(outputs, batch, ctx)


class NodeClassification(Objective):
    def main(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        logits = _get(outputs, c.logits_key, "model output", "logits_key")  # logits: (N, C) or (1, N, C)
        labels = _get(batch, c.labels_key, "batch", "labels_key")  # labels: (N,)
        mask_key = c.train_mask_key if ctx.training else c.eval_mask_key
        mask = _get(batch, mask_key, "batch", "train_mask_key" if ctx.training else "eval_mask_key")
        logits = logits.reshape(-1, logits.shape[-1])[mask.reshape(-1)]
        labels = labels.reshape(-1)[mask.reshape(-1)]
        loss = F.cross_entropy(logits.float(), labels)
        return loss, {"acc": float((logits.argmax(-1) == labels).float().mean())}
