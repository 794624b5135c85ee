"""``trainer.upcycle``: a pretrained teacher into a student of another attention, then distilled.

A target's runs are its phases, in order (``train.phase``):

* ``blockwise`` (:class:`BlockwiseRun`): teacher loaded from ``teacher_ckpt`` through the
  registered checkpoint formats (its own config: RoPE base and scaling, GQA, tied
  embeddings), student built from the manifest, weights mapped by role
  (:mod:`~caramba_trainers.upcycle.surgery`), then each attention block distilled
  (:mod:`~caramba_trainers.upcycle.blockwise`) with the manifest's optimizer and schedule;
* ``global`` (:class:`GlobalRun`): the standard trainer's loop over the whole student,
  next-token cross entropy plus ``distill_kl_weight`` times ``T² KL(teacher ‖ student)``.

Each phase returns ``{"teacher", "student"}``, so ``verify:`` blocks (compare, fidelity, eval)
and the target's benchmarks measure both.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caramba import CheckpointError, Context, RunError, RunResult, Trainer
from caramba_layers import llama_layout, open_checkpoint
from caramba_trainers.checkpoint import find_latest, resume_point, save_checkpoint, set_rng_state
from caramba_trainers.distributed import Distributed
from caramba_trainers.loop import Precision, evaluate, optimizer_step, to_device
from caramba_trainers.optim import build_optimizer, build_schedule
from caramba_trainers.standard import TrainingRun, clean_partial_checkpoints
from caramba_trainers.upcycle.blockwise import TeacherCache, block_input, block_loss, steps_per_block
from caramba_trainers.upcycle.specs import UpcycleTrainConfig
from caramba_trainers.upcycle.surgery import transplant

__all__ = ["BlockwiseRun", "GlobalRun", "UpcycleTrainer", "load_teacher"]


class UpcycleTrainer(Trainer):
    def __init__(self, config: Any = None) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        train: UpcycleTrainConfig = session.run.train or UpcycleTrainConfig()
        if train.phase == "blockwise":
            return BlockwiseRun(session, train).execute()
        dist = Distributed.setup(train.distributed_strategy, train.distributed_backend, train.device)
        try:
            return GlobalRun(session, train, dist).execute()
        finally:
            dist.close()


# --- shared pieces ---------------------------------------------------------------------------


def load_teacher(session: Any, train: UpcycleTrainConfig, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The teacher, built from its checkpoint's own config, frozen, in eval mode."""
    fmt, path = open_checkpoint(train.teacher_ckpt, session.runtime)
    teacher = fmt.build(session.runtime, path).to(device=device, dtype=dtype).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_teacher(session: Any, teacher: nn.Module, data: Any, objective: Any, train: UpcycleTrainConfig,
                  device: torch.device, precision: Precision) -> float:
    """Held-out perplexity of the teacher; a tokenizer or data mismatch shows up here, before training."""
    out = evaluate(teacher, data, objective, batch_size=train.batch_size, limit=train.eval_batches or 2,
                   device=device, precision=precision)
    ppl = math.exp(min(out["loss"], 50.0))
    if train.teacher_sanity_check and ppl > train.teacher_sanity_max_ppl:
        raise RunError(f"the teacher's held-out perplexity is {ppl:.1f}, above teacher_sanity_max_ppl "
                       f"({train.teacher_sanity_max_ppl:g})",
                       hint="tokenize the data with the teacher's tokenizer (dataset tokenizer: checkpoint, "
                            "tokenizer_checkpoint: <teacher_ckpt>), or raise the bound")
    return ppl


