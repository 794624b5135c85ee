"""Torch-free config structs of caramba-infer's components.

These are what a manifest's ``runs[].verify`` entries and ``benchmarks[].config`` decode
into, plus the generation settings. Constraints across fields are checked in
``__post_init__`` so a bad value is reported at its manifest path.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

from caramba import BenchmarkConfig, Config, VerifierConfig

__all__ = [
    "CacheKindConfig",
    "CompareConfig",
    "EvalCase",
    "EvalConfig",
    "EvalThresholds",
    "FidelityConfig",
    "GenerateConfig",
    "L1Thresholds",
    "LatencyConfig",
    "MemoryConfig",
    "PerplexityConfig",
    "QuantizedCacheConfig",
]

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


def _positive_list(name: str, values: list[int]) -> None:
    if not values:
        raise ValueError(f"{name} must list at least one value")
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values}")


# --- generation ----------------------------------------------------------------------------

class GenerateConfig(Config, kw_only=True):
    """Sampling settings for one call of :meth:`caramba_infer.Generator.generate`.

    ``temperature <= 0`` is greedy decoding. Filters apply in the order repetition
    penalty, temperature, top-k, top-p (the order of Hugging Face's logits processors).
    """

    max_new_tokens: NonNegativeInt = 64
    temperature: float = 1.0
    top_k: PositiveInt | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] | None = None
    repetition_penalty: PositiveFloat = 1.0
    stop_tokens: list[int] = []
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


# --- cache kinds ---------------------------------------------------------------------------

class CacheKindConfig(Config, kw_only=True):
    """A cache kind stored as a plain dtype (``fp32``, ``fp16``, ``bf16``)."""


class QuantizedCacheConfig(Config, kw_only=True):
    """A block-quantised cache kind (``q8_0``, ``q4_0``): ``qblock`` values share one fp16 scale."""

    qblock: PositiveInt = 32

    def __post_init__(self) -> None:
        if self.qblock % 2:
            raise ValueError(f"qblock must be even (4-bit values are packed in pairs), got {self.qblock}")


# --- verifiers -----------------------------------------------------------------------------

class L1Thresholds(Config, kw_only=True):
    """Bounds on the mean and the maximum absolute difference; at least one is required."""

    max_mean_l1: PositiveFloat | None = None
    max_max_l1: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if self.max_mean_l1 is None and self.max_max_l1 is None:
            raise ValueError("set max_mean_l1, max_max_l1 or both")


class CompareConfig(VerifierConfig, kw_only=True):
    """Per-layer and logit L1 between a model and its reference on held-out batches.

    Layers are matched by node path (every module that declares a KV cache or a
    recurrent state, i.e. every attention and SSM layer), so the two models must share
    their layout. The reference is the run's ``teacher`` (an upcycle run) by default.
    """

    batches: PositiveInt = 2
    batch_size: PositiveInt = 1
    split: Literal["val", "train"] = "val"
    model: str = "student"
    reference: str = "teacher"
    attention: L1Thresholds | None = None
    logits: L1Thresholds | None = None

    def __post_init__(self) -> None:
        if self.attention is None and self.logits is None:
            raise ValueError("compare needs thresholds: set 'attention', 'logits' or both")


class FidelityConfig(VerifierConfig, kw_only=True):
    """ΔNLL = NLL(model) − NLL(reference), token-weighted, and ppl ratio = exp(ΔNLL) on held-out data."""

    batches: PositiveInt = 4
    batch_size: PositiveInt = 1
    block_size: PositiveInt | None = None
    split: Literal["val", "train"] = "val"
    model: str = "student"
    reference: str = "teacher"
    max_delta_nll: float | None = None
    max_ppl_ratio: PositiveFloat | None = None

    def __post_init__(self) -> None:
        if self.max_delta_nll is None and self.max_ppl_ratio is None:
            raise ValueError("fidelity needs a threshold: set max_delta_nll, max_ppl_ratio or both")


class EvalCase(Config, kw_only=True):
    """One prompt. ``int_greedy``: the first integer of the greedy continuation equals ``answer``;
    ``choice_logprob``: the choice with the highest total log-probability is ``answer``;
    ``exact_match_greedy``: the greedy continuation (stripped) starts with ``answer``."""

    id: str
    prompt: str
    kind: Literal["int_greedy", "choice_logprob", "exact_match_greedy"]
    answer: str | int
    choices: list[str] = []

    def __post_init__(self) -> None:
        if self.kind == "choice_logprob":
            if len(self.choices) < 2:
                raise ValueError(f"case '{self.id}': choice_logprob needs at least two choices")
            if str(self.answer) not in self.choices:
                raise ValueError(f"case '{self.id}': answer {self.answer!r} is not one of the choices")


class EvalThresholds(Config, kw_only=True):
    min_student_accuracy: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    max_accuracy_drop: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None


class EvalConfig(VerifierConfig, kw_only=True):
    """Behavioural cases scored on the model (and on the reference, when the run has one).

    ``tokenizer: dataset`` uses the target dataset's tokenizer; ``byte`` encodes UTF-8
    bytes; any other name is a registered ``tokenizer`` component.
    """

    cases: list[EvalCase]
    tokenizer: str = "dataset"
    max_new_tokens: PositiveInt = 16
    context_window: PositiveInt | None = None
    model: str = "student"
    reference: str = "teacher"
    thresholds: EvalThresholds = msgspec.field(default_factory=EvalThresholds)

    __caramba_unwrapped__: ClassVar[dict[str, str]] = {"tokenizer": "type"}

    def __post_init__(self) -> None:
        if not self.cases:
            raise ValueError("eval needs at least one case")
        ids = [c.id for c in self.cases]
        if len(set(ids)) != len(ids):
            raise ValueError(f"eval case ids must be unique, got {ids}")


# --- benchmarks ----------------------------------------------------------------------------

class PerplexityConfig(BenchmarkConfig, kw_only=True):
    """exp(token-weighted mean NLL) on the dataset's held-out split (never the training region)."""

    num_batches: PositiveInt = 8
    batch_size: PositiveInt = 1
    block_size: PositiveInt | None = None
    split: Literal["val", "test"] = "val"

    __caramba_ignored__: ClassVar[dict[str, str]] = {
        "dataset": "perplexity is measured on the target dataset's held-out split (split:), never on a "
                   "separate file (the original read the start of the training file)",
    }


class LatencyConfig(BenchmarkConfig, kw_only=True):
    """Prefill and decode timing with preallocated caches: median of ``timed_runs`` after warm-up."""

    prompt_lengths: list[int] = msgspec.field(default_factory=lambda: [64, 128])
    generation_lengths: list[int] = msgspec.field(default_factory=lambda: [32])
    batch_sizes: list[int] = msgspec.field(default_factory=lambda: [1])
    warmup_runs: NonNegativeInt = 1
    timed_runs: PositiveInt = 3
    cache_kind: str = "fp32"
    use_cache: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _positive_list("prompt_lengths", self.prompt_lengths)
        _positive_list("generation_lengths", self.generation_lengths)
        _positive_list("batch_sizes", self.batch_sizes)


class MemoryConfig(BenchmarkConfig, kw_only=True):
    """KV-cache bytes measured from the real cache tensors vs the analytic value, and peak memory."""

    sequence_lengths: list[int] = msgspec.field(default_factory=lambda: [128, 256])
    batch_sizes: list[int] = msgspec.field(default_factory=lambda: [1])
    cache_kinds: list[str] = msgspec.field(default_factory=lambda: ["fp32", "fp16", "bf16"])
    measure_peak: bool = True
    decode_steps: NonNegativeInt = 4
    tolerance: Annotated[float, msgspec.Meta(ge=0.0)] = 0.01
    seed: int = 0

    __caramba_renamed__: ClassVar[dict[str, str]] = {"quantization_modes": "cache_kinds"}
    __caramba_ignored__: ClassVar[dict[str, str]] = {
        "measure_kvcache": "KV-cache bytes are always measured, from the real cache tensors",
    }

    def __post_init__(self) -> None:
        _positive_list("sequence_lengths", self.sequence_lengths)
        _positive_list("batch_sizes", self.batch_sizes)
        if not self.cache_kinds:
            raise ValueError("cache_kinds must list at least one kind")
