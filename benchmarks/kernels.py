"""caramba-kernels on a CUDA GPU against the strongest PyTorch alternative, in one process.

Decode attention (one new token, batch 1, 32 query / 8 KV heads, head dim 64, the shape of the
issue's anchor): µs and achieved bandwidth at 1K-32K context for every cache kind, against
``F.scaled_dot_product_attention`` over an fp16 ``(B, G, S, D)`` cache (the layout SDPA likes
best) and against the torch reference path of each quantised kind (dequantise, then SDPA).
A DBA row uses the Llama-3.2-1B-DBA preset's fields. Every timing is a median of
``triton.testing.do_bench`` (L2 flushed between calls) of a CUDA graph of the step, as a
static-shape decoder replays it, and also of the eager call. Each row records its largest
error against float32 attention over the same cache values.

    python benchmarks/kernels.py --out benchmarks/results/kernels-h200.json

Runs in about a minute on an H200. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768]
H, G, D = 32, 8, 64
DEVICE = "cuda"


def median_us(fn, graph: bool) -> float:
    """Median µs of ``fn`` (L2 flushed between calls); ``graph``: replay a captured CUDA graph of it."""
    if DEVICE == "cpu":  # the smoke run in Triton's interpreter: correctness of the script, not speed
        start = time.perf_counter()
        fn()
        return 1e6 * (time.perf_counter() - start)
    import triton.testing

    if not graph:
        return 1e3 * triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()  # compile and allocate outside the capture
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fn()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            fn()
    torch.cuda.synchronize()
    return 1e3 * triton.testing.do_bench(g.replay, warmup=25, rep=100, return_mode="median")


def copy_bandwidth() -> float:
    """TB/s of a 1 GiB device-to-device copy (read + write), the ceiling a decode kernel can approach."""
    x = torch.empty(1 << 29 if DEVICE == "cuda" else 1 << 20, dtype=torch.float16, device=DEVICE)
    y = torch.empty_like(x)
    us = median_us(lambda: y.copy_(x), graph=False)
    return 2 * x.numel() * 2 / (us * 1e-6) / 1e12


def attention_f32(q, keys, v, scale):
    """float32 attention of q (B, H, Dk) over dense (B, S, G, D) keys/values."""
    k = torch.cat([t.float() for t in keys], -1).transpose(1, 2)  # (B, G, S, Dk)
    return F.scaled_dot_product_attention(q.float()[:, :, None], k, v.float().transpose(1, 2), scale=scale,
                                          enable_gqa=True)[:, :, 0]


def decode_rows(bandwidth: float, contexts: list[int] = CONTEXTS) -> list[dict]:
    rows = []
    for S in contexts:
        rows.extend(_context_rows(S, bandwidth))
        print(f"decode {S:>6}: " + "  ".join(f"{r['backend']}/{r['cache']} {r['us_graph']:.1f}us"
                                             for r in rows if r["context"] == S), flush=True)
    return rows


def _context_rows(S: int, bandwidth: float) -> list[dict]:
    from caramba_infer.caches import QuantizedKVCache
    from caramba_kernels.decode import decode_attention

    rows = []
    torch.manual_seed(0)
    q = torch.randn(1, H, D, device=DEVICE, dtype=torch.float16)
    dense = {n: torch.randn(1, S, G, D, device=DEVICE, dtype=torch.float16) for n in ("k", "v")}
    lengths = torch.full((1,), S, dtype=torch.int32, device=DEVICE)
    scale = 1 / math.sqrt(D)
    k_sdpa, v_sdpa = (dense[n].transpose(1, 2).contiguous() for n in ("k", "v"))  # (B, G, S, D)
    q4d = q[:, :, None]

    def sdpa():
        return F.scaled_dot_product_attention(q4d, k_sdpa, v_sdpa, scale=scale, enable_gqa=True)

    sdpa_us = median_us(sdpa, graph=True)
    fp16_bytes = 2 * S * G * D * 2
    rows.append(_row("sdpa", "fp16", S, sdpa_us, median_us(sdpa, graph=False), fp16_bytes, bandwidth, sdpa_us,
                     (sdpa()[:, :, 0].float() - attention_f32(q, [dense["k"]], dense["v"], scale)).abs().max()))
    for kind in ("fp16", "bf16"):
        dt = torch.float16 if kind == "fp16" else torch.bfloat16
        k, v, qq = dense["k"].to(dt), dense["v"].to(dt), q.to(dt)

        def fused(k=k, v=v, qq=qq):
            return decode_attention(qq, k, v, lengths, scale=scale)

        err = (fused().float() - attention_f32(qq, [k], v, scale)).abs().max()
        rows.append(_row("triton", kind, S, median_us(fused, True), median_us(fused, False), fp16_bytes,
                         bandwidth, sdpa_us, err))
    for bits in (8, 4):
        cache = QuantizedKVCache({"k": (G, D), "v": (G, D)}, 1, S, bits=bits, device=DEVICE)
        views = cache.append(k=dense["k"], v=dense["v"])
        ks, vs = cache.storage("k"), cache.storage("v")

        def fused(ks=ks, vs=vs):
            return decode_attention(q, ks, vs, lengths, scale=scale)

        def reference(cache=cache):
            deq = {n: cache._dequantise(n, S, torch.float16).transpose(1, 2) for n in ("k", "v")}
            return F.scaled_dot_product_attention(q4d, deq["k"], deq["v"], scale=scale, enable_gqa=True)

        nbytes = cache.nbytes()
        exact = attention_f32(q, [views["k"]], views["v"], scale)
        err = (fused().float() - exact).abs().max()
        kind = f"q{bits}_0"
        rows.append(_row("triton", kind, S, median_us(fused, True), median_us(fused, False), nbytes, bandwidth,
                         sdpa_us, err))
        rows.append(_row("torch_reference", kind, S, median_us(reference, True), median_us(reference, False),
                         nbytes, bandwidth, sdpa_us, (reference()[:, :, 0].float() - exact).abs().max()))
    rows.extend(_dba_rows(S, bandwidth))
    return rows


def _dba_rows(S: int, bandwidth: float) -> list[dict]:
    """Llama-3.2-1B-DBA fields (8 KV heads; d_s = d_g = 16, d_v = 32; 32 query heads) in bf16."""
    from caramba_kernels.decode import decode_attention

    ds, dg, dv = 16, 16, 32
    k_sem, k_geo = (torch.randn(1, S, G, d, device=DEVICE, dtype=torch.bfloat16) for d in (ds, dg))
    v = torch.randn(1, S, G, dv, device=DEVICE, dtype=torch.bfloat16)
    q = torch.randn(1, H, ds + dg, device=DEVICE, dtype=torch.bfloat16) / 4
    lengths = torch.full((1,), S, dtype=torch.int32, device=DEVICE)
    k_cat = torch.cat((k_sem, k_geo), -1).transpose(1, 2).contiguous()
    v_t = v.transpose(1, 2).contiguous()
    q4d = q[:, :, None]

    def sdpa():
        return F.scaled_dot_product_attention(q4d, k_cat, v_t, scale=1.0, enable_gqa=True)

    def fused():
        return decode_attention(q, (k_sem, k_geo), v, lengths, scale=1.0)

    nbytes = S * G * (ds + dg + dv) * 2
    sdpa_us = median_us(sdpa, True)
    err = (fused().float() - attention_f32(q, [k_sem, k_geo], v, 1.0)).abs().max()
    return [_row("sdpa", "dba_bf16", S, sdpa_us, median_us(sdpa, False), nbytes, bandwidth, sdpa_us,
                 (sdpa()[:, :, 0].float() - attention_f32(q, [k_sem, k_geo], v, 1.0)).abs().max()),
            _row("triton", "dba_bf16", S, median_us(fused, True), median_us(fused, False), nbytes, bandwidth,
                 sdpa_us, err)]


def _row(backend, cache, S, us_graph, us_eager, nbytes, bandwidth, sdpa_us, err) -> dict:
    tb_s = nbytes / (us_graph * 1e-6) / 1e12
    return {"backend": backend, "cache": cache, "context": S, "us_graph": round(us_graph, 2),
            "us_eager": round(us_eager, 2), "bytes_read": int(nbytes), "tb_s": round(tb_s, 3),
            "pct_copy_bandwidth": round(100 * tb_s / bandwidth, 1),
            "speedup_vs_sdpa_fp16": round(sdpa_us / us_graph, 2), "max_abs_err_vs_fp32": float(err)}


#: (tokens per step, warps, half the tokens per program): launch settings beside the defaults (64, 4, no).
SWEEP = [(64, 4, True), (64, 8, False), (128, 4, False), (128, 8, False), (128, 8, True)]


def launch_sweep(bandwidth: float, S: int = 32768) -> list[dict]:
    """Decode at ``S`` tokens under other launch settings than the defaults, to tune them next time."""
    from caramba_infer.caches import QuantizedKVCache
    from caramba_kernels.decode import _splits, decode_attention

    torch.manual_seed(0)
    q = torch.randn(1, H, D, device=DEVICE, dtype=torch.float16)
    dense = {n: torch.randn(1, S, G, D, device=DEVICE, dtype=torch.float16) for n in ("k", "v")}
    lengths = torch.full((1,), S, dtype=torch.int32, device=DEVICE)
    fields = {"fp16": (dense["k"], dense["v"], 2 * S * G * D * 2)}
    for bits in (8, 4):
        cache = QuantizedKVCache({"k": (G, D), "v": (G, D)}, 1, S, bits=bits, device=DEVICE)
        cache.append(k=dense["k"], v=dense["v"])
        fields[f"q{bits}_0"] = (cache.storage("k"), cache.storage("v"), cache.nbytes())
    rows = []
    for kind, (k, v, nbytes) in fields.items():
        for block_n, warps, halve in SWEEP:
            split = _splits(G, S, block_n, q.device)
            split = max(block_n, split // 2) if halve else split

            def fused(k=k, v=v, block_n=block_n, warps=warps, split=split):
                return decode_attention(q, k, v, lengths, block_n=block_n, split=split, num_warps=warps)

            us = median_us(fused, graph=True)
            rows.append({"cache": kind, "context": S, "block_n": block_n, "num_warps": warps,
                         "split": split, "us_graph": round(us, 2),
                         "pct_copy_bandwidth": round(100 * nbytes / (us * 1e-6) / 1e12 / bandwidth, 1)})
        best = min((r for r in rows if r["cache"] == kind), key=lambda r: r["us_graph"])
        print(f"sweep {kind}: best {best}", flush=True)
    return rows


def summary(rows: list[dict], bandwidth: float) -> dict:
    at = {(r["backend"], r["cache"]): r for r in rows if r["context"] == 32768}
    out = {}
    for key, need in ((("triton", "fp16"), None), (("triton", "q8_0"), 3.0), (("triton", "q4_0"), 5.0)):
        r = at.get(key)
        if r is None:
            continue
        out[key[1]] = {"us": r["us_graph"], "pct_copy_bandwidth": r["pct_copy_bandwidth"],
                       "speedup_vs_sdpa_fp16": r["speedup_vs_sdpa_fp16"],
                       "target": "≥70% of copy bandwidth, ≥2x SDPA" if need is None else f"≥{need:g}x SDPA fp16"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/kernels.py measures CUDA kernels: run it on a machine with a CUDA GPU")
    import triton

    start = time.time()
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth {bandwidth:.2f} TB/s", flush=True)
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
        "python": platform.python_version(), "copy_bandwidth_tb_s": round(bandwidth, 3),
        "decode_shape": {"batch": 1, "query_heads": H, "kv_heads": G, "head_dim": D},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections = [("decode", lambda: decode_rows(bandwidth)),
                ("decode_at_32k", lambda: summary(result["decode"], bandwidth)),
                ("decode_launch_sweep", lambda: launch_sweep(bandwidth)), *SECTIONS]
    for name, fn in sections:
        try:
            result[name] = fn()
        except Exception as exc:  # one failing section must not lose the others' measurements
            traceback.print_exc()
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.time() - start, 1)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after every section: nothing measured is lost
    print(json.dumps(result.get("decode_at_32k"), indent=2))
    print(f"wrote {out} in {result['seconds']} s")


def peak_mib(fn) -> float:
    """Peak CUDA memory of one call of ``fn`` above what was allocated before it, in MiB."""
    if DEVICE == "cpu":
        fn()
        return 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def scan_rows() -> list[dict]:
    """Fused selective scan against caramba-layers' reference (Hillis-Steele over (B, T, di, N) tensors).

    Mamba-130M's inner width (d_inner 1536, N 16), batch 1, fp32, forward and forward+backward.
    """
    rows = []
    for T in (2048, 4096, 8192):
        rows.append(_scan_row(T))
        print(f"scan {T}: {rows[-1]}", flush=True)
    return rows


def _scan_row(T: int, bsz: int = 1, di: int = 1536, N: int = 16) -> dict:
    from caramba_kernels.scan import selective_scan as fused_scan
    from caramba_layers.modules.ssm import selective_scan as reference_scan

    torch.manual_seed(0)
    leaves = [torch.randn(bsz, T, di), F.softplus(torch.randn(bsz, T, di) - 2), -torch.exp(torch.randn(di, N) / 2),
              torch.randn(bsz, T, N), torch.randn(bsz, T, N), torch.randn(di)]
    args = [t.to(DEVICE).requires_grad_() for t in leaves]
    x, dt, A, B, C, D = args

    def reference():
        h = reference_scan(torch.exp(dt[..., None] * A), (dt * x)[..., None] * B[:, :, None, :])
        return torch.einsum("btdn,btn->btd", h, C) + D * x

    def fused():
        return fused_scan(x, dt, A, B, C, D)[0]

    def train(fn):
        return lambda: torch.autograd.grad(fn().square().sum(), args)

    with torch.no_grad():
        want = reference()
        err = ((fused() - want).abs().max() / want.abs().max()).item()
        del want
    row = {"length": T, "batch": bsz, "d_inner": di, "d_state": N, "max_rel_err_vs_reference": err}
    for name, fn in (("reference", reference), ("fused", fused)):
        with torch.no_grad():
            row[f"{name}_fwd_ms"] = round(median_us(fn, graph=False) / 1e3, 3)
        row[f"{name}_fwd_bwd_ms"] = round(median_us(train(fn), graph=False) / 1e3, 3)
        row[f"{name}_fwd_bwd_peak_mib"] = round(peak_mib(train(fn)), 1)
    row["speedup_fwd"] = round(row["reference_fwd_ms"] / row["fused_fwd_ms"], 2)
    row["speedup_fwd_bwd"] = round(row["reference_fwd_bwd_ms"] / row["fused_fwd_bwd_ms"], 2)
    return row


def training_rows() -> list[dict] | dict:
    """liger-kernel's training kernels (the ``liger`` backend) against the eager ops, bf16, forward+backward.

    RMSNorm is caramba's own ``RMSNormLayer`` code; the loss is a Llama-3-sized head (d 2048,
    vocabulary 128,256) over 8,192 tokens, where eager materialises the full logits.
    """
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is None:
        return {"skipped": "liger-kernel is not installed (pip install caramba-kernels[liger])"}
    from caramba_kernels import liger
    from caramba_layers.modules.norm import RMSNormLayer

    class _Norm:
        eps, elementwise_affine, d_model = 1e-5, True, 4096

    bf16 = {"device": DEVICE, "dtype": torch.bfloat16}
    rows = []
    torch.manual_seed(0)
    x = torch.randn(16384, 4096, **bf16, requires_grad=True)
    layer = RMSNormLayer(_Norm()).to(**bf16)
    rows.append(_training_row("rms_norm", (x, *layer.parameters()), lambda: layer(x),
                              lambda: liger.rms_norm(x, layer.weight, layer.eps)))
    gate, up = (torch.randn(16384, 8192, **bf16, requires_grad=True) for _ in range(2))
    rows.append(_training_row("swiglu", (gate, up), lambda: F.silu(gate) * up, lambda: liger.swiglu(gate, up)))
    hidden = torch.randn(8192, 2048, **bf16, requires_grad=True)
    head = (torch.randn(128256, 2048, **bf16) / 45).requires_grad_()
    target = torch.randint(0, 128256, (8192,), device=DEVICE)
    rows.append(_training_row("linear_cross_entropy_128k", (hidden, head),
                              lambda: F.cross_entropy((hidden @ head.T).float(), target),
                              lambda: liger.linear_cross_entropy(hidden, head, target)))
    return rows


def _training_row(op: str, leaves, eager, fused) -> dict:
    def run(fn):
        out = fn()
        loss = out if out.dim() == 0 else out.float().square().mean()
        return torch.autograd.grad(loss, leaves)

    want, got = run(eager), run(fused)
    err = max(((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-12)).item()
              for a, b in zip(want, got))
    del want, got
    row = {"op": op, "max_rel_grad_err": err}
    for name, fn in (("eager", eager), ("liger", fused)):
        row[f"{name}_fwd_bwd_ms"] = round(median_us(lambda fn=fn: run(fn), graph=False) / 1e3, 3)
        row[f"{name}_peak_mib"] = round(peak_mib(lambda fn=fn: run(fn)), 1)
    row["speedup"] = round(row["eager_fwd_bwd_ms"] / row["liger_fwd_bwd_ms"], 2)
    row["memory_ratio"] = round(row["eager_peak_mib"] / max(row["liger_peak_mib"], 1e-9), 2)
    print(f"training {row}", flush=True)
    return row


#: Further sections (name, function returning JSON-able results).
SECTIONS: list = [("selective_scan", scan_rows), ("training", training_rows)]

if __name__ == "__main__":
    main()
