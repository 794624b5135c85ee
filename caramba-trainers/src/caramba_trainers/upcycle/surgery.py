"""Architecture surgery: a pretrained Llama-family teacher's weights into a student of another attention.

Weights map by *role* (:func:`caramba_layers.hf.llama_layout`): embedding, norms, MLP, final
norm and LM head are copied; attention is mapped per head, respecting the teacher's GQA
groups. A standard/GQA student of the teacher's shape gets an exact copy (identity surgery).

A decoupled (DBA) student is initialised so that each head keeps its structure:

* **geometric** q/k: the teacher head's ``d_g/2`` highest-frequency RoPE pairs, copied row for
  row. Teacher pair ``i`` rotates at ``base^(-2i/hd)``, and a student with RoPE dim ``d_g``
  and base ``base^(d_g/hd)`` rotates its pair ``i`` at exactly that rate, so these score terms
  are reproduced exactly (:func:`geometric_rope_base`; any ``rope_scaling`` carries over because
  it depends on wavelengths only);
* **semantic** q/k: the remaining, slowly rotating pairs, projected onto the ``d_s`` directions
  that carry most of the teacher's query and key energy on calibration text (PCA of
  ``E[k kᵀ]`` plus the group's mean ``E[q qᵀ]``, each normalised by its trace), position-free;
* **values**: each key/value group keeps the ``d_v`` principal directions of the teacher's
  values (PCA of ``E[v vᵀ]``), and ``out_proj`` absorbs the projection's transpose;
* query scales absorb the change from ``1/√hd`` to ``1/√d_s`` and ``1/√d_g``; gates start at
  ``g = 0.5`` (both paths weighted 1) and temperatures at 1.

Student key/value groups must refine the teacher's (``kv_groups`` a multiple of the teacher's
``num_key_value_heads``), so each group's keys come from exactly one teacher key head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from caramba import CheckpointError
from caramba_layers import AttentionLayer, LlamaLayout, inv_frequencies, llama_layout

__all__ = ["SurgeryReport", "geometric_rope_base", "transplant"]


@dataclass
class SurgeryReport:
    """What the surgery did, for the run's report."""

    copied: int
    attention: str  # "copied" | "dba-structured" | "dba-random"
    blocks: int
    calibration_tokens: int = 0


def geometric_rope_base(teacher_base: float, head_dim: int, geo_head_dim: int) -> float:
    """The student RoPE base whose ``geo_head_dim`` frequencies are the teacher's highest ones."""
    return teacher_base ** (geo_head_dim / head_dim)


@torch.no_grad()
def transplant(teacher: nn.Module, student: nn.Module, *, dba_init: str = "svd",
               calibration: list[dict[str, torch.Tensor]] | None = None) -> SurgeryReport:
    """Copy the teacher into the student by role; DBA attention as the module docstring says."""
    t, s = llama_layout(teacher), llama_layout(student, allow_decoupled=True)
    if len(t.blocks) != len(s.blocks):
        raise CheckpointError(f"the teacher has {len(t.blocks)} blocks and the student {len(s.blocks)}",
                              hint="give the student the teacher's number of layers (repeat:)")
    copied = _copy(t.embed.embedding.weight, s.embed.embedding.weight, "embedding")
    copied += _copy(t.final_norm.weight, s.final_norm.weight, "final norm")
    student_tied = s.head.weight is s.embed.embedding.weight
    if student_tied and not torch.equal(t.head.weight, t.embed.embedding.weight):
        raise CheckpointError("the student ties its LM head to the embedding, but the teacher's head differs",
                              hint="set tied_embeddings: false on the student")
    if not student_tied:
        copied += _copy(t.head.weight, s.head.weight, "LM head")
    for i, ((tn1, _, tn2, tm), (sn1, _, sn2, sm)) in enumerate(zip(t.blocks, s.blocks, strict=True)):
        copied += _copy(tn1.weight, sn1.weight, f"block {i} input norm")
        copied += _copy(tn2.weight, sn2.weight, f"block {i} post-attention norm")
        for name in ("w_gate", "w_up", "w_down"):
            copied += _copy_linear(getattr(tm, name), getattr(sm, name), f"block {i} mlp.{name}")
    decoupled = [b[1].decoupled for b in s.blocks]
    if not any(decoupled):
        for i, (tb, sb) in enumerate(zip(t.blocks, s.blocks, strict=True)):
            _check_same_rope(tb[1], sb[1], f"block {i} attention")
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                copied += _copy_linear(getattr(tb[1], name), getattr(sb[1], name), f"block {i} attention.{name}")
        return SurgeryReport(copied, "copied", len(s.blocks))
    if not all(decoupled):
        raise CheckpointError("the student mixes decoupled and standard attention blocks",
                              hint="upcycle all attention blocks to the same mode")
    inputs = _attention_inputs(teacher, t, calibration) if dba_init == "svd" else None
    for i, (tb, sb) in enumerate(zip(t.blocks, s.blocks, strict=True)):
        _init_dba(tb[1], sb[1], inputs[i] if inputs else None, block=i)
    tokens = sum(int(b["input_ids"].numel()) for b in calibration or [])
    return SurgeryReport(copied, "dba-structured" if inputs else "dba-random", len(s.blocks), tokens)


