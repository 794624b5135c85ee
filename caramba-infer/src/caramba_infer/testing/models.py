"""Torch halves of :mod:`caramba_infer.testing`: a tiny LM that follows the cache protocol.

Attention (standard, GQA, DBA) declares ``cache_fields()`` and appends to
``ctx.cache(self.node_path)``; the SSM declares ``state_fields()`` and carries its conv
window and scan state in ``ctx.cache(self.node_path).tensors``. Without caches every
module computes over the whole sequence, which is what cached decoding must reproduce.
"""

from __future__ import annotations

import copy
import math
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caramba import Context, RunResult, Trainer
from caramba.nn import NodeModule


def rope(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021), half-split layout. x: (B, T, H, D); positions: (T,)."""
    d = x.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)  # (D/2,)
    ang = positions.float()[:, None] * inv[None]  # (T, D/2)
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    x1, x2 = x[..., : d // 2].float(), x[..., d // 2:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@dataclass
class _AttnSpec:
    """What the memory benchmark reads: the analytic per-token element count."""

    elements: int

    def kv_elements_per_token(self) -> int:
        return self.elements


def _causal(t: int, s: int, offset: int, device: Any) -> torch.Tensor:
    q_pos = offset + torch.arange(t, device=device)[:, None]
    return torch.arange(s, device=device)[None] <= q_pos  # (T, S): True = attend


class TinyAttention(NodeModule):
    """Standard/GQA attention with RoPE; caches ``k``, ``v`` of shape ``(n_kv, hd)``."""

    def __init__(self, cfg: Any, mode: str) -> None:
        self.h = cfg.n_heads
        self.kv = (cfg.n_kv_heads or cfg.n_heads) if mode == "gqa" else cfg.n_heads
        self.hd = cfg.d_model // cfg.n_heads
        super().__init__(_AttnSpec(2 * self.kv * self.hd))
        self.base = cfg.rope_base
        self.q = nn.Linear(cfg.d_model, self.h * self.hd, bias=False)
        self.k = nn.Linear(cfg.d_model, self.kv * self.hd, bias=False)
        self.v = nn.Linear(cfg.d_model, self.kv * self.hd, bias=False)
        self.o = nn.Linear(self.h * self.hd, cfg.d_model, bias=False)

    def cache_fields(self) -> dict[str, tuple[int, ...]]:
        return {"k": (self.kv, self.hd), "v": (self.kv, self.hd)}

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        b, t, _ = x.shape
        pos = ctx.pos_offset + torch.arange(t, device=x.device)
        q = rope(self.q(x).view(b, t, self.h, self.hd), pos, self.base)
        k = rope(self.k(x).view(b, t, self.kv, self.hd), pos, self.base)
        v = self.v(x).view(b, t, self.kv, self.hd)
        cache = ctx.cache(self.node_path)
        if cache is not None:
            full = cache.append(k=k, v=v)
            k, v = full["k"], full["v"]
        rep = self.h // self.kv
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (B, H|kv, S, hd)
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        mask = _causal(t, k.shape[2], ctx.pos_offset, x.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, hd)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


class TinyDBA(NodeModule):
    """Decoupled bottleneck attention: ``s = q_sem·k_sem/√d_s + q_geo·k_geo/√d_g`` (RoPE on geo only)."""

    def __init__(self, cfg: Any) -> None:
        self.h = cfg.n_heads
        self.ds, self.dg = cfg.sem_dim // self.h, cfg.geo_dim // self.h
        v_dim = cfg.v_dim or cfg.d_model
        self.dv = v_dim // self.h
        super().__init__(_AttnSpec(cfg.sem_dim + cfg.geo_dim + v_dim))
        self.base = cfg.rope_base
        d = cfg.d_model
        self.qs, self.ks = nn.Linear(d, cfg.sem_dim, bias=False), nn.Linear(d, cfg.sem_dim, bias=False)
        self.qg, self.kg = nn.Linear(d, cfg.geo_dim, bias=False), nn.Linear(d, cfg.geo_dim, bias=False)
        self.v = nn.Linear(cfg.d_model, v_dim, bias=False)
        self.o = nn.Linear(v_dim, cfg.d_model, bias=False)

    def cache_fields(self) -> dict[str, tuple[int, ...]]:
        return {"k_sem": (self.h, self.ds), "k_geo": (self.h, self.dg), "v": (self.h, self.dv)}

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        b, t, _ = x.shape
        pos = ctx.pos_offset + torch.arange(t, device=x.device)
        qs, ks = self.qs(x).view(b, t, self.h, self.ds), self.ks(x).view(b, t, self.h, self.ds)
        qg = rope(self.qg(x).view(b, t, self.h, self.dg), pos, self.base)
        kg = rope(self.kg(x).view(b, t, self.h, self.dg), pos, self.base)
        v = self.v(x).view(b, t, self.h, self.dv)
        cache = ctx.cache(self.node_path)
        if cache is not None:
            full = cache.append(k_sem=ks, k_geo=kg, v=v)
            ks, kg, v = full["k_sem"], full["k_geo"], full["v"]
        # One SDPA over concatenated keys with scale 1 gives exactly the summed scores.
        q = torch.cat([qs / math.sqrt(self.ds), qg / math.sqrt(self.dg)], dim=-1).transpose(1, 2)
        k = torch.cat([ks, kg], dim=-1).transpose(1, 2)
        mask = _causal(t, k.shape[2], ctx.pos_offset, x.device)
        y = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), attn_mask=mask, scale=1.0)
        return self.o(y.transpose(1, 2).reshape(b, t, -1))


class TinySSM(NodeModule):
    """A diagonal selective SSM (Mamba-1 shape, sequential scan): conv window and ``h`` are the state."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(None)
        d_in = 2 * cfg.d_model
        self.d_in, self.n, self.kconv = d_in, cfg.d_state, cfg.d_conv
        self.inp = nn.Linear(cfg.d_model, 2 * d_in, bias=False)
        self.conv = nn.Parameter(torch.randn(d_in, cfg.d_conv) / cfg.d_conv)
        self.bc = nn.Linear(d_in, 2 * cfg.d_state + 1, bias=False)
        self.a_log = nn.Parameter(torch.log(torch.arange(1, cfg.d_state + 1).float()).repeat(d_in, 1))
        self.out = nn.Linear(d_in, cfg.d_model, bias=False)

    def state_fields(self) -> dict[str, tuple[int, ...]]:
        return {"conv": (self.d_in, self.kconv - 1), "h": (self.d_in, self.n)}

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        ctx = ctx or Context()
        b, t, _ = x.shape
        u, z = self.inp(x).chunk(2, dim=-1)  # (B, T, d_in) each
        state = ctx.cache(self.node_path)
        prev = state.tensors if state is not None and state.tensors is not None else None
        window = prev["conv"] if prev is not None else u.new_zeros(b, self.d_in, self.kconv - 1)
        seq = torch.cat([window, u.transpose(1, 2)], dim=-1)  # (B, d_in, K-1+T)
        conv = F.silu(F.conv1d(seq, self.conv[:, None], groups=self.d_in)).transpose(1, 2)  # (B, T, d_in)
        b_, c_, dt = self.bc(conv).split([self.n, self.n, 1], dim=-1)
        dt = F.softplus(dt)  # (B, T, 1)
        a = torch.exp(-torch.exp(self.a_log)[None, None] * dt[..., None])  # (B, T, d_in, N)
        h = prev["h"] if prev is not None else u.new_zeros(b, self.d_in, self.n)
        ys = []
        for i in range(t):
            h = a[:, i] * h + (dt[:, i, :, None] * b_[:, i, None, :]) * conv[:, i, :, None]
            ys.append((h * c_[:, i, None, :]).sum(-1))
        y = torch.stack(ys, dim=1) * F.silu(z)
        if state is not None:
            state.tensors = {"conv": seq[..., seq.shape[-1] - (self.kconv - 1):], "h": h}
            state.length += t
        return self.out(y)


