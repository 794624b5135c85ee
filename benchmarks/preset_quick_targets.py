"""Wall time and outcome of every preset's ``quick`` target, run as a user runs it.

    .venv/bin/python benchmarks/preset_quick_targets.py [--threads N]

Each target runs in a fresh process (``python -m caramba run NAME --target quick``) into a
temporary folder; the JSON in ``benchmarks/results/`` holds the wall time, the machine, and
the number each integration test bounds (held-out loss, accuracy, sample distance).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = ["standard_transformer", "moe_transformer", "mamba_ssm", "vit", "mlp_classifier",
           "graph_node_classification", "diffusion_vector", "lora_finetune"]


def outcome(name: str, report: dict) -> dict:
    m = report["runs"][-1]["metrics"]
    if name == "diffusion_vector":
        rows = {r["role"]: r for r in report["benchmarks"]["samples"]["rows"]}
        return {k: {"mmd2": rows[k]["mmd2"], "nn_distance": rows[k]["nn_distance"]} for k in rows}
    keys = ("val_loss", "val_acc", "init_val_loss", "aux_loss")
    return {k: m[k] for k in keys if k in m}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the runs (0: torch's default)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in PRESETS:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "caramba", "run", name, "--target", "quick", "--out", out],
                                  env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            report = json.loads((Path(out) / name / "quick" / "report.json").read_text())
            rows.append({"preset": name, "wall_s": round(wall, 1), "outcome": outcome(name, report)})
            print(f"{name:<28} {wall:6.1f} s  {rows[-1]['outcome']}", flush=True)
    result = {"benchmark": "preset_quick_targets", "date": time.strftime("%Y-%m-%d"), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "omp_threads": args.threads or "default",
              "note": "lora_finetune includes training its base target first", "rows": rows}
    path = Path(__file__).parent / "results" / f"preset_quick_targets-{result['date']}-cpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
