"""A tiny plugin for testing inference: a language model that follows the cache protocol.

It is the reference that caramba-infer's own tests decode against, and a template for a
layer author checking that a new attention or SSM module caches correctly. Registration
is torch-free; the modules live in :mod:`caramba_infer.testing.models`.

Components: system ``system.infer_tiny_lm`` (standard, GQA, DBA attention and a diagonal
SSM, mixable per block), dataset ``dataset.infer_text`` (bytes of a real text with a
held-out tail), objective ``objective.infer_ce``, trainer ``trainer.infer_pair`` (trains a
``teacher``, then derives a ``student`` from it).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from caramba import Config, hookimpl

__all__ = ["PairTrainerConfig", "TextDataConfig", "TinyLMConfig"]

_M = "caramba_infer.testing.models"
Mixer = Literal["standard", "gqa", "decoupled", "ssm"]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


class TinyLMConfig(Config, kw_only=True):
    """Embedding, pre-norm blocks (mixer + MLP), final norm, untied head."""

    vocab_size: PositiveInt = 256
    d_model: PositiveInt = 32
    mixers: list[Mixer] = msgspec.field(default_factory=lambda: ["standard", "standard"])
    n_heads: PositiveInt = 4
    n_kv_heads: PositiveInt | None = None
    sem_dim: PositiveInt = 8
    geo_dim: PositiveInt = 16
    v_dim: PositiveInt | None = None
    d_state: PositiveInt = 8
    d_conv: PositiveInt = 3
    rope_base: float = 10000.0
    seed: int = 0

    def __post_init__(self) -> None:
        kv = self.n_kv_heads or self.n_heads
        if self.d_model % self.n_heads or self.n_heads % kv:
            raise ValueError("n_heads must divide d_model and n_kv_heads must divide n_heads")
        if "decoupled" in self.mixers and (self.sem_dim % self.n_heads or self.geo_dim % (2 * self.n_heads)):
            raise ValueError("sem_dim must divide by n_heads and geo_dim by 2*n_heads (RoPE pairs)")

    def kv_elements_per_token(self) -> int:
        hd = self.d_model // self.n_heads
        per = {"standard": 2 * self.n_heads * hd, "gqa": 2 * (self.n_kv_heads or self.n_heads) * hd,
               "decoupled": self.sem_dim + self.geo_dim + (self.v_dim or self.d_model), "ssm": 0}
        return sum(per[m] for m in self.mixers)

    def num_params(self) -> int:
        return 0


class TextDataConfig(Config, kw_only=True):
    """UTF-8 bytes of a text (default: a module of the Python standard library); the last
    ``val_frac`` of it is held out."""

    path: str | None = None
    block_size: PositiveInt = 32
    val_frac: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.2
    max_chars: PositiveInt = 60000


class CEConfig(Config, kw_only=True):
    pass


class PairTrainerConfig(Config, kw_only=True):
    pass


class PairRunConfig(Config, kw_only=True):
    lr: float = 3e-3
    batch_size: PositiveInt = 8
    student_noise: Annotated[float, msgspec.Meta(ge=0.0)] = 0.01
    teacher: bool = True


@hookimpl
def caramba_register_systems(registry) -> None:
    registry.add("system.infer_tiny_lm", config=TinyLMConfig, factory=f"{_M}:TinyLM",
                 summary="tiny LM with cached standard/GQA/DBA attention and SSM blocks")


@hookimpl
def caramba_register_datasets(registry) -> None:
    registry.add("dataset.infer_text", config=TextDataConfig, factory=f"{_M}:TextData",
                 summary="bytes of a real text with a held-out tail")


@hookimpl
def caramba_register_objectives(registry) -> None:
    registry.add("objective.infer_ce", config=CEConfig, factory=f"{_M}:CrossEntropy",
                 summary="next-token cross-entropy")


@hookimpl
def caramba_register_trainers(registry) -> None:
    registry.add("trainer.infer_pair", config=PairTrainerConfig, factory=f"{_M}:PairTrainer",
                 summary="trains a teacher and derives a perturbed student", run_config=PairRunConfig)