def init_student(session: Any, train: UpcycleTrainConfig, student: nn.Module, teacher: nn.Module,
                 data: Any, device: torch.device) -> str:
    """Give a freshly built student its starting weights; returns where they came from."""
    source = train.init_from
    runs = [r.id for r in session.target.runs]
    here = runs.index(session.run.id)
    if source == "previous":
        source = runs[here - 1] if here > 0 else "surgery"
    if source == "surgery":
        calibration = [to_device(data.batch("train", i, train.batch_size, seed=session.run.seed), device)
                       for i in range(train.dba_calibration_batches)]
        report = transplant(teacher, student, dba_init=train.dba_init, calibration=calibration)
        session.info(f"surgery: {report.attention} attention over {report.blocks} blocks, "
                     f"{report.copied:,} weights copied, {report.calibration_tokens:,} calibration tokens")
        return f"surgery ({report.attention})"
    if source not in runs[:here]:
        raise RunError(f"init_from '{source}' names no earlier run of target '{session.target.name}'",
                       path=f"runs.{session.run.id}.train.init_from",
                       hint=f"use previous, surgery or one of: {', '.join(runs[:here]) or '(none)'}")
    ckpt = find_latest(Path(session.target_dir) / "runs" / source / "checkpoints")
    if ckpt is None or not ckpt.state.get("final"):
        raise RunError(f"run '{source}' has no final checkpoint to start '{session.run.id}' from",
                       hint="run the target's runs in order (caramba run resumes unfinished ones)")
    try:
        student.load_state_dict(ckpt.model, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.path} does not fit the student: {exc}") from None
    return f"run {source} ({ckpt.path.name})"


# --- blockwise -------------------------------------------------------------------------------


