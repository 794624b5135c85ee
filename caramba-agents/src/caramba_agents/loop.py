"""``research_loop``: write → review → run the proposed experiments (when allowed) → rewrite.

Bounded three ways: ``max_iterations``, ``max_total_experiments`` and a wall-clock
``budget_s`` (an experiment gets at most the time left). Proposed experiments run only with
``auto_run_experiments: true``, each through ``caramba run`` in a child process, and are
recorded with their exit code and report. Every iteration leaves ``iter<N>/paper.tex`` and
``iter<N>/review.json``; the whole story is in ``research_loop.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from caramba import atomic_write_json
from caramba_agents.chat import Provider
from caramba_agents.paper import drafted_prose, plain_prose, results_summary, write_paper
from caramba_agents.providers import create_provider
from caramba_agents.review import review_paper
from caramba_agents.specs import PaperWriteConfig, ResearchLoopConfig

__all__ = ["ResearchLoop"]


class ResearchLoop:
    def __init__(self, config: ResearchLoopConfig) -> None:
        self.config = config

    def run(self, session: Any, *, reviewer: Provider | None = None) -> dict[str, Any]:
        c = self.config
        started = time.monotonic()
        out = Path(c.output_dir) if Path(c.output_dir).is_absolute() else session.target_dir / c.output_dir
        reviewer = reviewer or create_provider(session.runtime, c.reviewer.provider)
        run_dir = Path(c.run_dir)
        experiments: list[dict[str, Any]] = []
        iterations: list[dict[str, Any]] = []
        outcome = "iterations exhausted"
        for i in range(1, c.max_iterations + 1):
            if time.monotonic() - started > c.budget_s:
                outcome = "budget exhausted"
                break
            folder = out / f"iter{i}"
            summary = results_summary(run_dir)
            summary["additional_experiments"] = [
                {k: e[k] for k in ("name", "hypothesis", "exit_code", "metrics")} for e in experiments]
            prose = self._prose(session, summary)
            tex = write_paper(summary, prose, run_dir, folder, title="Research report", authors="caramba")
            review = review_paper(reviewer, tex.read_text(), runtime=session.runtime, base_manifest=c.base_manifest,
                                  out=folder)
            record = {"iteration": i, "paper": str(tex), "score": review["overall_score"],
                      "recommendation": review["recommendation"], "experiments_run": []}
            iterations.append(record)
            session.info(f"iteration {i}: score {review['overall_score']} ({review['recommendation']})")
            if review["overall_score"] >= c.min_score_to_approve:
                outcome = "approved"
                break
            if not c.auto_run_experiments:
                outcome = "proposals await approval (auto_run_experiments: false)"
                break
            for proposal in review["proposed_experiments"]:
                left = c.budget_s - (time.monotonic() - started)
                if len(experiments) >= c.max_total_experiments or left <= 0:
                    break
                experiments.append(self._run(proposal, out / "experiments", left, session))
                record["experiments_run"].append(experiments[-1]["name"])
            self._save(out, iterations, experiments, "running")
        self._save(out, iterations, experiments, outcome)
        return {"outcome": outcome, "iterations": len(iterations), "experiments": experiments,
                "record": str(out / "research_loop.json")}

    def _prose(self, session: Any, summary: dict[str, Any]) -> dict[str, str]:
        prose = plain_prose(summary)
        if self.config.writer is None:
            return prose
        config = PaperWriteConfig(type="paper_write", run_dir=self.config.run_dir, writer=self.config.writer)
        return drafted_prose(config, session.runtime, summary)

    def _run(self, proposal: dict[str, Any], root: Path, timeout: float, session: Any) -> dict[str, Any]:
        command = [sys.executable, "-m", "caramba", "run", proposal["manifest"], "--target", proposal["target"],
                   "--out", str(root)]
        session.info(f"running proposed experiment {proposal['name']}: caramba run {proposal['manifest']}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
            code, tail = done.returncode, (done.stdout + done.stderr)[-1500:]
        except subprocess.TimeoutExpired:
            code, tail = 124, "stopped: the loop's budget ran out"
        reports = sorted(root.glob(f"*/{proposal['target']}/report.json"), key=lambda p: p.stat().st_mtime)
        metrics: dict[str, Any] = {}
        if code == 0 and reports:
            runs = json.loads(reports[-1].read_text()).get("runs", [])
            metrics = runs[0].get("metrics", {}) if runs else {}
        return {"name": proposal["name"], "hypothesis": proposal.get("hypothesis", ""),
                "manifest": proposal["manifest"], "exit_code": code, "metrics": metrics,
                "report": str(reports[-1]) if reports else None, "log_tail": tail}

    @staticmethod
    def _save(out: Path, iterations: list[dict[str, Any]], experiments: list[dict[str, Any]], outcome: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "research_loop.json", {"outcome": outcome, "iterations": iterations,
                                                  "experiments": experiments})
