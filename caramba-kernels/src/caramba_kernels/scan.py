"""Mamba's selective scan fused into one pass over time, forward and backward (arXiv:2312.00752).

Per channel ``d`` and state ``n``: ``h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_t``,
``y_t = C_t · h_t + D x_t``. The reference builds ``(B, T, d_inner, N)`` decay and drive
tensors and scans them; here one program per (sequence, block of channels) walks time with
``h`` in registers (fp32), so nothing of size ``T · d_inner · N`` is ever written.

Backward walks time in reverse, chunk by chunk: the forward pass stores ``h`` at the start of
every ``CHUNK`` steps; each chunk's states are recomputed from there into a small scratch and
read back in reverse. Gradients summed over channels (``dB``, ``dC``) are written per block of
channels and summed by torch; those summed over the batch (``dA``, ``dD``) likewise.
A call with ``T = 1`` and the previous state is the decode step.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

__all__ = ["selective_scan"]

CHUNK = 64


@triton.jit
def _scan_fwd(X, DT, A, Bm, Cm, Dp, H0, Y, HL, CKPT, T, DI,
              N: tl.constexpr, BN: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
              HAS_H0: tl.constexpr, SAVE: tl.constexpr):
    b = tl.program_id(0)
    blk = tl.program_id(1)
    d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BN)
    dm = d < DI
    mask = dm[:, None] & (n[None, :] < N)
    a = tl.load(A + d[:, None] * N + n[None, :], mask=mask, other=0.0).to(tl.float32)
    dd = tl.load(Dp + d, mask=dm, other=0.0).to(tl.float32)
    state = b.to(tl.int64) * DI * N + d[:, None] * N + n[None, :]
    if HAS_H0:
        h = tl.load(H0 + state, mask=mask, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, BN], tl.float32)
    row = b.to(tl.int64) * T
    nchunks = tl.cdiv(T, CHUNK)
    nm = n < N
    # Step t+1's inputs are loaded while step t computes: the walk is latency-bound otherwise.
    x_next = tl.load(X + row * DI + d, mask=dm, other=0.0)
    dt_next = tl.load(DT + row * DI + d, mask=dm, other=0.0)
    b_next = tl.load(Bm + row * N + n, mask=nm, other=0.0)
    c_next = tl.load(Cm + row * N + n, mask=nm, other=0.0)
    for t in range(T):
        if SAVE:  # noqa: SIM102 - a compile-time branch around a run-time one
            if t % CHUNK == 0:
                tl.store(CKPT + (b.to(tl.int64) * nchunks + t // CHUNK) * DI * N + d[:, None] * N + n[None, :],
                         h, mask=mask)
        x, dt = x_next.to(tl.float32), dt_next.to(tl.float32)
        bt, ct = b_next.to(tl.float32), c_next.to(tl.float32)
        nxt = row + tl.minimum(t + 1, T - 1)  # the last step reloads itself, unused
        x_next = tl.load(X + nxt * DI + d, mask=dm, other=0.0)
        dt_next = tl.load(DT + nxt * DI + d, mask=dm, other=0.0)
        b_next = tl.load(Bm + nxt * N + n, mask=nm, other=0.0)
        c_next = tl.load(Cm + nxt * N + n, mask=nm, other=0.0)
        h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
        y = tl.sum(h * ct[None, :], 1) + dd * x
        tl.store(Y + (row + t) * DI + d, y.to(Y.dtype.element_ty), mask=dm)
    tl.store(HL + state, h, mask=mask)


@triton.jit
def _scan_bwd(X, DT, A, Bm, Cm, Dp, CKPT, DY, DHL, SCR,
              DX, DDT, DBP, DCP, DAP, DDP, DH0, T, DI, NBLK,
              N: tl.constexpr, BN: tl.constexpr, BLOCK_D: tl.constexpr, CHUNK: tl.constexpr,
              HAS_DHL: tl.constexpr):
    b = tl.program_id(0)
    blk = tl.program_id(1)
    d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BN)
    dm = d < DI
    nm = n < N
    mask = dm[:, None] & nm[None, :]
    tile = d[:, None] * N + n[None, :]
    a = tl.load(A + tile, mask=mask, other=0.0).to(tl.float32)
    dd = tl.load(Dp + d, mask=dm, other=0.0).to(tl.float32)
    b64 = b.to(tl.int64)
    if HAS_DHL:
        g = tl.load(DHL + b64 * DI * N + tile, mask=mask, other=0.0).to(tl.float32)
    else:
        g = tl.zeros([BLOCK_D, BN], tl.float32)  # a_{t+1} · dL/dh_{t+1}, carried backwards
    da_acc = tl.zeros([BLOCK_D, BN], tl.float32)
    dd_acc = tl.zeros([BLOCK_D], tl.float32)
    row = b64 * T
    part = (b64 * NBLK + blk) * T  # row of this program's dB/dC partials
    scratch = SCR + (b64 * NBLK + blk) * CHUNK * BLOCK_D * BN + tl.arange(0, BLOCK_D)[:, None] * BN + n[None, :]
    nchunks = tl.cdiv(T, CHUNK)
    for cc in range(nchunks):
        c = nchunks - 1 - cc
        t0 = c * CHUNK
        steps = tl.minimum(CHUNK, T - t0)
        start = tl.load(CKPT + (b64 * nchunks + c) * DI * N + tile, mask=mask, other=0.0)
        h = start
        for i in range(steps):  # recompute this chunk's states
            t = t0 + i
            x = tl.load(X + (row + t) * DI + d, mask=dm, other=0.0).to(tl.float32)
            dt = tl.load(DT + (row + t) * DI + d, mask=dm, other=0.0).to(tl.float32)
            bt = tl.load(Bm + (row + t) * N + n, mask=nm, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
            tl.store(scratch + i * BLOCK_D * BN, h)
        tl.debug_barrier()
        for j in range(steps):  # and walk them backwards
            i = steps - 1 - j
            t = t0 + i
            h_t = tl.load(scratch + i * BLOCK_D * BN)
            h_prev = tl.load(scratch + tl.maximum(i - 1, 0) * BLOCK_D * BN)
            h_prev = tl.where(i > 0, h_prev, start)
            x = tl.load(X + (row + t) * DI + d, mask=dm, other=0.0).to(tl.float32)
            dt = tl.load(DT + (row + t) * DI + d, mask=dm, other=0.0).to(tl.float32)
            bt = tl.load(Bm + (row + t) * N + n, mask=nm, other=0.0).to(tl.float32)
            ct = tl.load(Cm + (row + t) * N + n, mask=nm, other=0.0).to(tl.float32)
            dy = tl.load(DY + (row + t) * DI + d, mask=dm, other=0.0).to(tl.float32)
            dh = g + dy[:, None] * ct[None, :]
            at = tl.exp(dt[:, None] * a)
            da = dh * h_prev * at  # dL/d(Δ A) of this step
            da_acc += da * dt[:, None]
            dd_acc += dy * x
            ddt = tl.sum(da * a, 1) + tl.sum(dh * bt[None, :], 1) * x
            dx = tl.sum(dh * bt[None, :], 1) * dt + dd * dy
            tl.store(DX + (row + t) * DI + d, dx, mask=dm)
            tl.store(DDT + (row + t) * DI + d, ddt, mask=dm)
            tl.store(DBP + (part + t) * N + n, tl.sum(dh * (dt * x)[:, None], 0), mask=nm)
            tl.store(DCP + (part + t) * N + n, tl.sum(h_t * dy[:, None], 0), mask=nm)
            g = dh * at
        tl.debug_barrier()
    tl.store(DH0 + b64 * DI * N + tile, g, mask=mask)
    tl.store(DAP + b64 * DI * N + tile, da_acc, mask=mask)
    tl.store(DDP + b64 * DI + d, dd_acc, mask=dm)


def _block_d(batch: int, di: int, device: torch.device) -> int:
    """Channels per program: few enough that every multiprocessor gets a few programs to overlap."""
    if device.type != "cuda":
        return 16
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    for block in (64, 32, 16, 8):
        if batch * math.ceil(di / block) >= 3 * sms:
            return block
    return 4


def _warps(block: int, states: int) -> int:
    """One warp per 128 state values (a program's whole state lives in registers)."""
    return max(1, min(4, block * states // 128))


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, h0, chunk):  # type: ignore[override]
        bsz, T, di = x.shape
        N = A.shape[1]
        x, dt, B, C = (t.contiguous() for t in (x, dt, B, C))
        A32, D32 = A.float().contiguous(), D.float().contiguous()
        block = _block_d(bsz, di, x.device)
        nblk = math.ceil(di / block)
        y = torch.empty_like(x)
        h_last = torch.empty(bsz, di, N, dtype=torch.float32, device=x.device)
        save = any(ctx.needs_input_grad)
        nchunks = math.ceil(T / chunk)
        ckpt = torch.empty(bsz, nchunks, di, N, dtype=torch.float32, device=x.device) if save else h_last
        h0c = h0.float().contiguous() if h0 is not None else h_last
        _scan_fwd[(bsz, nblk)](x, dt, A32, B, C, D32, h0c, y, h_last, ckpt, T, di,
                               N=N, BN=triton.next_power_of_2(N), BLOCK_D=block, CHUNK=chunk,
                               HAS_H0=h0 is not None, SAVE=save, num_warps=_warps(block, triton.next_power_of_2(N)))
        if save:
            ctx.save_for_backward(x, dt, A32, B, C, D32, ckpt)
            ctx.meta = (block, nblk, chunk, h0 is not None, A.dtype, D.dtype, None if h0 is None else h0.dtype)
        return y, h_last

    @staticmethod
    def backward(ctx, dy, dh_last):  # type: ignore[override]
        x, dt, A, B, C, D, ckpt = ctx.saved_tensors
        block, nblk, chunk, has_h0, a_dtype, d_dtype, h0_dtype = ctx.meta
        bsz, T, di = x.shape
        N = A.shape[1]
        f32 = {"dtype": torch.float32, "device": x.device}
        dx, ddt = torch.empty(bsz, T, di, **f32), torch.empty(bsz, T, di, **f32)
        dbp, dcp = torch.empty(bsz, nblk, T, N, **f32), torch.empty(bsz, nblk, T, N, **f32)
        dap, ddp = torch.empty(bsz, di, N, **f32), torch.empty(bsz, di, **f32)
        dh0 = torch.empty(bsz, di, N, **f32)
        bn = triton.next_power_of_2(N)
        scratch = torch.empty(bsz * nblk * chunk * block * bn, **f32)
        dhl = dh_last.float().contiguous() if dh_last is not None else dh0
        _scan_bwd[(bsz, nblk)](x, dt, A, B, C, D, ckpt, dy.contiguous(), dhl, scratch,
                               dx, ddt, dbp, dcp, dap, ddp, dh0, T, di, nblk,
                               N=N, BN=bn, BLOCK_D=block, CHUNK=chunk, HAS_DHL=dh_last is not None,
                               num_warps=_warps(block, bn))
        return (dx.to(x.dtype), ddt.to(dt.dtype), dap.sum(0).to(a_dtype), dbp.sum(1).to(B.dtype),
                dcp.sum(1).to(C.dtype), ddp.sum(0).to(d_dtype), dh0.to(h0_dtype) if has_h0 else None, None)


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor, h0: torch.Tensor | None = None, *,
                   chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """``y (B, T, d_inner)`` and the last state ``(B, d_inner, N)`` (fp32) of the selective scan.

    ``x``, ``dt`` (Δ after softplus): ``(B, T, d_inner)``; ``A``: ``(d_inner, N)`` (negative);
    ``B``, ``C``: ``(B, T, N)``; ``D``: ``(d_inner,)``; ``h0``: the state before ``x``
    (``(B, d_inner, N)``) or ``None`` for zeros. Differentiable in every input. ``chunk``: steps
    between the states kept for backward (memory ``T / chunk`` states).
    """
    y, h_last = _SelectiveScan.apply(x, dt, A, B, C, D, h0, chunk)
    return y, h_last