def _copy(src: torch.Tensor, dst: torch.Tensor, what: str) -> int:
    if src.shape != dst.shape:
        raise CheckpointError(f"{what}: the teacher's is {tuple(src.shape)}, the student's {tuple(dst.shape)}",
                              hint="give the student the teacher's widths (d_model, d_ff, vocab_size)")
    dst.copy_(src.to(dst.dtype))
    return src.numel()


def _copy_linear(src: nn.Linear, dst: nn.Linear, what: str) -> int:
    n = _copy(src.weight, dst.weight, what)
    if (src.bias is None) != (dst.bias is None):
        raise CheckpointError(f"{what}: bias differs between teacher and student", hint="match the bias: field")
    if src.bias is not None:
        n += _copy(src.bias, dst.bias, what + " bias")
    return n


def _attention_inputs(teacher: nn.Module, layout: LlamaLayout,
                      calibration: list[dict[str, torch.Tensor]] | None) -> list[torch.Tensor]:
    """The inputs every teacher attention block sees on the calibration batches: ``(N, d_model)`` each."""
    if not calibration:
        raise CheckpointError("dba_init: svd needs calibration batches", hint="set dba_calibration_batches >= 1")
    seen: list[list[torch.Tensor]] = [[] for _ in layout.blocks]
    def keep(i: int) -> Any:
        return lambda module, args, out: seen[i].append(args[0].reshape(-1, args[0].shape[-1]))

    hooks = [blk[1].register_forward_hook(keep(i)) for i, blk in enumerate(layout.blocks)]
    try:
        for batch in calibration:
            teacher({"input_ids": batch["input_ids"]})
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(x).double() for x in seen]


