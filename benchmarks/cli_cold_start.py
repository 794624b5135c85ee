"""Cold start of ``caramba plugins --json`` against the floor of its own dependencies.

Runs, interleaved N times, a fresh interpreter for each of::

    caramba plugins --json                                (python -m caramba.cli ... equivalent)
    python -c "import pluggy, msgspec, yaml, rich"        (the floor: importing the dependencies)

and writes the medians and their ratio (target: at most 2x) to
``benchmarks/results/cli_cold_start-<date>-cpu.json``::

    .venv/bin/python benchmarks/cli_cold_start.py [-n 40] [--plugins layers,trainers]

``--plugins`` sets ``CARAMBA_PLUGINS`` (the others are listed as blocked, not imported), to
measure the core with a chosen set of installed plugins.

Both commands run as a user's would: bytecode caching on (``PYTHONDONTWRITEBYTECODE`` is
removed; the warm-up run writes the ``.pyc`` files an installed package ships with).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
FLOOR = [sys.executable, "-c", "import pluggy, msgspec, yaml, rich"]


def caramba_command() -> list[str]:
    script = shutil.which("caramba", path=str(Path(sys.executable).parent))
    if script:
        return [script, "plugins", "--json"]
    return [sys.executable, "-m", "caramba", "plugins", "--json"]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="runs of each command (interleaved)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--plugins", default=None, help="CARAMBA_PLUGINS for the caramba runs (default: all)")
    args = parser.parse_args()
    if args.plugins is not None:
        ENV["CARAMBA_PLUGINS"] = args.plugins

    cli = caramba_command()
    for cmd in (cli, FLOOR, cli):  # warm the OS file cache, write .pyc; each measured run is a fresh interpreter
        timed(cmd)
    cli_times, floor_times = [], []
    for _ in range(args.n):
        cli_times.append(timed(cli))
        floor_times.append(timed(FLOOR))
    cli_med, floor_med = statistics.median(cli_times), statistics.median(floor_times)
    listing = subprocess.run(cli, capture_output=True, text=True, check=True, env=ENV).stdout
    plugins = json.loads(listing)["plugins"]
    result = {
        "benchmark": "cli_cold_start",
        "date": time.strftime("%Y-%m-%d"),
        "device": "cpu",
        "runs": args.n,
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cli)),
        "floor_command": 'python -c "import pluggy, msgspec, yaml, rich"',
        "median_s": {"caramba_plugins_json": round(cli_med, 4), "floor": round(floor_med, 4)},
        "p90_s": {"caramba_plugins_json": round(_p90(cli_times), 4), "floor": round(_p90(floor_times), 4)},
        "ratio": round(cli_med / floor_med, 3),
        "target_ratio": 2.0,
        "plugins": {p["name"]: p["status"] for p in plugins},
        "caramba_plugins_env": args.plugins,
        "bytecode_cache": True,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    out = Path(args.out) / f"cli_cold_start-{result['date']}-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


if __name__ == "__main__":
    main()
