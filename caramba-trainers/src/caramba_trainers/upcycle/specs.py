"""Config structs of ``trainer.upcycle`` (torch-free)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from caramba import Config, Scope
from caramba_trainers.specs import TrainConfig

__all__ = ["UpcycleTrainConfig", "UpcycleTrainerConfig"]

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]


class UpcycleTrainerConfig(Config, kw_only=True):
    """``trainer.upcycle`` takes no target-level config; each run's ``train:`` says what to do."""


class UpcycleTrainConfig(TrainConfig, kw_only=True):
    """A run of ``trainer.upcycle``: every field of ``trainer.standard``'s ``train:`` plus these.

    ``phase: blockwise`` distils one attention block at a time; ``run.steps`` is the TOTAL
    number of optimizer steps of the phase, split evenly over the blocks (the first blocks
    take the remainder). With ``convergence_target`` set, each block instead trains until its
    loss reaches the target, or ``convergence_patience`` steps pass without a new best, or
    ``convergence_max_steps``. ``phase: global`` fine-tunes the whole student with next-token
    cross entropy times ``distill_ce_weight`` plus ``distill_kl_weight`` times the KL
    divergence to the teacher (``distill_ce_weight: 0`` is pure distillation: the student
    learns the teacher, not the fine-tuning text).

    A run starts from the student of the run before it in the target (``init_from: previous``,
    the default), from a named run (``init_from: <run id>``), or from the surgery
    (``init_from: surgery``, what the first run does anyway).
    """

    phases: ClassVar[tuple[str, ...]] = ("blockwise", "global")
    __caramba_inherited__: ClassVar[tuple[str, ...]] = ("teacher_ckpt",)
    __caramba_ignored__: ClassVar[dict[str, str]] = {
        "cache_teacher_outputs": "the blockwise phase always caches the teacher's block outputs "
                                 "(blockwise_teacher_cache_batches sets how many batches)",
    }
    phase: Literal["blockwise", "global"] = "global"
    teacher_ckpt: str = ""
    init_from: str = "previous"
    dba_init: Literal["svd", "random"] = "svd"
    dba_calibration_batches: PositiveInt = 2
    teacher_sanity_check: bool = True
    teacher_sanity_max_ppl: Annotated[float, msgspec.Meta(gt=1.0)] = 200.0
    # blockwise
    blockwise_loss: Literal["mse", "l1"] = "mse"
    blockwise_input: Literal["student", "teacher"] = "student"
    blockwise_teacher_cache_batches: PositiveInt = 16
    blockwise_grad_clip_norm: NonNegFloat = 0.0
    convergence_target: NonNegFloat | None = None
    convergence_patience: PositiveInt = 50
    convergence_max_steps: PositiveInt = 5000
    # global
    distill_ce_weight: NonNegFloat = 1.0
    distill_kl_weight: NonNegFloat = 0.0
    distill_temperature: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0

    def check(self, scope: Scope) -> None:
        super().check(scope)
        if self.phase == "global" and self.distill_ce_weight == 0 and self.distill_kl_weight == 0:
            scope.error("distill_kl_weight", "with distill_ce_weight 0 the global phase needs distill_kl_weight > 0",
                        "set distill_kl_weight: 1.0")
        if not self.teacher_ckpt:
            scope.error("teacher_ckpt", "trainer.upcycle needs teacher_ckpt",
                        "a folder with config.json, a .gguf file, hf://org/name or pkg://package/path")
