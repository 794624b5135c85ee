"""Orchestrated training against every fixed strategy of its portfolio, on the embedded corpus.

For the ``quick`` model of two presets (``standard_transformer``: a 2-layer GPT;
``moe_transformer``: a 2-layer MoE GPT) and 3 seeds, the same target is trained

* with each strategy of the portfolio alone (``trainer.orchestrated`` with no policies,
  which is that strategy's plain training loop), and
* orchestrated: starting from the preset's own optimizer (AdamW at the preset's lr), the
  safety policy and a UCB bandit that trial-runs the other strategies every ``--every``
  steps and switches only for a held-out gain of ``--min-gain`` (relative),

all for ``--steps`` steps (equal steps), then the fixed strategies again for as many steps
as fit into the orchestrated run's wall time (equal wall time: the trials' extra steps are
given to the fixed strategies). Held-out loss is the target's evaluation (``eval_batches``
of the validation split, not the windows the trials score on). Writes
``benchmarks/results/orchestrated_vs_fixed-<date>-cpu.json`` and prints the table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/orchestrated_vs_fixed.py --steps 60 --seeds 1 2 3

The defaults fit a shared 2-core machine (batch 8 x 64 tokens, 60 steps): a small-size
check of the claim, not a tuned comparison.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from caramba import Runtime, run_target

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("standard_transformer", "moe_transformer")
PORTFOLIO = [
    {"name": "adamw", "optimizer": "adamw", "lr": 3.0e-3, "clipping": "adagc"},  # also the safety strategy
    {"name": "lion", "optimizer": "lion", "lr": 1.0e-3},
    {"name": "sgd_nesterov", "optimizer": "sgd", "lr": 0.3, "momentum": 0.9, "nesterov": True},
]


def manifest(preset: str, runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The preset's quick target, trained by trainer.orchestrated with ``runs``, without verify or benchmarks."""
    spec = yaml.safe_load((ROOT / "config" / "presets" / f"{preset}.yml").read_text())
    spec.pop("entrypoints", None)
    spec["vars"]["block_size"] = args.block_size
    target = next(t for t in spec["targets"] if t["name"] == "quick")
    base = {**target["runs"][0]["train"], "batch_size": args.batch_size}
    target.update(trainer="trainer.orchestrated", benchmarks=[])
    target["runs"] = [{"id": r["id"], "seed": r["seed"], "steps": r["steps"],
                       "train": {**base, "progress": False, "save_every": 100000, "telemetry_interval": 10,
                                 "orchestrator": r["orchestrator"]}} for r in runs]
    spec["targets"] = [target]
    spec["name"] = f"orch_{preset}"
    return yaml.safe_dump(spec, sort_keys=False)


def fixed(name: str) -> dict[str, Any]:
    return {"portfolio": PORTFOLIO, "start": name, "safety": "adamw", "policies": []}


def orchestrated(args: argparse.Namespace) -> dict[str, Any]:
    return {"portfolio": PORTFOLIO, "start": "adamw", "safety": "adamw",
            "policies": [{"type": "safety"},
                         {"type": "bandit", "first": args.first, "every": args.every,
                          "trial_steps": args.trial_steps, "candidates": args.candidates, "min_gain": args.min_gain}]}


def run(rt: Runtime, preset: str, runs: list[dict[str, Any]], out: Path,
        args: argparse.Namespace) -> dict[str, dict[str, float]]:
    report = run_target(rt, rt.load_manifest_text(manifest(preset, runs, args)), None, root=out)
    return {r["id"]: r["metrics"] for r in report["runs"]}


def summarise(values: dict[str, list[float]]) -> dict[str, Any]:
    return {k: {"mean": statistics.fmean(v), "per_seed": v} for k, v in values.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--trial-steps", type=int, default=10)
    ap.add_argument("--min-gain", type=float, default=0.02)
    ap.add_argument("--first", type=int, default=None, help="step of the first decision (default: --every)")
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--tag", default="", help="added to the result file's name, e.g. -first0")
    args = ap.parse_args()
    rt = Runtime()
    names = [s["name"] for s in PORTFOLIO]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            runs = [{"id": f"{n}_s{seed}", "seed": seed, "steps": args.steps, "orchestrator": fixed(n)}
                    for seed in args.seeds for n in names]
            runs += [{"id": f"orchestrated_s{seed}", "seed": seed, "steps": args.steps,
                      "orchestrator": orchestrated(args)} for seed in args.seeds]
            m = run(rt, preset, runs, Path(tmp) / "steps", args)
            equal_steps = {n: [m[f"{n}_s{s}"]["val_loss"] for s in args.seeds] for n in [*names, "orchestrated"]}
            times = {n: [m[f"{n}_s{s}"]["train_time_s"] for s in args.seeds] for n in [*names, "orchestrated"]}
            switches = [m[f"orchestrated_s{s}"]["switches"] for s in args.seeds]
            # Equal wall time: each fixed strategy gets the steps its own speed fits into the
            # orchestrated run's time (same seed), with its schedule stretched to them.
            budget = []
            for s in args.seeds:
                for n in names:
                    per_step = m[f"{n}_s{s}"]["train_time_s"] / args.steps
                    steps = max(args.steps, round(m[f"orchestrated_s{s}"]["train_time_s"] / per_step))
                    budget.append({"id": f"{n}_s{s}", "seed": s, "steps": steps, "orchestrator": fixed(n)})
            mt = run(rt, preset, budget, Path(tmp) / "time", args)
            equal_time = {n: [mt[f"{n}_s{s}"]["val_loss"] for s in args.seeds] for n in names}
            equal_time["orchestrated"] = equal_steps["orchestrated"]
            results[preset] = {
                "equal_steps": summarise(equal_steps), "equal_wall_time": summarise(equal_time),
                "equal_wall_time_steps": {b["id"]: b["steps"] for b in budget},
                "train_time_s": summarise(times), "orchestrated_switches": switches,
            }
            for mode in ("equal_steps", "equal_wall_time"):
                table = results[preset][mode]
                fixed_means = sorted(table[n]["mean"] for n in names)
                best = min(names, key=lambda n: table[n]["mean"])
                orch = table["orchestrated"]["mean"]
                results[preset][mode + "_verdict"] = {
                    "best_fixed": best, "best_fixed_mean": table[best]["mean"],
                    "portfolio_median": statistics.median(fixed_means), "orchestrated_mean": orch,
                    "no_worse_than_best": orch <= table[best]["mean"],
                    "better_than_median": orch < statistics.median(fixed_means)}
    date = datetime.date.today().isoformat()
    doc = {"benchmark": "orchestrated_vs_fixed", "date": date, "machine": platform.machine(),
           "cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
           "load_avg_at_end": os.getloadavg(),
           "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/orchestrated_vs_fixed.py "
                      + " ".join(sys.argv[1:]),
           "settings": vars(args), "portfolio": PORTFOLIO, "results": results}
    out = ROOT / "benchmarks" / "results" / f"orchestrated_vs_fixed{args.tag}-{date}-cpu.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    for preset, r in results.items():
        for mode in ("equal_steps", "equal_wall_time"):
            print(f"\n{preset}, {mode.replace('_', ' ')}: held-out loss, mean over seeds {args.seeds}")
            for n, v in r[mode].items():
                print(f"  {n:14s} {v['mean']:.4f}  {' '.join(f'{x:.4f}' for x in v['per_seed'])}")
            print("  verdict:", r[mode + "_verdict"])
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
