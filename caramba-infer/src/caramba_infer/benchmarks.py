"""The ``perplexity``, ``latency`` and ``memory`` benchmarks.

Each measures every model the manifest names (``benchmarks[].models``) and labels its rows
with the target's ``labels`` (``session.label(role)``); ``role`` is kept as a column too.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from caramba import Benchmark, BenchmarkResult
from caramba_infer.caches import analytic_kv_bytes_per_token, cache_kind, cached_modules
from caramba_infer.evaluation import (
    PeakMemory,
    dataset,
    device_of,
    held_out_batches,
    model_bytes,
    nll_sum,
    ppl,
    synchronize,
)
from caramba_infer.generate import Generator, lm_logits

__all__ = ["Latency", "Memory", "Perplexity"]


class Perplexity(Benchmark):
    """exp(token-weighted mean NLL) over the first ``num_batches`` batches of the held-out split."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        c = self.config
        ds = dataset(session)
        rows = []
        for role, model in models.items():
            model.eval()
            total, tokens, batches = 0.0, 0, 0
            for batch in held_out_batches(session, c.split, c.batch_size, c.num_batches, block_size=c.block_size,
                                          device=device_of(model), ds=ds):
                nll, n = nll_sum(model, batch)
                total, tokens, batches = total + nll, tokens + n, batches + 1
            loss = total / max(tokens, 1)
            rows.append({"model": session.label(role), "role": role, "split": c.split, "perplexity": ppl(loss),
                         "loss": loss, "num_tokens": tokens, "num_batches": batches})
        return BenchmarkResult("perplexity", rows, {r["model"]: r["perplexity"] for r in rows})


def _vocab_size(model: Any, device: torch.device) -> int:
    with torch.no_grad():
        return int(lm_logits(model, torch.zeros(1, 1, dtype=torch.long, device=device)).shape[-1])


class Latency(Benchmark):
    """Cached prefill/decode timing; median of ``timed_runs`` after ``warmup_runs``.

    ``prefill_ms`` covers the prompt forward and choosing the first new token, so it is
    the time to first token (``ttft_ms``); ``decode_ms`` covers the other ``gen_len - 1``
    tokens. Timings are device-synchronised. Prompts are seeded random tokens (timing does
    not depend on content). ``use_cache: false`` re-runs the whole context per token.
    """

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        c = self.config
        rows = []
        for role, model in models.items():
            model.eval()
            device = device_of(model)
            vocab = _vocab_size(model, device)
            for b in c.batch_sizes:
                for p in c.prompt_lengths:
                    for g in c.generation_lengths:
                        rows.append({"model": session.label(role), "role": role,
                                     **self._measure(model, device, vocab, b, p, g, session), "device": str(device)})
        summary = {}
        for label in dict.fromkeys(r["model"] for r in rows):
            mine = [r["decode_tokens_per_sec"] for r in rows if r["model"] == label]
            summary[label] = statistics.mean(mine)
        return BenchmarkResult("latency", rows, {"decode_tokens_per_sec": summary})

    @torch.no_grad()
    def _measure(self, model: Any, device: torch.device, vocab: int, b: int, p: int, g: int,
                 session: Any) -> dict[str, Any]:
        c = self.config
        gen_rng = torch.Generator().manual_seed(c.seed)
        prompt = torch.randint(0, vocab, (b, p), generator=gen_rng).to(device)
        generator = Generator(model, max_len=p + g, batch_size=b, device=device,
                              cache_kind=cache_kind(c.cache_kind, session.runtime)) if c.use_cache else None
        prefill, decode = [], []
        for run in range(c.warmup_runs + c.timed_runs):
            synchronize(device)
            t0 = time.perf_counter()
            if generator is not None:
                generator.reset()
                token = generator.prefill(prompt).argmax(-1)
            else:
                ids = prompt
                token = lm_logits(model, ids)[:, -1].argmax(-1)
            synchronize(device)
            t1 = time.perf_counter()
            for _ in range(g - 1):
                if generator is not None:
                    token = generator.decode_step(token).argmax(-1)
                else:
                    ids = torch.cat([ids, token[:, None]], dim=1)
                    token = lm_logits(model, ids)[:, -1].argmax(-1)
            synchronize(device)
            t2 = time.perf_counter()
            if run >= c.warmup_runs:
                prefill.append((t1 - t0) * 1e3)
                decode.append((t2 - t1) * 1e3)
        pre, dec = statistics.median(prefill), statistics.median(decode)
        total = pre + dec
        return {"batch_size": b, "prompt_len": p, "gen_len": g, "cache_kind": c.cache_kind if c.use_cache else "none",
                "use_cache": c.use_cache, "compiled": generator.compile_mode if generator is not None else "off",
                "prefill_ms": pre, "decode_ms": dec, "total_ms": total, "ttft_ms": pre,
                "ms_per_token": dec / max(g - 1, 1),
                "tokens_per_sec": b * g / (total / 1e3),
                "decode_tokens_per_sec": b * (g - 1) / (dec / 1e3) if g > 1 else b / (pre / 1e3),
                "timed_runs": c.timed_runs}


