"""``orchestrator_report``: each orchestrated run's decisions into ``report.json``, and
``orchestrator.png`` in its run folder: the training loss with the switch points marked."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from caramba import ArtifactWriter, atomic_write_bytes, atomic_write_json

__all__ = ["OrchestratorReport", "read_jsonl"]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a line cut by a kill is left out."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class OrchestratorReport(ArtifactWriter):
    def __init__(self, config: Any = None) -> None:
        pass

    def write(self, session: Any, report: dict[str, Any]) -> list[Path]:
        folder = Path(session.target_dir)
        written: list[Path] = []
        found: dict[str, list[dict[str, Any]]] = {}
        for run in report.get("runs", []):
            path = folder / "runs" / run["id"] / "decisions.jsonl"
            if path.exists():
                found[run["id"]] = read_jsonl(path)
                run["orchestrator"] = {"decisions": found[run["id"]]}
                written.append(plot_run(folder / "runs" / run["id"], found[run["id"]]))
        if not found:
            return []
        # Another writer may have rewritten report.json already: add to what is on disk.
        on_disk_path = folder / "report.json"
        on_disk = json.loads(on_disk_path.read_text(encoding="utf-8")) if on_disk_path.exists() else report
        for run in on_disk.get("runs", []):
            if run["id"] in found:
                run["orchestrator"] = {"decisions": found[run["id"]]}
        written.append(atomic_write_json(on_disk_path, on_disk))
        return written


def plot_run(run_dir: Path, decisions: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    by_step: dict[int, float] = {}
    for rec in read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []:
        if rec.get("phase") == "train" and "loss" in rec:
            by_step[int(rec["step"])] = float(rec["loss"])  # a step replayed after a resume: the last wins
    steps = sorted(by_step)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, [by_step[s] for s in steps], lw=1.0, color="tab:blue", label="training loss")
    for d in decisions:
        if d.get("switched"):
            color = "tab:red" if d["policy"] == "safety" else "tab:green"
            ax.axvline(d["step"], color=color, ls="--", lw=1.0)
            ax.annotate(f"{d['policy']}: {d['choice']}", (d["step"], 0.97), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=8, color=color)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("orchestrated training: loss and switches (green: bandit, red: safety)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(run_dir / "orchestrator.png", buf.getvalue())
