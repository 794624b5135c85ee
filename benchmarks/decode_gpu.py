"""GPU decoding: caramba's compiled static-shape Generator vs transformers ``generate`` (dynamic and static cache).

One process, one GPU, the same bf16 weights on both sides (random weights of a model shape,
built by transformers and loaded through caramba's ``hf`` importer, or a real GGUF checkpoint
with ``--gguf``). For each case (batch, prompt length) it times ``--runs`` greedy generations
of ``--new-tokens`` tokens after ``--warmup`` untimed ones (the first compiles and captures),
alternating the three generators, and the prefill alone (``max_new_tokens=1``). It reports
tokens/s, prefill ms, the share of the weights-bandwidth roofline (bytes of weights read per
step at ``--bandwidth`` bytes/s) and whether caramba's step ran compiled and captured.

Exactness on the same run: greedy tokens against transformers' static cache (bf16), and
teacher-forced top-1 agreement of caramba bf16 and transformers bf16 against transformers fp32.

    python benchmarks/decode_gpu.py --shape smollm2_135m --out benchmarks/results/x.json [--gguf F]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers

from caramba_infer import GenerateConfig, Generator
from caramba_layers.hf import build_from_hf_config, load_weights

SHAPES = {
    "smollm2_135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0,
                         max_position_embeddings=8192, tie_word_embeddings=True, rms_norm_eps=1e-5),
    "llama32_1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                       max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-5,
                       rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
}


def models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """transformers' LlamaForCausalLM and caramba's language model on the same bf16 weights."""
    if args.gguf:
        from caramba_layers.gguf import read_gguf

        ckpt = read_gguf(args.gguf, with_tokenizer=False)
        hf_dict, state = ckpt.config, ckpt.state_dict
        config = transformers.LlamaConfig(**{k: v for k, v in hf_dict.items() if k not in ("architectures",)})
    else:
        config = transformers.LlamaConfig(**SHAPES[args.shape])
        hf_dict, state = None, None
    config.eos_token_id = None  # every generation runs its full length
    torch.manual_seed(0)
    with torch.device("cuda"):
        hf = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    if state is not None:
        hf.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
        hf.tie_weights()
    ours = build_from_hf_config(hf_dict or config.to_dict(), device="cuda", dtype=torch.bfloat16).eval()
    load_weights(ours, {k: v for k, v in hf.state_dict().items()})
    return hf, ours, config.to_dict()


def timed(fns: dict, warmup: int, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            if i >= warmup:
                out[name].append(time.perf_counter() - t0)
    return out


def case(hf: torch.nn.Module, ours: torch.nn.Module, batch: int, prompt_len: int, args: argparse.Namespace,
         vocab: int) -> dict:
    new = args.new_tokens
    prompt = torch.randint(0, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1)).cuda()
    gen = Generator(ours, max_len=prompt_len + new, batch_size=batch, cache_kind="bf16")
    greedy = GenerateConfig(max_new_tokens=new, temperature=0)
    first = GenerateConfig(max_new_tokens=1, temperature=0)

    def ours_run(cfg: GenerateConfig = greedy) -> torch.Tensor:
        gen.reset()
        return gen.generate(prompt, cfg)

    def hf_run(cache: str | None, n: int = new) -> torch.Tensor:
        kw = {"cache_implementation": cache} if cache else {}
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, do_sample=False,
                           pad_token_id=0, **kw)[:, prompt_len:]

    fns = {"caramba": ours_run, "transformers_static": lambda: hf_run("static")}
    if not args.skip_dynamic:
        fns["transformers_dynamic"] = lambda: hf_run(None)
    with torch.no_grad():
        times = timed(fns, args.warmup, args.runs)
        ours_tokens, static_tokens = ours_run(), hf_run("static")
        prefill = timed({"caramba": lambda: ours_run(first), "transformers_static": lambda: hf_run("static", 1)},
                        1, args.runs)
    weights = sum(p.numel() * p.element_size() for p in ours.parameters())  # tied head counted once
    roofline = args.bandwidth / weights  # steps/s if a step only read the weights once
    out = {"batch": batch, "prompt_len": prompt_len, "new_tokens": new,
           "caramba_compiled": gen.compile_mode, "caramba_buckets": gen.buckets,
           "same_greedy_tokens_as_transformers_static": float((ours_tokens == static_tokens).float().mean()),
           "weights_bytes": weights, "roofline_steps_per_s": roofline}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"median_s": med, "tokens_per_s": batch * new / med, "runs_s": ts,
                     "percent_of_roofline": 100 * (new / med) / roofline,
                     "prefill_ms": 1e3 * statistics.median(prefill[name]) if name in prefill else None}
    if args.profile:
        profile_steps(gen, prompt, greedy)
    out["speedup_vs_static"] = out["caramba"]["tokens_per_s"] / out["transformers_static"]["tokens_per_s"]
    if "transformers_dynamic" in out:
        out["speedup_vs_dynamic"] = out["caramba"]["tokens_per_s"] / out["transformers_dynamic"]["tokens_per_s"]
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}), flush=True)
    print({k: (round(v["tokens_per_s"], 1), v["prefill_ms"]) for k, v in out.items() if isinstance(v, dict)},
          flush=True)
    return out


@torch.no_grad()
def profile_steps(gen: Generator, prompt: torch.Tensor, greedy: GenerateConfig) -> None:
    """Kernel time of one generation, to see where a step goes (printed, not saved)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        gen.reset()
        gen.generate(prompt, greedy)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=60), flush=True)


