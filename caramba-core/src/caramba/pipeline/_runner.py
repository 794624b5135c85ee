"""The pipeline runner: build → run → verify → benchmark → artifacts for one target.

Parsing, lowering and validation happened when the :class:`~caramba.manifest.Manifest`
was loaded. The target's folder is ``<artifacts_dir>/<manifest name>/<target name>/`` (stable,
so an interrupted run resumes from its checkpoints) and holds::

    manifest.resolved.yml   overrides.json   plugins.lock.json   environment.json
    caramba.lock            held while a run writes here (_runfolder.py)
    runs/<run id>/          fingerprint.json, metrics.jsonl, kernels.json, checkpoints (written by the trainer)
    report.json             runs, verify results, benchmark results
    ...                     files of the artifact writers (CSV, PNG, LaTeX)
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from caramba.errors import RunError
from caramba.manifest import ExperimentTarget, Manifest, ProcessTarget
from caramba.manifest._limits import training_bytes
from caramba.pipeline._components import BenchmarkResult, RunResult, VerifyResult
from caramba.pipeline._files import atomic_write_json, atomic_write_text
from caramba.pipeline._runfolder import check_fingerprint, check_writable, fingerprint, folder_lock, write_fingerprint
from caramba.pipeline._session import RunSession, TargetSession

__all__ = ["plan", "run_target"]


def plan(manifest: Manifest, target_name: str | None = None, *, runtime: Any = None,
         build: bool = False) -> dict[str, Any]:
    """The dry-run plan: targets, runs, parameter counts and KV bytes per token (no torch).

    With ``build=True`` (and the ``runtime``), each experiment's system is also built on
    torch's ``meta`` device (no memory, no data) and its real parameter count is added as
    ``parameters_built``: a check of the configs' ``num_params()`` and of every factory.
    """
    targets = [manifest.target(target_name)] if target_name else manifest.targets
    out: dict[str, Any] = {"manifest": manifest.source, "name": manifest.name, "targets": []}
    for target in targets:
        entry: dict[str, Any] = {"name": target.name, "type": target.type}
        if isinstance(target, ExperimentTarget):
            system = target.system.config
            params = system.num_params() if hasattr(system, "num_params") else None
            kv = system.kv_elements_per_token() if hasattr(system, "kv_elements_per_token") else None
            entry.update(
                system=target.system.ref,
                data=target.data.ref,
                trainer=target.trainer.ref,
                objective=target.objective.ref,
                parameters=params,
                training_bytes=training_bytes(params) if params is not None else None,
                kv_bytes_per_token={"fp32": kv * 4, "fp16": kv * 2} if kv is not None else None,
                runs=[{"id": r.id, "seed": r.seed, "steps": r.steps,
                       "verify": [v.type for v in r.verify]} for r in target.runs],
                benchmarks=[{"id": b.id, "type": b.config.type, "models": b.models} for b in target.benchmarks],
            )
            if build:
                entry["parameters_built"] = _count_on_meta(runtime, target)
        else:
            entry.update(process=target.process.type, team=target.team)
        out["targets"].append(entry)
    return out


def _count_on_meta(runtime: Any, target: ExperimentTarget) -> int:
    import torch

    from caramba.graph._build import Builder

    factory = runtime.get("system", target.system.ref).load()
    with torch.device("meta"):
        module = factory(target.system.config, builder=Builder(runtime))
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def environment(seed: int | None = None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "caramba_core": _version("caramba-core"),
        "seed": seed,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(0)
    return env


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def target_dir(manifest: Manifest, target_name: str, root: str | Path | None = None) -> Path:
    base = Path(root) if root is not None else Path(manifest.spec.artifacts_dir)
    return base / manifest.name / target_name


def run_target(runtime: Any, manifest: Manifest, target_name: str | None = None, *,
               root: str | Path | None = None, console: Any = None) -> dict[str, Any]:
    """Run one target end to end and return its report (also written as ``report.json``).

    The folder is checked writable and locked first (rank 0 holds the lock for all ranks);
    a rerun whose settings differ from a run already in the folder is refused before any
    file is written (see :mod:`caramba.pipeline._runfolder`).
    """
    target = manifest.target(target_name)
    folder = target_dir(manifest, target.name, root)
    check_writable(folder)
    lock = folder_lock(folder) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
    with lock:
        return _run_target(runtime, manifest, target, folder, console)


def _run_target(runtime: Any, manifest: Manifest, target: ExperimentTarget | ProcessTarget, folder: Path,
                console: Any) -> dict[str, Any]:
    prints: dict[str, dict[str, Any]] = {}
    if isinstance(target, ExperimentTarget):
        plugins = runtime.lock()
        for run in target.runs:
            prints[run.id] = fingerprint(manifest, target.name, run.id, plugins)
            check_fingerprint(folder / "runs" / run.id, prints[run.id])
    _write_provenance(runtime, manifest, folder)
    if not isinstance(target, ExperimentTarget):
        session = TargetSession(runtime, manifest, target, folder, console)  # type: ignore[arg-type]
        process = runtime.get("process", target.process.type).load()(target.process)
        outcome = process.run(session)
        summary = {"target": target.name, "process": target.process.type, "result": outcome}
        atomic_write_json(folder / "report.json", summary)
        return summary

    started = time.time()
    report: dict[str, Any] = {
        "metadata": {"name": manifest.name, "target": target.name, "manifest": manifest.source,
                     "notes": manifest.spec.notes, "description": target.description, "task": target.task,
                     "labels": dict(target.labels), "started": _iso(started)},
        "runs": [],
        "benchmarks": {},
    }
    models: dict[str, Any] = {}
    tsession = TargetSession(runtime, manifest, target, folder, console)
    for run in target.runs:
        session = RunSession(runtime, manifest, target, folder, console, run=run,
                             run_dir=folder / "runs" / run.id)
        session.run_dir.mkdir(parents=True, exist_ok=True)
        write_fingerprint(session.run_dir, prints[run.id])
        atomic_write_json(session.run_dir / "environment.json", environment(run.seed))
        session.open_sinks()
        try:
            runtime.hooks.run_start(session)
            trainer = session.create("trainer", target.trainer)
            result: RunResult = trainer.run(session)
            checks = _verify(session, result)
            runtime.hooks.run_end(session, result)
        finally:
            session.close_sinks()
        models.update(result.models)
        report["runs"].append({"id": run.id, "exp": run.exp, "seed": run.seed, "metrics": result.metrics,
                               "checkpoint": result.checkpoint,
                               "verify": [vars(c) for c in checks]})
        atomic_write_json(folder / "report.json", report)

    tsession.results = {"models": models}
    for bench in target.benchmarks:
        roles = bench.models or list(models)
        missing = [r for r in roles if r not in models]
        if missing:
            raise RunError(f"benchmark '{bench.id}' names models {missing} that no run produced",
                           hint=f"the runs produced: {sorted(models) or 'nothing'}")
        impl = runtime.get("benchmark", bench.config.type).load()(bench.config)
        results: list[BenchmarkResult] = [impl.run(tsession, {r: models[r] for r in roles})
                                          for _ in range(bench.repeats)]
        report["benchmarks"][bench.id] = {
            "type": bench.config.type,
            "rows": [row for res in results for row in res.rows],
            "summary": results[-1].summary,
        }
    report["metadata"]["finished"] = _iso(time.time())
    atomic_write_json(folder / "report.json", report)

    written: list[str] = [str(folder / "report.json")]
    for entry in runtime.registry("artifact"):
        writer = entry.load()(None)
        written += [str(p) for p in writer.write(tsession, report)]
    written = list(dict.fromkeys(written))  # a writer may rewrite report.json: list each file once
    runtime.hooks.artifacts_written(tsession, written)
    report["artifacts"] = written
    return report


def _verify(session: RunSession, result: RunResult) -> list[VerifyResult]:
    out: list[VerifyResult] = []
    for vcfg in session.run.verify:
        verifier = session.runtime.get("verifier", vcfg.type).load()(vcfg)
        check: VerifyResult = verifier.verify(session, result)
        out.append(check)
        session.info(f"verify {check.name}: {'passed' if check.passed else 'FAILED'} {check.message}")
        if not check.passed and vcfg.fail_fast:
            raise RunError(f"verify '{check.name}' failed for run '{session.run.id}': {check.message}",
                           hint="relax its thresholds or set fail_fast: false to only warn")
    return out


def _write_provenance(runtime: Any, manifest: Manifest, folder: Path) -> None:
    atomic_write_text(folder / "manifest.resolved.yml",
                      yaml.safe_dump(manifest.resolved, sort_keys=False, allow_unicode=True))
    atomic_write_json(folder / "overrides.json", manifest.overrides)
    atomic_write_json(folder / "plugins.lock.json", runtime.lock())
    atomic_write_json(folder / "environment.json", environment())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))
