"""Objectives against float64 recomputations; aux losses from the context are added."""

from __future__ import annotations

import pytest
import torch

from caramba.errors import RunError
from caramba.graph import Context
from caramba_trainers.objectives import MSE, ClassificationCE, DiffusionEps, NextTokenCE, NodeClassification
from caramba_trainers.specs import (
    ClassificationCEConfig,
    DiffusionEpsConfig,
    MSEConfig,
    NextTokenCEConfig,
    NodeClassificationConfig,
)


def _nll64(logits, targets):
    lp = torch.log_softmax(logits.double(), -1)
    return -lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def test_next_token_ce_is_mean_nll_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g)
    targets = torch.randint(0, 11, (2, 5), generator=g)
    targets[1, 3:] = -100
    loss, metrics = NextTokenCE(NextTokenCEConfig())({"logits": logits}, {"target_ids": targets})
    keep = targets != -100
    expected = _nll64(logits[keep], targets[keep]).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert metrics["loss"] == pytest.approx(float(expected), rel=1e-6)


def test_aux_losses_in_the_context_are_added_with_their_weights():
    logits = torch.zeros(1, 2, 4)
    targets = torch.zeros(1, 2, dtype=torch.long)
    ctx = Context(training=True)
    ctx.add_aux_loss("topology.layers.0", "load_balance", torch.tensor(0.5), weight=0.1)
    ctx.add_aux_loss("topology.layers.1", "z_loss", torch.tensor(2.0), weight=0.01)
    loss, metrics = NextTokenCE(NextTokenCEConfig())({"logits": logits}, {"target_ids": targets}, ctx)
    ce = float(torch.log(torch.tensor(4.0)))  # uniform logits over 4 classes
    assert float(loss) == pytest.approx(ce + 0.05 + 0.02, rel=1e-6)
    assert metrics["aux_loss"] == pytest.approx(0.07) and metrics["main_loss"] == pytest.approx(ce)


def test_classification_ce_reports_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    loss, metrics = ClassificationCE(ClassificationCEConfig())({"logits": logits}, {"targets": labels})
    assert float(loss) == pytest.approx(float(_nll64(logits, labels).mean()), rel=1e-6)
    assert metrics["acc"] == pytest.approx(2 / 3)


def test_mse_and_diffusion_eps_use_their_keys():
    pred = torch.tensor([[1.0, 2.0]])
    loss, _ = MSE(MSEConfig(pred_key="logits"))({"logits": pred}, {"targets": torch.tensor([[0.0, 0.0]])})
    assert float(loss) == pytest.approx(2.5)
    loss, _ = DiffusionEps(DiffusionEpsConfig())({"pred_eps": pred}, {"eps": torch.tensor([[1.0, 0.0]])})
    assert float(loss) == pytest.approx(2.0)


def test_node_classification_uses_the_train_mask_when_training_and_val_mask_otherwise():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    batch = {"targets": torch.tensor([0, 1, 1, 1]), "train_mask": torch.tensor([True, True, False, False]),
             "val_mask": torch.tensor([False, False, True, True])}
    obj = NodeClassification(NodeClassificationConfig())
    _, train = obj({"logits": logits}, batch, Context(training=True))
    _, val = obj({"logits": logits}, batch, Context(training=False))
    assert train["acc"] == 1.0 and val["acc"] == 0.0


def test_a_missing_key_names_the_keys_that_exist():
    with pytest.raises(RunError, match="no 'logits'.*pred"):
        NextTokenCE(NextTokenCEConfig())({"pred": torch.zeros(1)}, {"target_ids": torch.zeros(1)})
