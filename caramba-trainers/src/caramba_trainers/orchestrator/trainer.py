"""``trainer.orchestrated``: the standard trainer's loop with a portfolio of strategies and
switching policies (reference: the original's orchestrator, with its bugs fixed).

Per step ``s`` (0-based; batch ``s`` as in ``trainer.standard``):

1. the policies are consulted in order (:mod:`.policies`); a decision switches the strategy,
   carrying optimizer state over where a mapping exists (:mod:`.portfolio`). A bandit
   decision first trial-runs its candidates from one snapshot (weights, optimizer state,
   clipping and telemetry state, RNG), each on batches ``s .. s+h-1`` (the batches the run
   reads next, read, not consumed), scores them on held-out batches, restores the snapshot
   after each, and keeps the winner's trained state: the run then continues at ``s + h``;
2. the step's micro-batches run forward and backward; the telemetry observes the loss and
   the gradient norm; with ``skip_spikes`` a spiking step's gradients are dropped;
3. otherwise the strategy clips (global norm or AdaGC) and steps.

So every batch of the run is trained on exactly once, by the strategy in charge, whatever
the decisions: a run whose policies never switch equals a run without policies, bit for bit.
Decisions go to ``decisions.jsonl`` in the run folder, to the run's checkpoint state (so a
resumed run continues them exactly) and, through the ``orchestrator_report`` artifact, into
``report.json`` and ``orchestrator.png`` (loss with the switch points).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from caramba import Context, RunError, RunResult, Trainer, atomic_write_text
from caramba_trainers.checkpoint import find_latest, get_rng_state, set_rng_state
from caramba_trainers.distributed import Distributed
from caramba_trainers.loop import (
    evaluate,
    micro_batches,
    optimizer_step,
    restore_training_state,
    save_training_state,
    to_device,
    unwrap,
)
from caramba_trainers.orchestrator.clipping import GradientClipper
from caramba_trainers.orchestrator.policies import Decision, Trial
from caramba_trainers.orchestrator.portfolio import Portfolio, carry_state
from caramba_trainers.orchestrator.specs import DEFAULT_SAFETY, OrchestratedTrainConfig
from caramba_trainers.orchestrator.telemetry import Telemetry
from caramba_trainers.standard import TrainingRun, clean_partial_checkpoints

__all__ = ["OrchestratedTrainer"]

DECISIONS = "decisions.jsonl"


class OrchestratedTrainer(Trainer):
    def __init__(self, config: Any = None) -> None:
        self.config = config

    def run(self, session: Any) -> RunResult:
        train: OrchestratedTrainConfig = session.run.train or OrchestratedTrainConfig()
        if train.distributed_strategy != "none":
            raise RunError("trainer.orchestrated runs in one process", path=f"runs.{session.run.id}.train."
                           "distributed_strategy", hint="set distributed_strategy: none")
        return OrchestratedRun(session, train, Distributed()).execute()


@dataclass
class _Snapshot:
    """Everything a trial may change, copied (tensors cloned)."""

    step: int
    active: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    clipper: dict[str, Any]
    telemetry: dict[str, Any]
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]]


@dataclass
class _StepRecord:
    step: int  # 1-based: the number of steps done after it
    loss: float
    lr: float
    grad_norm: float
    skipped: bool
    metrics: dict[str, float]
    seconds: float


class _Batches:
    """A fixed list of batches behind the dataset interface :func:`evaluate` reads."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def iter_batches(self, split: str, batch_size: int, *, limit: int | None = None) -> Any:
        return iter(self.batches)


