"""benchmarks/kernels.py runs end to end (tiny contexts, the interpreter on CPU) and reports sane rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("kernels_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not torch.cuda.is_available():
        monkeypatch.setattr(module, "DEVICE", "cpu")
    return module


@pytest.mark.slow  # ~40 s: every row runs a few kernels in the interpreter
def test_decode_rows_cover_every_cache_kind_and_stay_within_their_error(bench):
    rows = bench.decode_rows(bandwidth=1.0, contexts=[64])
    kinds = {(r["backend"], r["cache"]) for r in rows}
    assert kinds == {("sdpa", "fp16"), ("triton", "fp16"), ("triton", "bf16"), ("triton", "q8_0"),
                     ("torch_reference", "q8_0"), ("triton", "q4_0"), ("torch_reference", "q4_0"),
                     ("sdpa", "dba_bf16"), ("triton", "dba_bf16")}
    for r in rows:
        assert r["max_abs_err_vs_fp32"] < (0.02 if "bf16" in r["cache"] else 2e-3), r
    q8 = next(r for r in rows if r["cache"] == "q8_0")
    assert q8["bytes_read"] == 64 * 8 * 64 * 2 * (1 + 2 / 32)


def test_a_scan_row_compares_the_fused_scan_with_the_reference(bench):
    row = bench._scan_row(8, bsz=1, di=16, N=4)
    assert row["max_rel_err_vs_reference"] < 1e-5
    assert {"reference_fwd_bwd_ms", "fused_fwd_bwd_ms", "speedup_fwd_bwd", "fused_fwd_bwd_peak_mib"} <= set(row)


@pytest.mark.slow  # imports liger-kernel (~25 s on 2 busy cores)
def test_a_training_row_compares_gradients_time_and_memory(bench):
    pytest.importorskip("liger_kernel")
    from caramba_kernels import liger

    device = "cuda" if torch.cuda.is_available() else "cpu"
    hidden = torch.randn(12, 16, device=device, requires_grad=True)
    head = torch.randn(40, 16, device=device, requires_grad=True)
    target = torch.randint(0, 40, (12,), device=device)
    row = bench._training_row("lce", (hidden, head),
                              lambda: torch.nn.functional.cross_entropy(hidden @ head.T, target),
                              lambda: liger.linear_cross_entropy(hidden, head, target))
    assert row["max_rel_grad_err"] < 1e-4
    assert {"eager_fwd_bwd_ms", "liger_fwd_bwd_ms", "speedup", "memory_ratio"} <= set(row)