class _Block(nn.Module):
    def __init__(self, cfg: Any, mixer: str, path: str) -> None:
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(cfg.d_model), nn.RMSNorm(cfg.d_model)
        if mixer == "decoupled":
            self.mixer: NodeModule = TinyDBA(cfg)
        elif mixer == "ssm":
            self.mixer = TinySSM(cfg)
        else:
            self.mixer = TinyAttention(cfg, mixer)
        self.mixer.node_path = path
        d = cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        x = x + self.mixer(self.n1(x), ctx)
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    """``{"input_ids": (B, T)} -> {"logits": (B, T, V), "hidden": (B, T, D)}``."""

    def __init__(self, config: Any, builder: Any = None) -> None:
        super().__init__()
        self.config = config
        torch.manual_seed(config.seed)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(_Block(config, m, f"blocks.{i}.mixer") for i, m in enumerate(config.mixers))
        self.norm = nn.RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, batch: dict[str, torch.Tensor], ctx: Context | None = None) -> dict[str, torch.Tensor]:
        ctx = ctx or Context()
        x = self.embed(batch["input_ids"])
        for block in self.blocks:
            x = block(x, ctx)
        x = self.norm(x)
        return {"logits": self.head(x), "hidden": x}


# --- data, objective, trainer ------------------------------------------------------------