class BlockwiseRun:
    """One ``phase: blockwise`` run; ``execute`` reads top to bottom as the module docstring."""

    def __init__(self, session: Any, train: UpcycleTrainConfig) -> None:
        self.session, self.train, self.run = session, train, session.run
        self.root = Path(session.run_dir) / "checkpoints"
        self.save_every = train.save_every or session.manifest.spec.defaults.runtime.save_every

    def execute(self) -> RunResult:
        train, session = self.train, self.session
        torch.manual_seed(self.run.seed)
        device = Distributed().device(train.device)  # single process: resolves "auto"
        if device.type == "cpu":
            torch.set_flush_denormal(True)
        precision = Precision.resolve(device, train.dtype, train.use_amp, train.amp_dtype)
        data = session.create("dataset", session.target.data)
        objective = session.create("objective", session.target.objective)
        teacher = load_teacher(session, train, device, precision.param_dtype)
        teacher_ppl = check_teacher(session, teacher, data, objective, train, device, precision)
        student = session.build_system().to(device=device, dtype=precision.param_dtype)
        session.select_kernels(student, dtype=precision.amp_dtype or precision.param_dtype)

        clean_partial_checkpoints(self.root)
        ckpt = resume_point(self.root, session.warn) if train.auto_resume else None
        if ckpt is not None:
            student.load_state_dict(ckpt.model, strict=True)
            origin = f"resumed from {ckpt.path.name}"
            if ckpt.state.get("final") and train.skip_if_final:
                return self._result(teacher, student, ckpt.state.get("metrics", {}), ckpt.path)
            metrics: dict[str, float] = {"teacher_val_ppl": teacher_ppl, **ckpt.state.get("metrics", {})}
            first = ckpt.state["block"]
        else:
            origin = init_student(session, train, student, teacher, data, device)
            start = evaluate(student, data, objective, batch_size=train.batch_size,
                             limit=train.eval_batches or 2, device=device, precision=precision)
            metrics = {"teacher_val_ppl": teacher_ppl, "start_val_ppl": math.exp(min(start["loss"], 50.0)),
                       "global_step": 0.0}
            first = 0
        session.info(f"blockwise '{self.run.id}': student from {origin}; held-out ppl teacher {teacher_ppl:.2f}, "
                     f"student {metrics.get('start_val_ppl', math.nan):.2f} at the start")

        t_blocks = [b[1] for b in llama_layout(teacher).blocks]
        s_blocks = [b[1] for b in llama_layout(student, allow_decoupled=True).blocks]
        batches: dict[int, dict[str, torch.Tensor]] = {}

        def batch(index: int) -> dict[str, torch.Tensor]:
            if index not in batches:
                batches[index] = to_device(data.batch("train", index, train.batch_size, seed=self.run.seed), device)
            return batches[index]

        cache = TeacherCache(teacher, t_blocks, batch, precision, keep_inputs=train.blockwise_input == "teacher")
        plan = steps_per_block(self.run.steps, len(s_blocks))
        for p in student.parameters():
            p.requires_grad_(False)
        started = time.perf_counter()
        for b in range(first, len(s_blocks)):
            resume = ckpt if ckpt is not None and b == first else None
            metrics.update(self._block(b, student, s_blocks[b], cache, batch, plan[b], precision, device,
                                       resume, metrics))
        metrics["teacher_cache_hits"] = float(cache.hits)
        metrics["teacher_cache_misses"] = float(cache.misses)
        metrics["train_time_s"] = time.perf_counter() - started
        val = evaluate(student, data, objective, batch_size=train.batch_size, limit=train.eval_batches or 2,
                       device=device, precision=precision)
        metrics.update(val_loss=val["loss"], val_ppl=math.exp(min(val["loss"], 50.0)))
        session.log(int(metrics["global_step"]), {"val_loss": val["loss"], "val_ppl": metrics["val_ppl"]},
                    phase="val")
        path = save_checkpoint(self.root, int(metrics["global_step"]), model_state=student.state_dict(),
                               state={"phase": "blockwise", "block": len(s_blocks), "block_step": 0,
                                      "global_step": int(metrics["global_step"]), "final": True,
                                      "metrics": metrics, "run_id": self.run.id}, keep=train.keep_checkpoints)
        return self._result(teacher, student, metrics, path)

    def _block(self, b: int, student: nn.Module, attention: nn.Module, cache: TeacherCache, batch: Any,
               steps: int, precision: Precision, device: torch.device, resume: Any,
               metrics: dict[str, float]) -> dict[str, float]:
        train, session = self.train, self.session
        for p in attention.parameters():
            p.requires_grad_(True)
        holder = nn.ModuleList([attention])  # the optimizer sees this block only
        optimizer = build_optimizer(session.runtime, train.optimizer, holder, train, device)
        converge = train.convergence_target is not None
        limit = train.convergence_max_steps if converge else steps
        schedule = build_schedule(session.runtime, train.scheduler, total_steps=limit,
                                  warmup_steps=train.warmup_steps, min_lr_ratio=train.min_lr_ratio)
        k, g = 0, int(metrics.get("global_step", 0))
        best, since_best = math.inf, 0
        if resume is not None:  # mid-block: the checkpoint holds this block's optimizer and counters
            k, g = resume.state["block_step"], resume.state["global_step"]
            best, since_best = resume.state.get("best", math.inf), resume.state.get("since_best", 0)
            if resume.optimizer is not None:
                optimizer.load_state_dict(resume.optimizer)
            set_rng_state(resume.rng, resume.state.get("rng", {}))
        loss_value = math.nan
        while k < limit:
            lr = schedule.apply(optimizer, k, train.lr)
            index = k % train.blockwise_teacher_cache_batches
            t_in, t_out = cache.get(index)
            x = t_in[b] if train.blockwise_input == "teacher" else block_input(
                student, attention, batch(index)["input_ids"], precision)
            with precision.autocast():
                y = attention(x, Context(training=True))
                loss = block_loss(train.blockwise_loss, y, t_out[b])
            if precision.scaler is not None:
                precision.scaler.scale(loss).backward()
            else:
                loss.backward()
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise RunError(f"block {b} loss became {loss_value} at step {k + 1}",
                               hint="lower lr or set blockwise_grad_clip_norm; rerunning resumes from the "
                                    "last checkpoint")
            optimizer_step(holder, optimizer, precision, clip=train.blockwise_grad_clip_norm)
            k, g = k + 1, g + 1
            if loss_value < best - 1e-12:
                best, since_best = loss_value, 0
            else:
                since_best += 1
            if g % train.telemetry_interval == 0:
                session.log(g, {"loss": loss_value, "block": float(b), "block_step": float(k), "lr": lr,
                                "teacher_cache_hits": float(cache.hits)})
            if g % self.save_every == 0:
                save_checkpoint(self.root, g, model_state=student.state_dict(), optimizer_state=optimizer.state_dict(),
                                state={"phase": "blockwise", "block": b, "block_step": k, "global_step": g,
                                       "best": best, "since_best": since_best, "final": False,
                                       "metrics": metrics, "run_id": self.run.id}, keep=train.keep_checkpoints)
            if converge and (loss_value <= train.convergence_target or since_best >= train.convergence_patience):
                break
        for p in attention.parameters():
            p.requires_grad_(False)
        session.info(f"block {b}: {k} steps, loss {loss_value:.4g} (best {best:.4g})")
        return {f"block{b}_loss": loss_value, f"block{b}_steps": float(k), "global_step": float(g)}

    def _result(self, teacher: nn.Module, student: nn.Module, metrics: dict[str, Any], path: Path) -> RunResult:
        out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        return RunResult(models={"teacher": teacher, "student": student}, metrics=out, checkpoint=str(path))


