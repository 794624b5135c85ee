"""``trainer.standard`` (alias ``trainer.train``): supervised training of a target's system.

Per run: seed -> join torchrun's process group (DDP/FSDP) -> build the system, data and
objective from the manifest -> precision (bf16 autocast, or fp16 with a grad scaler) ->
wrap -> optimizer and schedule -> resume from the newest checkpoint -> loop:

* each optimizer step runs ``gradient_accumulation_steps`` micro-batches (step ``s``,
  micro ``k`` reads training batch ``s * accum + k``), clips, steps, and logs;
* a non-finite loss or gradient norm stops the run with a :class:`RunError`; the last
  good checkpoint is kept (nothing is written after the bad step);
* every ``eval_every`` steps, and at the end, the validation split is evaluated;
* every ``save_every`` steps, and at the end, a checkpoint is written;
* SIGINT or SIGTERM stops the run after the current step, with a checkpoint of it
  (exit code 128 + the signal: 130, 143); a rerun resumes there.

Resuming restores weights, optimizer, scaler, RNG and the step; the data cursor *is* the
step, so a resumed run continues the uninterrupted run's loss curve exactly.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch

from caramba import Context, RunError, RunResult, Trainer
from caramba_trainers.checkpoint import list_checkpoints, resume_point
from caramba_trainers.distributed import Distributed
from caramba_trainers.init import load_init_checkpoint, save_lora_adapters
from caramba_trainers.loop import (
    BatchSource,
    Precision,
    evaluate,
    micro_batches,
    optimizer_step,
    restore_training_state,
    save_training_state,
    to_device,
)
from caramba_trainers.optim import build_optimizer, build_schedule
from caramba_trainers.specs import TrainConfig

__all__ = ["StandardTrainer", "TrainingRun", "clean_partial_checkpoints"]


def clean_partial_checkpoints(root: Path) -> None:
    """Remove temp folders a killed writer left behind (committed checkpoints are untouched)."""
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)


class StopRequest:
    """Turns SIGINT and SIGTERM into a request the loop answers after the current step.

    A second signal acts at once (the default handlers are back): checkpoint writes are
    atomic, so stopping mid-write loses only that checkpoint. Off under torchrun, where a
    checkpoint is a collective that every rank would have to reach together.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class StandardTrainer(Trainer):
    def __init__(self, config: Any = None) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        train: TrainConfig = session.run.train or TrainConfig()
        dist = Distributed.setup(train.distributed_strategy, train.distributed_backend, train.device)
        try:
            return TrainingRun(session, train, dist).execute()
        finally:
            dist.close()