@torch.no_grad()
def agreement(hf: torch.nn.Module, ours: torch.nn.Module, vocab: int, tokens: torch.Tensor | None) -> dict:
    """Teacher-forced top-1 agreement of both bf16 models with transformers in fp32 on the same text."""
    if tokens is None:
        tokens = torch.randint(0, vocab, (4, 512), generator=torch.Generator().manual_seed(2))
    ids = tokens.cuda()
    ref = hf.float()(ids).logits.argmax(-1)
    hf.to(torch.bfloat16)
    got_hf = hf(ids).logits.argmax(-1)
    gen = Generator(ours, max_len=ids.shape[1], batch_size=ids.shape[0], cache_kind="bf16", compile="off")
    got_ours = torch.stack([gen.forward(ids[:, t: t + 1]).argmax(-1) for t in range(ids.shape[1])], dim=1)
    return {"tokens": int(ids.numel()), "caramba_bf16_vs_fp32": float((got_ours == ref).float().mean()),
            "transformers_bf16_vs_fp32": float((got_hf == ref).float().mean()),
            "caramba_bf16_vs_transformers_bf16": float((got_ours == got_hf).float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2_135m")
    ap.add_argument("--gguf", default=None, help="a real GGUF checkpoint instead of random weights of --shape")
    ap.add_argument("--cases", default="1x32,16x32,1x4096", help="BATCHxPROMPT, comma separated")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bandwidth", type=float, default=4.16e12, help="measured copy bandwidth, bytes/s")
    ap.add_argument("--skip-dynamic", action="store_true")
    ap.add_argument("--profile", action="store_true", help="print a kernel profile of the first case")
    ap.add_argument("--no-agreement", action="store_true", help="skip the top-1 agreement check")
    ap.add_argument("--text-tokens", default=None, help=".pt file of (B, T) token ids for the agreement check")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    hf, ours, config = models(args)
    result = {"benchmark": "greedy decode on one GPU: caramba Generator vs transformers generate",
              "shape": "gguf" if args.gguf else args.shape, "gguf": args.gguf, "config": config,
              "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "transformers": transformers.__version__, "platform": platform.platform(),
              "date": time.strftime("%Y-%m-%d"), "cases": []}
    for spec in args.cases.split(","):
        b, p = (int(x) for x in spec.split("x"))
        result["cases"].append(case(hf, ours, b, p, args, config["vocab_size"]))
        args.profile = False
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.no_agreement:
        return
    tokens = torch.load(args.text_tokens) if args.text_tokens else None
    result["top1_agreement"] = agreement(hf, ours, config["vocab_size"], tokens)
    print(json.dumps(result["top1_agreement"]), flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