def analytic_per_token(model: Any, kind: Any) -> tuple[float, str]:
    """Analytic KV bytes per token: the system config's ``kv_elements_per_token()`` (what ``--dry-run``
    prints) when it has one, else the sum over its attention modules' configs."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "kv_elements_per_token"):
        return float(config.kv_elements_per_token()) * kind.bytes_per_element(), "system config"
    return analytic_kv_bytes_per_token(model, kind), "layer configs"


class Memory(Benchmark):
    """KV-cache bytes summed over the real cache tensors vs the analytic formula, and peak memory.

    For each cache kind, batch size and sequence length a :class:`Generator` allocates its
    caches for ``seq_len`` tokens; ``kv_bytes`` is the sum of their ``nbytes`` (SSM state
    bytes are reported apart, as ``state_bytes``). With ``measure_peak`` the prompt of
    ``seq_len - decode_steps`` tokens is prefilled and ``decode_steps`` tokens decoded
    inside a :class:`~caramba_infer.evaluation.PeakMemory` window that also covers the
    cache allocation.
    """

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, session: Any, models: dict[str, Any]) -> BenchmarkResult:
        c = self.config
        rows = []
        for role, model in models.items():
            model.eval()
            device = device_of(model)
            vocab = _vocab_size(model, device)
            for kind_name in c.cache_kinds:
                kind = cache_kind(kind_name, session.runtime)
                analytic, source = analytic_per_token(model, kind)
                for b in c.batch_sizes:
                    for s in c.sequence_lengths:
                        row = self._measure(model, device, vocab, kind, b, s)
                        measured = row["kv_bytes"] / (b * s)
                        err = abs(measured - analytic) / analytic if analytic else float(measured != 0)
                        rows.append({"model": session.label(role), "role": role, "cache_kind": kind_name,
                                     "batch_size": b, "seq_len": s, **row, "kv_bytes_per_token": measured,
                                     "analytic_kv_bytes_per_token": analytic, "analytic_source": source,
                                     "kv_rel_error": err, "kv_ok": err <= c.tolerance,
                                     "model_mb": model_bytes(model) / 2**20, "device": str(device)})
        summary = {
            "kv_bytes_per_token": {f"{r['model']} [{r['cache_kind']}]": r["kv_bytes_per_token"] for r in rows},
            "kv_within_tolerance": all(r["kv_ok"] for r in rows),
        }
        return BenchmarkResult("memory", rows, summary)

    @torch.no_grad()
    def _measure(self, model: Any, device: torch.device, vocab: int, kind: Any, b: int, s: int) -> dict[str, Any]:
        c = self.config
        steps = min(c.decode_steps, s - 1)
        prompt = torch.randint(0, vocab, (b, s - steps), generator=torch.Generator().manual_seed(c.seed)).to(device)
        peak = PeakMemory(device)
        with peak:
            gen = Generator(model, max_len=s, batch_size=b, cache_kind=kind, device=device)
            attention = {p for p, m in cached_modules(model).items() if hasattr(m, "cache_fields")}
            kv_bytes = sum(int(cache.nbytes()) for p, cache in gen.caches.items() if p in attention)
            if c.measure_peak:
                token = gen.prefill(prompt).argmax(-1)
                for _ in range(steps):
                    token = gen.decode_step(token).argmax(-1)
        state_bytes = gen.kv_nbytes() - kv_bytes
        return {"kv_bytes": kv_bytes, "state_bytes": state_bytes,
                "peak_mb": peak.peak / 2**20 if c.measure_peak else None,
                "peak_method": peak.method if c.measure_peak else "off"}