class TrainingRun:
    """One run's state; ``execute`` reads top to bottom as the docstring above.

    Other trainers of this package extend it (the upcycle trainer's global fine-tuning phase).
    """

    def __init__(self, session: Any, train: TrainConfig, dist: Distributed) -> None:
        self.session = session
        self.train = train
        self.dist = dist
        self.run = session.run
        self.root = Path(session.run_dir) / "checkpoints"
        self.save_every = train.save_every or session.manifest.spec.defaults.runtime.save_every
        self.eval_batches = train.eval_batches or session.manifest.spec.defaults.logging.eval_iters

    # -- setup --------------------------------------------------------------------------------
    def _build(self) -> None:
        train, session = self.train, self.session
        torch.manual_seed(self.run.seed)
        self.device = self.dist.device(train.device)
        if self.device.type == "cpu":
            # Denormals make CPU matmuls 4-6x slower late in training; flushing them is free.
            torch.set_flush_denormal(True)
        self.precision = Precision.resolve(self.device, train.dtype, train.use_amp, train.amp_dtype)
        self.data = session.create("dataset", session.target.data)
        self.objective = session.create("objective", session.target.objective)
        block = self.data.meta.get("block_size")
        if train.block_size is not None and block is not None and train.block_size != block:
            raise RunError(f"train.block_size is {train.block_size} but the dataset's block_size is {block}",
                           path=f"runs.{self.run.id}.train.block_size",
                           hint="set one of them; the dataset's block_size decides the batch shape")
        self.model = session.build_system().to(device=self.device, dtype=self.precision.param_dtype)
        session.select_kernels(self.model, dtype=self.precision.amp_dtype or self.precision.param_dtype)
        if train.init_checkpoint:  # a resumed run's own checkpoint replaces these weights in _resume
            load_init_checkpoint(session, self.model, train.init_checkpoint)
        mp = self.precision.amp_dtype if self.dist.strategy == "fsdp" else None
        self.wrapped = self.dist.wrap(self.model, self.device, find_unused=train.ddp_find_unused_parameters,
                                      mixed_precision=mp)
        if mp is not None:  # FSDP2 casts parameters itself; autocast on top would be redundant
            self.precision.amp_dtype = None
        self.optimizer = build_optimizer(session.runtime, train.optimizer, self.wrapped, train, self.device)
        self.schedule = build_schedule(session.runtime, train.scheduler, total_steps=self.run.steps,
                                       warmup_steps=train.warmup_steps, min_lr_ratio=train.min_lr_ratio)
        self.forward = torch.compile(self.wrapped, mode=train.compile_mode) if train.compile_model else self.wrapped
        self.source = BatchSource(self.data, train.batch_size, self.run.seed, self.dist,
                                  workers=train.num_workers, pin_memory=train.pin_memory)
        world = self.dist.world_size if self.dist.enabled else 1
        self.samples_per_step = train.batch_size * world * train.gradient_accumulation_steps
        self.tokens_per_step = self.samples_per_step * int(self.data.meta.get("tokens_per_sample", 1))

    def _resume(self) -> int:
        """The step to start from (0 when fresh); loads the newest good checkpoint."""
        step = self._resume_point()
        if self.dist.is_main:
            self.session.rewind_metrics(step)
        return step

    def _resume_point(self) -> int:
        if self.dist.is_main:
            clean_partial_checkpoints(self.root)
        self.dist.barrier()
        if not self.train.auto_resume:
            return 0
        ckpt = resume_point(self.root, self.session.warn)
        if ckpt is None:
            return 0
        restore_training_state(ckpt, model=self.wrapped, optimizer=self.optimizer, precision=self.precision,
                               dist=self.dist)
        self.last_good = ckpt.path
        self.resumed_metrics = ckpt.state.get("metrics", {})
        self.session.info(f"resumed run '{self.run.id}' from {ckpt.path} (step {ckpt.step})")
        return ckpt.step

    # -- the loop -----------------------------------------------------------------------------
    def _begin(self) -> tuple[int, RunResult | None]:
        """Build and resume: ``(start step, None)``, or the result of a run already finished."""
        self._build()
        self.last_good: Path | None = None
        self.resumed_metrics: dict[str, float] = {}
        start = self._resume()
        if start >= self.run.steps and self.last_good is not None and self.train.skip_if_final:
            self.source.close()
            return start, self._result(self.resumed_metrics, self.last_good)
        return start, None

    def execute(self) -> RunResult:
        start, finished = self._begin()
        if finished is not None:
            return finished
        total = self.run.steps

        metrics: dict[str, float] = dict(self.resumed_metrics)
        if start == 0 and self.train.init_checkpoint:
            # The starting point's held-out metrics (LoRA adapters start at zero: the base model's).
            metrics.update({f"init_{k}": v for k, v in self._evaluate(0).items()})
        progress = self._progress(start, total)
        self.wrapped.train()
        t_start = time.perf_counter()
        stop = StopRequest(enabled=not self.dist.enabled)
        try:
            for step in range(start, total):
                t0 = time.perf_counter()
                lr = self.schedule.apply(self.optimizer, step, self.train.lr)
                loss, step_metrics, grad_norm = self._step(step)
                dt = time.perf_counter() - t0
                metrics.update(step_metrics)
                metrics.update(loss=loss, lr=lr, step_time_s=dt, tok_s=self.tokens_per_step / dt,
                               samples_s=self.samples_per_step / dt)
                if grad_norm is not None:
                    metrics["grad_norm"] = grad_norm
                done = step + 1
                if self.dist.is_main and (done % self.train.telemetry_interval == 0 or done == total):
                    self.session.log(done, {k: v for k, v in metrics.items() if not k.startswith("val_")})
                if self.train.eval_every and done % self.train.eval_every == 0 and done < total:
                    metrics.update(self._evaluate(done))
                if done % self.save_every == 0 and done < total:
                    self._save(done, metrics, final=False)
                if progress is not None:
                    progress.update(self._task, completed=done - start,
                                    status=f"loss {loss:.4f}  {self.tokens_per_step / dt:,.0f} tok/s")
                if stop.signal is not None and done < total:
                    self._stop(stop.signal, done, metrics)
            metrics.update(self._evaluate(total))
            metrics["train_time_s"] = time.perf_counter() - t_start
            path = self._save(total, metrics, final=True)
            if self.dist.is_main and save_lora_adapters(self.model, self.session.run_dir) is not None:
                self.session.info(f"LoRA adapters saved in {Path(self.session.run_dir) / 'adapters'}")
        finally:
            stop.restore()
            self.source.close()
            if progress is not None:
                progress.stop()
        return self._result(metrics, path)

    def _step(self, step: int) -> tuple[float, dict[str, float], float | None]:
        accum = self.train.gradient_accumulation_steps
        total_loss = torch.zeros((), device=self.device)
        sums: dict[str, float] = {}
        for k, batch in enumerate(micro_batches(self.source, step, accum)):
            batch = to_device(batch, self.device, non_blocking=self.source.pin)
            ctx = Context(training=True)
            # Gradients are reduced across ranks once per optimizer step, on its last micro-batch.
            last = k == accum - 1
            if self.dist.enabled and self.dist.strategy == "fsdp":
                self.wrapped.set_requires_gradient_sync(last)
            skip_sync = self.dist.enabled and self.dist.strategy == "ddp" and not last
            with self.wrapped.no_sync() if skip_sync else contextlib.nullcontext():
                with self.precision.autocast():  # forward only: backward runs in the forward's dtypes
                    outputs = self.forward(batch, ctx)
                    loss, m = self.objective(outputs, batch, ctx)
                scaled = loss / accum
                if self.precision.scaler is not None:
                    scaled = self.precision.scaler.scale(scaled)
                scaled.backward()
            total_loss += loss.detach().float() / accum
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + float(v) / accum
        mean_loss = float(self.dist.all_mean(total_loss))
        if not math.isfinite(mean_loss):
            self._fail(step + 1, f"the loss became {mean_loss}")
        try:
            norm, skipped = optimizer_step(self.wrapped, self.optimizer, self.precision, clip=self.train.grad_clip_norm)
        except FloatingPointError as exc:
            self._fail(step + 1, str(exc))
        sums.pop("loss", None)
        if skipped:
            sums["amp_skipped"] = 1.0
        return mean_loss, sums, norm

    def _stop(self, signum: int, step: int, metrics: dict[str, float]) -> None:
        """SIGINT or SIGTERM arrived: checkpoint the finished step, then stop (exit 128 + the signal)."""
        path = self._save(step, metrics, final=False) if step % self.save_every else self.last_good
        name = signal.Signals(signum).name
        error = RunError(f"run '{self.run.id}' stopped by {name} after step {step}; checkpoint {path} holds it",
                         hint="run the same command again to resume")
        error.exit_code = 128 + signum
        raise error

    def _fail(self, step: int, what: str) -> None:
        where = f"the last good checkpoint is {self.last_good}" if self.last_good else "no checkpoint was written yet"
        raise RunError(f"run '{self.run.id}' stopped at step {step}: {what}; {where}",
                       hint="lower lr, set grad_clip_norm, use bf16 instead of fp16, or check the data; "
                            "rerunning resumes from that checkpoint")

    def _evaluate(self, step: int) -> dict[str, float]:
        out = evaluate(self.forward, self.data, self.objective, batch_size=self.train.batch_size,
                       limit=self.eval_batches, device=self.device, precision=self.precision)
        val = {f"val_{k}": v for k, v in out.items()}
        if "val_loss" in val:
            val["val_ppl"] = math.exp(min(val["val_loss"], 50.0))
        if self.dist.is_main:
            self.session.log(step, val, phase="val")
        return val

    def _save(self, step: int, metrics: dict[str, float], *, final: bool) -> Path | None:
        state = {"run_id": self.run.id, "seed": self.run.seed, "final": final, "metrics": metrics,
                 "data_cursor": {"step": step, "micro_batches": step * self.train.gradient_accumulation_steps},
                 "schedule": self.schedule.state_dict(), "trainer": "trainer.standard"}
        path = save_training_state(self.root, step, model=self.wrapped, optimizer=self.optimizer,
                                   precision=self.precision, dist=self.dist, state=state,
                                   keep=self.train.keep_checkpoints)
        if path is not None:
            self.last_good = path
        return path or (list_checkpoints(self.root) or [None])[-1]

    def _result(self, metrics: dict[str, float], path: Path | None) -> RunResult:
        out = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        out["steps"] = float(self.run.steps)
        return RunResult(models={"student": self.model}, metrics=out, checkpoint=str(path) if path else None)

    def _progress(self, start: int, total: int) -> Any:
        console = self.session.console
        if not (self.train.progress and self.dist.is_main and console is not None and total > start):
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=console)
        self._task = progress.add_task(f"train {self.run.id}", total=total - start, status="")
        progress.start()
        return progress