class ByteTokenizer:
    """UTF-8 bytes; id 0 (NUL, absent from text) is end-of-sequence."""

    eos_id = 0
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 < i < 256).decode("utf-8", errors="replace")


class TextData:
    """Blocks of a real text's bytes; ``val`` blocks come only from the held-out tail."""

    def __init__(self, config: Any) -> None:
        path = Path(config.path) if config.path else Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
        self.tokenizer = ByteTokenizer()
        ids = torch.tensor(self.tokenizer.encode(path.read_text(encoding="utf-8")[: config.max_chars]))
        cut = int(len(ids) * (1 - config.val_frac))
        self.splits = {"train": ids[:cut], "val": ids[cut:]}
        self.block_size = config.block_size
        self.meta = {"vocab_size": 256, "train_tokens": cut, "val_tokens": len(ids) - cut}

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None,
                     seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        data = self.splits[split]
        n = (len(data) - 1) // self.block_size
        starts = torch.arange(n) * self.block_size
        if split == "train":
            starts = starts[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
        for i, at in enumerate(range(0, n - batch_size + 1, batch_size)):
            if limit is not None and i >= limit:
                return
            rows = torch.stack([data[s: s + self.block_size + 1] for s in starts[at: at + batch_size].tolist()])
            yield {"input_ids": rows[:, :-1], "target_ids": rows[:, 1:]}


class CrossEntropy:
    def __init__(self, config: Any = None) -> None:
        pass

    def __call__(self, outputs: dict, batch: dict, ctx: Context) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs["logits"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["target_ids"].flatten())
        loss = loss + ctx.total_aux_loss()
        return loss, {"ce": float(loss.detach())}


class PairTrainer(Trainer):
    """Trains the system as ``teacher``; ``student`` is a copy with Gaussian noise on its weights."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        from caramba_infer.testing import PairRunConfig

        run = session.run
        train = run.train or PairRunConfig()
        torch.manual_seed(run.seed)
        model = session.build_system()
        data = session.create("dataset", session.target.data)
        objective = session.create("objective", session.target.objective)
        opt = torch.optim.AdamW(model.parameters(), lr=train.lr)
        loss = torch.tensor(float("nan"))
        batches = data.iter_batches("train", train.batch_size, seed=run.seed)
        for step in range(1, run.steps + 1):
            batch = next(batches, None)
            if batch is None:
                batches = data.iter_batches("train", train.batch_size, seed=run.seed + step)
                batch = next(batches)
            ctx = Context(training=True)
            loss, metrics = objective(model(batch, ctx), batch, ctx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            session.log(step, {"loss": float(loss.detach()), **metrics})
        model.eval()
        student = copy.deepcopy(model)
        with torch.no_grad():
            g = torch.Generator().manual_seed(run.seed + 1)
            for p in student.parameters():
                p.add_(train.student_noise * torch.randn(p.shape, generator=g))
        models = {"teacher": model, "student": student} if train.teacher else {"student": student}
        return RunResult(models=models, metrics={"loss": float(loss.detach())})