def _top_directions(second_moment: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` leading eigenvectors of a symmetric matrix, as rows ``(k, n)``."""
    _, vecs = torch.linalg.eigh(second_moment)  # ascending
    return vecs[:, -k:].flip(-1).T.contiguous()


def _moment(x: torch.Tensor) -> torch.Tensor:
    m = x.T @ x / max(1, x.shape[0])
    return m / m.trace().clamp_min(1e-12)


def _init_dba(t: AttentionLayer, s: AttentionLayer, x: torch.Tensor | None, *, block: int) -> None:
    tc, sc = t.config, s.config
    H, hd, G = tc.n_heads, tc.head_dim, tc.kv_heads
    g = sc.kv_heads
    ds, dg, dv = sc.sem_head_dim, sc.geo_head_dim, sc.v_head_dim
    where = f"block {block} attention"
    if sc.n_heads != H or sc.d_model != tc.d_model:
        raise CheckpointError(f"{where}: the student has {sc.n_heads} heads of width {sc.d_model}, the teacher "
                              f"{H} of width {tc.d_model}", hint="keep n_heads and d_model of the teacher")
    if g % G:
        raise CheckpointError(f"{where}: kv_groups ({g}) must be a multiple of the teacher's key/value heads ({G})",
                              hint=f"set kv_groups: {G} (or a multiple of it)")
    if dg > hd or ds > hd - dg or dv > hd:
        raise CheckpointError(f"{where}: per head d_s={ds}, d_g={dg}, d_v={dv} do not fit the teacher's "
                              f"head dim {hd} (d_g ≤ hd, d_s ≤ hd − d_g, d_v ≤ hd)")
    if sc.tie_qk:
        raise CheckpointError(f"{where}: tie_qk cannot hold the teacher's distinct queries and keys",
                              hint="remove tie_qk for upcycling")
    _check_geometric_rope(t, s, where)
    dev, dt = s.q_geo.weight.device, s.q_geo.weight.dtype
    half, pairs = hd // 2, dg // 2
    geo = torch.cat([torch.arange(pairs), half + torch.arange(pairs)])  # highest-frequency pairs
    sem = torch.tensor([r for r in range(hd) if r not in set(geo.tolist())])
    wq = t.q_proj.weight.double().view(H, hd, -1)
    wk = t.k_proj.weight.double().view(G, hd, -1)
    wv = t.v_proj.weight.double().view(G, hd, -1)
    wo = t.out_proj.weight.double().view(-1, H, hd)  # (d_model, H, hd)
    per_group, per_teacher = H // g, g // G  # query heads per student group; student groups per teacher head
    q_geo = wq[:, geo] * math.sqrt(dg / hd)
    k_geo = torch.stack([wk[j // per_teacher, geo] for j in range(g)])
    if x is None:  # dba_init: random keeps random q_sem/k_sem; V/O still carry the teacher
        x = torch.randn(4096, tc.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(block))
        keep_random_semantic = True
    else:
        keep_random_semantic = False
    q_sem, k_sem, v_rows, o_cols = [], [], [], []
    for j in range(g):
        kv = j // per_teacher
        heads = range(j * per_group, (j + 1) * per_group)
        k_r = x @ wk[kv, sem].T  # (N, |sem|): un-rotated slow pairs
        q_moment = sum(_moment(x @ wq[h, sem].T) for h in heads) / per_group
        p_sem = _top_directions(_moment(k_r) + q_moment, ds)  # (ds, |sem|)
        k_sem.append(p_sem @ wk[kv, sem])
        q_sem += [p_sem @ wq[h, sem] * math.sqrt(ds / hd) for h in heads]
        p_v = _top_directions(_moment(x @ wv[kv].T), dv)  # (dv, hd)
        v_rows.append(p_v @ wv[kv])
        o_cols += [wo[:, h] @ p_v.T for h in heads]  # (d_model, dv)
    s.q_geo.weight.copy_(q_geo.reshape(H * dg, -1).to(dev, dt))
    s.k_geo.weight.copy_(k_geo.reshape(g * dg, -1).to(dev, dt))
    if not keep_random_semantic:
        s.q_sem.weight.copy_(torch.cat(q_sem).to(dev, dt))
        s.k_sem.weight.copy_(torch.cat(k_sem).to(dev, dt))
    s.v_proj.weight.copy_(torch.cat(v_rows).to(dev, dt))
    s.out_proj.weight.copy_(torch.cat(o_cols, dim=1).to(dev, dt))
    for name in ("q_sem", "k_sem", "q_geo", "k_geo", "v_proj", "out_proj"):
        bias = getattr(getattr(s, name), "bias", None)
        if bias is not None:
            bias.zero_()  # biases of teacher projections are not carried into DBA
    if getattr(s, "gate_bias", None) is not None:
        s.gate_bias.zero_()
    if getattr(s, "gate_proj", None) is not None:
        s.gate_proj.weight.zero_()
    if getattr(s, "temp", None) is not None:
        s.temp.zero_()


def _check_same_rope(t: AttentionLayer, s: AttentionLayer, where: str) -> None:
    tc, sc = t.config, s.config
    if (tc.rope_enabled, tc.rope_base, tc.rope_scaling) != (sc.rope_enabled, sc.rope_base, sc.rope_scaling):
        raise CheckpointError(f"{where}: the student's RoPE (base {sc.rope_base:g}, scaling {sc.rope_scaling}) "
                              f"differs from the teacher's (base {tc.rope_base:g}, scaling {tc.rope_scaling})",
                              hint="copy rope_base and rope_scaling from the teacher's config.json")


def _check_geometric_rope(t: AttentionLayer, s: AttentionLayer, where: str) -> None:
    tc, sc = t.config, s.config
    if not (tc.rope_enabled and sc.rope_enabled):
        return
    dg, hd = sc.geo_head_dim, tc.head_dim
    want, _ = inv_frequencies(hd, tc.rope_base, tc.rope_scaling)
    got, _ = inv_frequencies(dg, sc.rope_base, sc.rope_scaling)
    if not torch.allclose(got, want[: dg // 2], rtol=1e-6, atol=0):
        base = geometric_rope_base(tc.rope_base, hd, dg)
        raise CheckpointError(
            f"{where}: the student's geometric RoPE frequencies are not the teacher's {dg // 2} highest ones",
            hint=f"set rope_base: {base:.10g} and the teacher's rope_scaling on the student's attention "
                 f"(teacher base {tc.rope_base:g} ** (geo head dim {dg} / head dim {hd}))")
