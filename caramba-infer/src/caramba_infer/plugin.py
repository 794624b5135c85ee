"""The caramba-infer plugin: cache kinds, verifiers, benchmarks and artifact writers.

Torch-free: only config structs are imported here; each component's module loads on
first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caramba import hookimpl
from caramba_infer.diffusion_specs import DiffusionSamplesConfig
from caramba_infer.specs import (
    CacheKindConfig,
    CompareConfig,
    EvalConfig,
    FidelityConfig,
    LatencyConfig,
    MemoryConfig,
    PerplexityConfig,
    QuantizedCacheConfig,
)

_P = "caramba_infer"


@hookimpl
def caramba_register_cache_kinds(registry: Any) -> None:
    registry.add("fp32", config=CacheKindConfig, factory=f"{_P}.caches:fp32", summary="float32 static KV cache")
    registry.add("fp16", config=CacheKindConfig, factory=f"{_P}.caches:fp16", summary="float16 static KV cache")
    registry.add("bf16", config=CacheKindConfig, factory=f"{_P}.caches:bf16", summary="bfloat16 static KV cache")
    registry.add("q8_0", config=QuantizedCacheConfig, factory=f"{_P}.caches:q8_0", aliases=("q8",),
                 summary="8-bit block-quantised KV cache (fp16 scale per block)")
    registry.add("q4_0", config=QuantizedCacheConfig, factory=f"{_P}.caches:q4_0", aliases=("q4",),
                 summary="4-bit block-quantised KV cache (fp16 scale per block)")


@hookimpl
def caramba_register_verifiers(registry: Any) -> None:
    registry.add("compare", config=CompareConfig, factory=f"{_P}.verify:Compare",
                 summary="per-layer and logit L1 against a reference model")
    registry.add("fidelity", config=FidelityConfig, factory=f"{_P}.verify:Fidelity",
                 summary="ΔNLL and perplexity ratio against a reference on held-out data")
    registry.add("eval", config=EvalConfig, factory=f"{_P}.verify:Eval",
                 summary="behavioural cases (int_greedy, choice_logprob, exact_match_greedy)")


@hookimpl
def caramba_register_benchmarks(registry: Any) -> None:
    registry.add("perplexity", config=PerplexityConfig, factory=f"{_P}.benchmarks:Perplexity",
                 summary="perplexity on the held-out split")
    registry.add("latency", config=LatencyConfig, factory=f"{_P}.benchmarks:Latency",
                 summary="prefill/decode ms, time to first token, tokens/s with cached decoding")
    registry.add("memory", config=MemoryConfig, factory=f"{_P}.benchmarks:Memory",
                 summary="measured vs analytic KV-cache bytes, peak memory")
    registry.add("diffusion_samples", config=DiffusionSamplesConfig, factory=f"{_P}.diffusion:DiffusionSamples",
                 summary="MMD and nearest-neighbour distance of a generative model's samples to held-out data")


@hookimpl
def caramba_register_artifacts(registry: Any) -> None:
    registry.add("benchmark_summary", factory=f"{_P}.artifacts:SummaryWriter",
                 summary="adds a per-model summary to report.json")
    registry.add("benchmark_csv", factory=f"{_P}.artifacts:CsvWriter",
                 summary="perplexity.csv, latency.csv, memory.csv")
    registry.add("benchmark_plots", factory=f"{_P}.artifacts:PlotWriter",
                 summary="summary.png, latency_vs_context.png, memory_scaling.png")
    registry.add("benchmark_tables", factory=f"{_P}.artifacts:TableWriter",
                 summary="tables.tex (booktabs)")
    registry.add("diffusion_samples", factory=f"{_P}.diffusion:DiffusionSamplesWriter",
                 summary="diffusion.csv and diffusion_samples.png (held-out data next to samples)")


@hookimpl
def caramba_preset_dirs() -> list[str]:
    # The repository's config/presets, shipped inside this package (a symlink in a checkout,
    # real files in a built wheel), so `caramba run standard_transformer` works anywhere.
    return [str(Path(__file__).resolve().parent / "presets")]
