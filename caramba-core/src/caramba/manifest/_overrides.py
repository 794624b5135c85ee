"""Command-line overrides: ``-s targets.quick.runs.0.steps=10``.

A path is dotted; a list item is named by its index or by its ``name``/``id``. The value
is parsed as a YAML flow value (``1e-3`` is a float, ``[1, 2]`` a list). Overrides apply
to the manifest as written, before variable substitution (``-s vars.d=64`` changes a
variable; a value may use ``${vars}``), and the whole manifest is validated again.
Missing mappings along the path are created (``-s ...runs.0.train.lr=1e-3`` works
without a ``train:`` block); a typo there is then an unknown field in the report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from caramba.errors import Location, Problem, did_you_mean
from caramba.manifest._source import SourceDict, SourceList, load_text

__all__ = ["apply_overrides", "split_path"]


def split_path(path: str) -> list[str]:
    return [p for p in re.split(r"\.|\[|\]", path) if p]


def apply_overrides(data: Any, overrides: Sequence[str], problems: list[Problem]) -> None:
    for text in overrides:
        where = Location(f"<-s {text}>", 1, 1)
        if "=" not in text:
            problems.append(Problem(where, "", f"override {text!r} has no '='", "write -s path.to.field=value"))
            continue
        raw_path, raw_value = text.split("=", 1)
        parts = split_path(raw_path.strip())
        if not parts:
            problems.append(Problem(where, "", "override has an empty path", "write -s path.to.field=value"))
            continue
        try:
            value = load_text(raw_value, where.file) if raw_value.strip() else ""
        except Exception:  # noqa: BLE001 - a value that is not YAML is taken as text
            value = raw_value
        if isinstance(value, (SourceDict, SourceList)):
            _relocate(value, where)
        _set(data, parts, value, where, raw_path.strip(), problems)


def _relocate(value: Any, where: Location) -> None:
    if isinstance(value, (SourceDict, SourceList)):
        value.location = where
        for k in list(value.locations):
            value.locations[k] = where
        for v in value.values() if isinstance(value, dict) else value:
            _relocate(v, where)


def _set(data: Any, parts: list[str], value: Any, where: Location, dotted: str, problems: list[Problem]) -> None:
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            index = _index(node, part)
            if index is None:
                names = [str(i) for i in range(len(node))] + [
                    str(item.get(k)) for item in node if isinstance(item, dict) for k in ("name", "id") if k in item
                ]
                problems.append(Problem(where, here, f"override path '{dotted}': no item '{part}' in this list",
                                        did_you_mean(part, names)))
                return
            if last:
                node[index] = value
                if isinstance(node, SourceList):
                    node.locations[index] = where
                return
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                if isinstance(node, SourceDict):
                    node.locations[part] = where
                return
            if part not in node or node[part] is None:
                node[part] = SourceDict(location=where)
                if isinstance(node, SourceDict):
                    node.locations[part] = where
            node = node[part]
        else:
            problems.append(Problem(where, here, f"override path '{dotted}': '{parts[depth - 1]}' is not a "
                                    "mapping or list", "override the field itself"))
            return


def _index(items: list[Any], part: str) -> int | None:
    if part.lstrip("-").isdigit():
        i = int(part)
        return i if -len(items) <= i < len(items) else None
    for i, item in enumerate(items):
        if isinstance(item, dict) and part in (item.get("name"), item.get("id")):
            return i
    return None
