"""Cached greedy decoding: caramba's Generator vs transformers' ``generate`` on the same weights.

A tiny random ``LlamaForCausalLM`` is saved with ``save_pretrained`` and loaded into
caramba's ``system.language_model`` through the ``hf`` importer, so both sides run the
same weights. The script first checks that both produce the same greedy tokens (and
prints the largest logit difference), then times ``--runs`` generations of
``--new-tokens`` tokens after ``--warmup`` untimed ones, and writes the medians to
``benchmarks/results/decode_vs_transformers.json``.

    .venv/bin/python benchmarks/decode_vs_transformers.py [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from caramba_infer import GenerateConfig, Generator
from caramba_layers.hf import from_pretrained


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fns: dict, device: torch.device, warmup: int, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each function; calls alternate so a busy machine slows both alike."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                out[name].append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "decode_vs_transformers.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    cfg = transformers.LlamaConfig(vocab_size=1024, hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                                   num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=2,
                                   max_position_embeddings=1024, rope_theta=10000.0, tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        ours = from_pretrained(folder).eval().to(device)
    hf = hf.to(device)

    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, cfg.vocab_size, (args.batch, args.prompt), generator=g).to(device)
    total = args.prompt + args.new_tokens
    greedy = GenerateConfig(max_new_tokens=args.new_tokens, temperature=0)
    gen = Generator(ours, max_len=total, batch_size=args.batch, cache_kind="fp32")

    def run_ours() -> torch.Tensor:
        gen.reset()
        return gen.generate(prompt, greedy)

    def run_hf() -> torch.Tensor:
        return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, do_sample=False, use_cache=True,
                           pad_token_id=0)[:, args.prompt:]

    with torch.no_grad():
        ours_tokens, hf_tokens = run_ours(), run_hf()
        full = torch.cat([prompt, ours_tokens], dim=1)
        max_logit_diff = float((ours({"input_ids": full})["logits"] - hf(full).logits).abs().max())
        times = timed({"caramba": run_ours, "transformers": run_hf}, device, args.warmup, args.runs)
        t_ours, t_hf = times["caramba"], times["transformers"]

    tokens = args.batch * args.new_tokens
    result = {
        "benchmark": "cached greedy decode: caramba Generator vs transformers generate",
        "model": {"type": "LlamaForCausalLM (random weights)", "hidden_size": args.hidden, "layers": args.layers,
                  "heads": 8, "kv_heads": 2, "vocab_size": cfg.vocab_size,
                  "parameters": sum(p.numel() for p in hf.parameters())},
        "batch": args.batch, "prompt_len": args.prompt, "new_tokens": args.new_tokens,
        "warmup": args.warmup, "runs": args.runs, "device": str(device), "threads": args.threads,
        "same_greedy_tokens": bool(torch.equal(ours_tokens, hf_tokens)),
        "max_abs_logit_diff": max_logit_diff,
        "caramba": {"median_s": statistics.median(t_ours), "tokens_per_sec": tokens / statistics.median(t_ours),
                    "runs_s": t_ours, "cache": "fp32 static (preallocated)"},
        "transformers": {"median_s": statistics.median(t_hf), "tokens_per_sec": tokens / statistics.median(t_hf),
                         "runs_s": t_hf, "cache": "default DynamicCache", "version": transformers.__version__},
        "torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor(),
    }
    result["speedup_caramba_over_transformers"] = (result["caramba"]["tokens_per_sec"]
                                                   / result["transformers"]["tokens_per_sec"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("same_greedy_tokens", "max_abs_logit_diff",
                                             "speedup_caramba_over_transformers")}, indent=2))
    print(f"caramba {result['caramba']['tokens_per_sec']:.1f} tok/s, "
          f"transformers {result['transformers']['tokens_per_sec']:.1f} tok/s -> {args.out}")


if __name__ == "__main__":
    main()