# --- global ----------------------------------------------------------------------------------


class DistillObjective:
    """While training: ``ce_weight ·`` the target's objective ``+ weight · T² · KL(teacher ‖ student)``.

    Evaluation reports the target's objective alone, so validation losses stay comparable.
    """

    def __init__(self, base: Any, teacher: nn.Module, weight: float, temperature: float,
                 ce_weight: float = 1.0) -> None:
        self.base, self.teacher, self.weight, self.t, self.ce_weight = base, teacher, weight, temperature, ce_weight

    def __call__(self, outputs: dict, batch: dict, ctx: Context | None = None) -> tuple[torch.Tensor, dict]:
        ctx = ctx if ctx is not None else Context()
        loss, metrics = self.base(outputs, batch, ctx)
        if not ctx.training or (self.weight == 0 and self.ce_weight == 1.0):
            return loss, metrics
        with torch.no_grad():
            target = self.teacher({"input_ids": batch["input_ids"]}, Context())["logits"].float()
        t = self.t
        log_p = torch.log_softmax(target / t, dim=-1)
        log_q = torch.log_softmax(outputs["logits"].float() / t, dim=-1)
        kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean() * t * t  # Hinton et al. 2015
        metrics = {**metrics, "ce": float(loss.detach()), "kl": float(kl.detach())}
        total = self.ce_weight * loss + self.weight * kl
        metrics["loss"] = float(total.detach())
        return total, metrics


class GlobalRun(TrainingRun):
    """The standard trainer's loop on the whole student, starting from the previous phase."""

    def __init__(self, session: Any, train: UpcycleTrainConfig, dist: Distributed) -> None:
        super().__init__(session, train, dist)
        self.train: UpcycleTrainConfig = train

    def _build(self) -> None:
        super()._build()
        self.teacher = load_teacher(self.session, self.train, self.device, self.precision.param_dtype)
        self.teacher_ppl = check_teacher(self.session, self.teacher, self.data, self.objective, self.train,
                                         self.device, self.precision)
        origin = init_student(self.session, self.train, self.model, self.teacher, self.data, self.device)
        self.session.info(f"global '{self.run.id}': student from {origin}; teacher held-out ppl "
                          f"{self.teacher_ppl:.2f}")
        self.objective = DistillObjective(self.objective, self.teacher, self.train.distill_kl_weight,
                                          self.train.distill_temperature, self.train.distill_ce_weight)

    def _result(self, metrics: dict[str, float], path: Path | None) -> RunResult:
        result = super()._result(metrics, path)
        result.models["teacher"] = self.teacher
        result.metrics["teacher_val_ppl"] = self.teacher_ppl
        return result