class OrchestratedRun(TrainingRun):
    """One run; also the :class:`~.policies.Orchestra` its policies see."""

    # -- setup --------------------------------------------------------------------------------
    def _build(self) -> None:
        super()._build()
        train, session = self.train, self.session
        orch = train.orchestrator
        where = f"runs.{self.run.id}.train"
        self.portfolio = Portfolio.from_config(session.runtime, train, total_steps=self.run.steps, where=where)
        self.names = self.portfolio.names
        self.safety = orch.safety or (DEFAULT_SAFETY if not orch.portfolio else "")
        self.active = self.portfolio.index(orch.start) if orch.start else 0
        self.params = [p for p in self.wrapped.parameters() if p.requires_grad]
        self.clipper = GradientClipper(self.params)
        self.optimizer = self.portfolio.build(self.active, self.wrapped, self.device)
        self._configure_clipping()
        self.telemetry = Telemetry(orch.telemetry)
        self.policies = [session.runtime.create("switch_policy", p.type, p) for p in orch.policies]
        self.decisions: list[dict[str, Any]] = []
        self.total_steps = self.run.steps
        self.step = 0
        # Trials score on a random sample of the validation split (the final evaluation walks it in order).
        bs = train.batch_size
        self.trial_data = _Batches([to_device(self.data.batch("val", i, bs, seed=self.run.seed + 1), self.device)
                                    for i in range(orch.trial_eval_batches)])

    def _configure_clipping(self) -> None:
        s = self.portfolio.strategies[self.active]
        self.clipper.configure(s.clipping, s.max_grad_norm)

    # -- Orchestra ----------------------------------------------------------------------------
    @property
    def current(self) -> str:
        """The name of the strategy in charge (``self.active`` is its index)."""
        return self.names[self.active]

    def held_out_loss(self) -> float:
        out = evaluate(self.forward, self.trial_data, self.objective, batch_size=self.train.batch_size, limit=None,
                       device=self.device, precision=self.precision)
        return float(out["loss"])

    def trials(self, candidates: list[str], steps: int) -> list[Trial]:
        """Run each candidate ``steps`` steps from one snapshot; keep the end states for :meth:`_apply`."""
        start = self._snapshot()
        out: list[Trial] = []
        self._ends: dict[str, tuple[_Snapshot, list[_StepRecord]]] = {}
        best = math.inf
        for i, name in enumerate(candidates):
            self._restore(start)
            self._switch_to(self.names.index(name))
            records: list[_StepRecord] = []
            try:
                for s in range(start.step, start.step + steps):
                    rec = self._train_step(s)
                    records.append(rec)
                    self.session.log(rec.step, {"loss": rec.loss, "strategy_index": float(self.active),
                                                "candidate": float(i)}, phase="trial")
                held = self.held_out_loss()
            except RunError:
                held = math.inf
            train_loss = sum(r.loss for r in records) / max(1, len(records))
            out.append(Trial(name, held, train_loss, steps))
            # Keep the end state of staying (i == 0) and of the best so far: one of them wins.
            if math.isfinite(held) and (i == 0 or held < best):
                self._ends = {k: v for k, v in self._ends.items() if k == candidates[0]}
                self._ends[name] = (self._snapshot(), records)
                best = min(best, held)
        self._restore(start)
        return out

    # -- state --------------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        model = {k: v.detach().clone() for k, v in unwrap(self.wrapped).state_dict().items()}
        return _Snapshot(step=self.step, active=self.active, model=model,
                         optimizer=copy.deepcopy(self.optimizer.state_dict()),
                         clipper=copy.deepcopy(self.clipper.state_dict()),
                         telemetry=copy.deepcopy(self.telemetry.state_dict()), rng=get_rng_state())

    def _restore(self, snap: _Snapshot) -> None:
        with torch.no_grad():
            unwrap(self.wrapped).load_state_dict(snap.model, strict=True)
        self.wrapped.zero_grad(set_to_none=True)
        self.step, self.active = snap.step, snap.active
        self.optimizer = self.portfolio.build(snap.active, self.wrapped, self.device)
        # load_state_dict keeps tensors that need no cast: hand it copies so the snapshot stays intact
        self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        self.clipper.load_state_dict(copy.deepcopy(snap.clipper))
        self.telemetry.load_state_dict(copy.deepcopy(snap.telemetry))
        self._configure_clipping()
        set_rng_state(*snap.rng)

    def _switch_to(self, index: int) -> str:
        """Make strategy ``index`` current, carrying the optimizer state over; returns what moved."""
        old, old_strategy = self.optimizer, self.portfolio.strategies[self.active]
        new_strategy = self.portfolio.strategies[index]
        self.optimizer = self.portfolio.build(index, self.wrapped, self.device)
        carried = carry_state(old, self.optimizer,
                              same_strategy_optimizer=old_strategy.optimizer == new_strategy.optimizer)
        self.active = index
        self._configure_clipping()
        return carried

    def _orchestrator_state(self) -> dict[str, Any]:
        return {"current": self.current, "telemetry": self.telemetry.state_dict(),
                "clipper": self.clipper.state_dict(), "policies": [p.state_dict() for p in self.policies],
                "decisions": self.decisions}

    def _load_orchestrator_state(self, state: dict[str, Any]) -> None:
        self.telemetry.load_state_dict(state["telemetry"])
        self.clipper.load_state_dict(state["clipper"])
        for policy, ps in zip(self.policies, state["policies"], strict=True):
            policy.load_state_dict(ps)
        self.decisions = list(state["decisions"])

    def _resume(self) -> int:
        clean_partial_checkpoints(self.root)
        ckpt = find_latest(self.root) if self.train.auto_resume else None
        if ckpt is None:
            self._write_decisions()
            return 0
        state = ckpt.state.get("orchestrator")
        if state is None or state["current"] not in self.names:
            raise RunError(f"checkpoint {ckpt.path} holds no orchestrator state for this portfolio",
                           path=f"runs.{self.run.id}.train.orchestrator",
                           hint="the portfolio changed since it was written; move the run folder away to start fresh")
        self.active = self.names.index(state["current"])
        self.optimizer = self.portfolio.build(self.active, self.wrapped, self.device)
        self._configure_clipping()
        restore_training_state(ckpt, model=self.wrapped, optimizer=self.optimizer, precision=self.precision,
                               dist=self.dist)
        self._load_orchestrator_state(state)
        self._write_decisions()
        self.last_good = ckpt.path
        self.resumed_metrics = ckpt.state.get("metrics", {})
        self.session.info(f"resumed run '{self.run.id}' from {ckpt.path} (step {ckpt.step}, strategy "
                          f"'{self.current}')")
        return ckpt.step

    def _save(self, step: int, metrics: dict[str, float], *, final: bool) -> Path | None:
        state = {"run_id": self.run.id, "seed": self.run.seed, "final": final, "metrics": metrics,
                 "data_cursor": {"step": step, "micro_batches": step * self.train.gradient_accumulation_steps},
                 "trainer": "trainer.orchestrated", "orchestrator": self._orchestrator_state()}
        path = save_training_state(self.root, step, model=self.wrapped, optimizer=self.optimizer,
                                   precision=self.precision, dist=self.dist, state=state,
                                   keep=self.train.keep_checkpoints)
        self.last_good = path
        return path

    def _write_decisions(self) -> None:
        lines = "".join(json.dumps(d) + "\n" for d in self.decisions)
        atomic_write_text(Path(self.session.run_dir) / DECISIONS, lines)

    # -- one step -----------------------------------------------------------------------------
    def _train_step(self, step: int) -> _StepRecord:
        """Optimizer step ``step`` (0-based) with the current strategy; advances ``self.step``."""
        t0 = time.perf_counter()
        lr = self.portfolio.apply_lr(self.active, self.optimizer, step)
        accum = self.train.gradient_accumulation_steps
        total = torch.zeros((), device=self.device)
        sums: dict[str, float] = {}
        for batch in micro_batches(self.source, step, accum):
            batch = to_device(batch, self.device, non_blocking=self.source.pin)
            ctx = Context(training=True)
            with self.precision.autocast():
                outputs = self.forward(batch, ctx)
                loss, m = self.objective(outputs, batch, ctx)
            scaled = loss / accum
            if self.precision.scaler is not None:
                scaled = self.precision.scaler.scale(scaled)
            scaled.backward()
            total += loss.detach().float() / accum
            for key, v in m.items():
                sums[key] = sums.get(key, 0.0) + float(v) / accum
        sums.pop("loss", None)
        loss_value = float(total)
        scale = self.precision.scaler.get_scale() if self.precision.scaler is not None else 1.0
        grad_norm = self.clipper.norm() / scale
        flags = self.telemetry.observe(step + 1, loss_value, grad_norm)
        spike = flags["loss_spike"] or flags["grad_spike"]
        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        skipped = spike and self.train.orchestrator.skip_spikes
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
        elif not finite:
            self.optimizer.zero_grad(set_to_none=True)
            self._fail(step + 1, f"the loss became {loss_value} (gradient norm {grad_norm})")
        else:
            optimizer_step(self.wrapped, self.optimizer, self.precision, clip=self.clipper)
        self.step = step + 1
        return _StepRecord(step + 1, loss_value, lr, grad_norm, skipped, sums, time.perf_counter() - t0)

    # -- the loop -----------------------------------------------------------------------------
    def _consult(self) -> Decision | None:
        for policy in self.policies:
            decision = policy.decide(self)
            if decision is not None:
                return decision
        return None

    def _apply(self, decision: Decision) -> list[_StepRecord]:
        """Carry out a decision; returns the adopted trial's step records (empty otherwise)."""
        record = {"time": time.time(), **decision.as_dict()}
        ends = getattr(self, "_ends", {})
        adopted: list[_StepRecord] = []
        if decision.adopt_trial and decision.choice in ends:
            snap, adopted = ends[decision.choice]
            self._restore(snap)
            record["carried"] = "trained state of the trial"
        elif decision.choice != self.current:
            record["carried"] = self._switch_to(self.names.index(decision.choice))
        self._ends = {}
        record["switched"] = decision.choice != decision.previous
        self.decisions.append(record)
        self._write_decisions()
        if record["switched"]:
            self.session.info(f"step {decision.step}: {decision.policy} switches '{decision.previous}' -> "
                              f"'{decision.choice}' ({decision.reason})")
        return adopted

    def execute(self) -> RunResult:
        start, finished = self._begin()
        if finished is not None:
            return finished
        total = self.run.steps
        metrics: dict[str, float] = dict(self.resumed_metrics)
        progress = self._progress(start, total)
        self.wrapped.train()
        self.step = start
        t_start = time.perf_counter()
        try:
            while self.step < total:
                before = self.step
                decision = self._consult()
                records = self._apply(decision) if decision is not None else []
                if not records:
                    records = [self._train_step(self.step)]
                for rec in records:
                    metrics.update(rec.metrics)
                    metrics.update(loss=rec.loss, lr=rec.lr, grad_norm=rec.grad_norm, step_time_s=rec.seconds,
                                   tok_s=self.tokens_per_step / rec.seconds, strategy_index=float(self.active),
                                   skipped=float(rec.skipped))
                    if rec.step % self.train.telemetry_interval == 0 or rec.step == total:
                        self.session.log(rec.step, {k: v for k, v in metrics.items() if not k.startswith("val_")})
                done = self.step
                if self.train.eval_every and done // self.train.eval_every > before // self.train.eval_every \
                        and done < total:
                    metrics.update(self._evaluate(done))
                if done // self.save_every > before // self.save_every and done < total:
                    self._save(done, metrics, final=False)
                if progress is not None:
                    progress.update(self._task, completed=done - start,
                                    status=f"loss {records[-1].loss:.4f}  {self.current}")
            metrics.update(self._evaluate(total))
            metrics["train_time_s"] = time.perf_counter() - t_start
            metrics["switches"] = float(sum(1 for d in self.decisions if d["switched"]))
            metrics["decisions"] = float(len(self.decisions))
            metrics["strategy_index"] = float(self.active)
            path = self._save(total, metrics, final=True)
        finally:
            self.source.close()
            if progress is not None:
                progress.stop()
        return self._result(metrics, path)
