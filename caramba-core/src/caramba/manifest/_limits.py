"""Bounds on what a manifest may hold or expand to, so reading one is always quick.

A ten-line YAML file can name a billion values through nested aliases, and ``repeat:``
multiplies a subtree; without bounds ``caramba validate`` would run until the machine
runs out of memory. Every limit is generous for real manifests, named in the error that
enforces it, and can be raised deliberately through its environment variable:

=============================  ==================  =================================================
variable                       default             bounds
=============================  ==================  =================================================
``CARAMBA_MAX_MANIFEST_BYTES``  16 MiB              the size of the manifest file
``CARAMBA_MAX_MANIFEST_NODES``  100,000             values once aliases, ``repeat:`` and seed lists
                                                    are expanded (a 32-block model is ~1,000)
=============================  ==================  =================================================

Validation also counts a system's parameters and refuses one whose fp32 weights alone
cannot fit this machine's memory (``CARAMBA_MEMORY_BYTES`` states another budget); the
dry-run plan shows the estimate for training (16 bytes per parameter: fp32 weights,
gradients and AdamW's two moments).

Numbers are data too: a value that is not finite (``.inf``, ``1e400``, ``.nan``) or an
integer outside 64 bits is refused wherever it appears, since no field means it and a
run would otherwise hang or die in the allocator.
"""

from __future__ import annotations

import math
import os
from typing import Any

from caramba.errors import Location, Problem

__all__ = ["ExpansionBudget", "check_numbers", "count_values", "human_bytes", "limit", "memory_budget",
           "raise_hint", "training_bytes"]

_DEFAULTS = {
    "CARAMBA_MAX_MANIFEST_BYTES": 16 * 1024 * 1024,
    "CARAMBA_MAX_MANIFEST_NODES": 100_000,
}
_INT64 = 2**63 - 1


def limit(variable: str) -> int:
    """The bound named by ``variable``: its environment value when set to an integer, else the default."""
    raw = os.environ.get(variable, "")
    try:
        value = int(raw)
    except ValueError:
        return _DEFAULTS[variable]
    return value if value > 0 else _DEFAULTS[variable]


def raise_hint(variable: str) -> str:
    return f"shrink it, or raise the limit deliberately with {variable}=<larger>"


class ExpansionBudget:
    """Counts values as a manifest is expanded and reports once when the count passes the limit."""

    variable = "CARAMBA_MAX_MANIFEST_NODES"

    def __init__(self, used: int = 0) -> None:
        self.max = limit(self.variable)
        self.used = used
        self.problem: Problem | None = None

    def spend(self, count: int, where: Location | None, path: str, what: str) -> bool:
        """Add ``count`` values; ``False`` (and a recorded problem) when that passes the limit."""
        self.used += count
        if self.used <= self.max:
            return True
        if self.problem is None:
            self.problem = Problem(where, path, f"{what} expands the manifest past {self.max:,} values",
                                   raise_hint(self.variable))
        return False


def count_values(value: Any) -> int:
    """Values in a loaded manifest tree, a shared (aliased) subtree counted at each use."""
    memo: dict[int, int] = {}

    def walk(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key not in memo:
            children = node.values() if isinstance(node, dict) else node
            memo[key] = 1 + sum(walk(child) for child in children)
        return memo[key]

    return walk(value)


def check_numbers(data: Any, problems: list[Problem], path: str = "") -> None:
    """Report every non-finite float and every integer that does not fit in 64 bits."""
    seen: set[int] = set()

    def walk(node: Any, path: str, where: Location | None) -> None:
        if isinstance(node, (dict, list)):
            if id(node) in seen:
                return
            seen.add(id(node))
            locations = getattr(node, "locations", {})
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                sub = f"{path}[{key}]" if isinstance(node, list) else (f"{path}.{key}" if path else str(key))
                walk(child, sub, locations.get(key) or getattr(node, "location", None))
            return
        if isinstance(node, float) and not math.isfinite(node):
            problems.append(Problem(where, path, f"{node} is not a finite number",
                                    "write a finite value (YAML reads 1e400 as infinity)"))
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > _INT64:
            problems.append(Problem(where, path, f"the integer {str(node)[:12]}... does not fit in 64 bits",
                                    "write a value below 9.2e18"))

    walk(data, path, getattr(data, "location", None))


TRAINING_BYTES_PER_PARAM = 16  # fp32 weights + gradients + AdamW's two moments


def training_bytes(params: int) -> int:
    """The memory that training ``params`` parameters needs at least (activations not counted)."""
    return params * TRAINING_BYTES_PER_PARAM


def memory_budget() -> int | None:
    """Bytes a run may use: ``CARAMBA_MEMORY_BYTES`` when set, else this machine's physical memory."""
    raw = os.environ.get("CARAMBA_MEMORY_BYTES", "")
    if raw.strip().isdigit():
        return int(raw)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no bound is known
        return None


def human_bytes(n: int) -> str:
    if n < 2**30:
        return f"{n / 2**20:,.1f} MiB"
    return f"{n / 2**30:,.1f} GiB"
