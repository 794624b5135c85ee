"""Lowering: raw manifest data into its canonical form, before validation.

* ``seed: [1, 2]`` on a run becomes one run per seed (ids and ``exp`` get ``__s<seed>``);
* ``repeat: N`` on a topology becomes N deep copies of its layers (each with its own
  weights; source positions are kept, so errors still point at the line written);
* a bare string where a component is expected becomes ``{ref: <string>}``, and a single
  ``verify:`` mapping becomes a one-item list; ``task: {ref: x}`` becomes ``task: x``.

Registered names and aliases are resolved by the decoder (``trainer.train`` is the
standard trainer).
"""

from __future__ import annotations

import copy
from typing import Any

from caramba.errors import Problem
from caramba.manifest._decode import format_path
from caramba.manifest._limits import ExpansionBudget, count_values
from caramba.manifest._source import SourceDict, SourceList, locate

__all__ = ["lower"]

_COMPONENT_FIELDS = ("data", "system", "objective", "trainer")


def lower(data: Any, problems: list[Problem] | None = None, budget: ExpansionBudget | None = None) -> Any:
    """Lower ``data`` in place; problems (an empty ``seed: []``) go into ``problems``.

    Seed lists and ``repeat:`` copy subtrees; each copy is spent from ``budget`` and
    lowering stops with a problem at the first expansion that passes its limit.
    """
    if problems is None:
        problems = []
    if not isinstance(data, dict):
        return data
    budget = budget if budget is not None else ExpansionBudget(count_values(data))
    targets = data.get("targets")
    for ti, target in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(target, dict):
            continue
        for key in _COMPONENT_FIELDS:
            if isinstance(target.get(key), str):
                target[key] = _like(target, {"ref": target[key]}, key)
        task = target.get("task")
        if isinstance(task, dict) and isinstance(task.get("ref"), str):
            target["task"] = task["ref"]
        runs = target.get("runs")
        if isinstance(runs, list):
            ok = True
            for ri, run in enumerate(runs):
                seeds = run.get("seed") if isinstance(run, dict) else None
                if not isinstance(seeds, list):
                    continue
                path = ("targets", ti, "runs", ri, "seed")
                if not seeds:
                    ok = False
                    problems.append(Problem(locate(data, path), f"targets[{ti}].runs[{ri}].seed",
                                            "seed list is empty: this run would not run at all",
                                            "give at least one seed, or a single integer"))
                for si, seed in enumerate(seeds):
                    if not isinstance(seed, int) or isinstance(seed, bool):
                        ok = False
                        problems.append(Problem(locate(data, (*path, si)), f"targets[{ti}].runs[{ri}].seed[{si}]",
                                                f"a seed must be an integer, got {seed!r}"))
            if ok:
                ok = all(budget.spend(count_values(run) * (len(run["seed"]) - 1), locate(data, ("targets", ti,
                                      "runs", ri, "seed")), f"targets[{ti}].runs[{ri}].seed", "this seed list")
                         for ri, run in enumerate(runs) if isinstance(run, dict) and isinstance(run.get("seed"), list))
            if ok:
                target["runs"] = _expand_seeds(runs)
            for run in target["runs"]:
                if isinstance(run, dict) and isinstance(run.get("verify"), dict):
                    run["verify"] = _like(run, [run["verify"]], "verify")
    _expand_repeats(data, budget, data, ())
    if budget.problem is not None:
        problems.append(budget.problem)
    return data


def _like(parent: Any, value: Any, key: Any) -> Any:
    """Wrap ``value`` in a Source container located where ``parent[key]`` was."""
    loc = getattr(parent, "locations", {}).get(key)
    if isinstance(value, dict):
        mapping = SourceDict(value, location=loc)
        mapping.locations = {k: loc for k in value}
        return mapping
    items = SourceList(value, location=loc)
    items.locations = {i: loc for i in range(len(value))}
    if isinstance(parent.get(key), SourceDict):
        items.locations[0] = parent[key].location
    return items


def _expand_seeds(runs: list[Any]) -> list[Any]:
    out = SourceList(location=getattr(runs, "location", None))
    for i, run in enumerate(runs):
        seeds = run.get("seed") if isinstance(run, dict) else None
        if not isinstance(seeds, list):
            out.locations[len(out)] = getattr(runs, "locations", {}).get(i)
            out.append(run)
            continue
        for si, seed in enumerate(seeds):
            clone = copy.deepcopy(run)
            clone["seed"] = seed
            if isinstance(clone, SourceDict) and isinstance(seeds, SourceList) and si in seeds.locations:
                clone.locations["seed"] = seeds.locations[si]
            if isinstance(clone.get("id"), str):
                clone["id"] = f"{clone['id']}__s{seed}"
            if isinstance(clone.get("exp"), str) and clone["exp"]:
                clone["exp"] = f"{clone['exp']}__s{seed}"
            out.locations[len(out)] = getattr(runs, "locations", {}).get(i)
            out.append(clone)
    return out


def _expand_repeats(node: Any, budget: ExpansionBudget, root: Any, path: tuple[Any, ...]) -> None:
    if budget.problem is not None:
        return
    if isinstance(node, dict):
        repeat = node.get("repeat")
        layers = node.get("layers")
        if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 1 and isinstance(layers, list):
            where = (*path, "repeat")
            if not budget.spend(count_values(layers) * (repeat - 1), locate(root, where), format_path(where),
                                f"repeat: {repeat}"):
                return
            expanded = SourceList(location=getattr(layers, "location", None))
            for _ in range(repeat):
                for i, layer in enumerate(layers):
                    expanded.locations[len(expanded)] = getattr(layers, "locations", {}).get(i)
                    expanded.append(copy.deepcopy(layer))
            node["layers"] = expanded
            node["repeat"] = 1
        for key, value in node.items():
            _expand_repeats(value, budget, root, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _expand_repeats(value, budget, root, (*path, i))

