"""``${name}`` substitution from a manifest's ``vars``.

A string that is exactly one placeholder takes the variable's value with its type
(``d_model: ${d}`` is an int); placeholders inside a longer string are interpolated
as text (numbers as written, booleans as ``true``/``false``; a list or mapping cannot be
interpolated). ``$${name}`` is the literal text ``${name}``. Variables may use other
variables; cycles and unknown names are problems.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from caramba.errors import Problem, did_you_mean
from caramba.manifest._limits import ExpansionBudget, count_values, limit, raise_hint
from caramba.manifest._source import SourceDict, SourceList, locate

__all__ = ["substitute"]

_PLACEHOLDER = re.compile(r"(?<!\$)\$\{([A-Za-z0-9_.-]+)\}")
_ESCAPED = re.compile(r"\$\$\{")


def substitute(data: Any, problems: list[Problem], budget: ExpansionBudget | None = None) -> Any:
    """Pop ``vars`` from the top level and substitute it everywhere else (in place).

    Each use of a list or mapping variable is a copy, so variables that use each other can
    grow exponentially: every copy is spent from ``budget`` and stops at its limit.
    """
    budget = budget if budget is not None else ExpansionBudget(count_values(data))
    if not isinstance(data, dict) or "vars" not in data:
        _walk(data, {}, data, (), problems)
        return data
    raw = data.pop("vars")
    if raw is None:
        raw = SourceDict()
    if not isinstance(raw, dict):
        problems.append(Problem(getattr(data, "locations", {}).get("vars"), "vars",
                                "vars must be a mapping of name: value"))
        raw = SourceDict()
    resolved: dict[str, Any] = {}
    resolving: list[str] = []

    def resolve(name: str) -> Any:
        if name in resolved:
            return resolved[name]
        if name in resolving:
            cycle = " -> ".join([*resolving[resolving.index(name):], name])
            problems.append(Problem(raw.locations.get(name) if isinstance(raw, SourceDict) else None,
                                    f"vars.{name}", f"variable cycle: {cycle}",
                                    "break the cycle with a literal value"))
            resolved[name] = None
            return None
        resolving.append(name)
        value = _substitute_value(raw[name], lookup, raw, ("vars", name), problems, root=raw, rel=(name,))
        resolving.pop()
        resolved[name] = value
        return value

    def lookup(name: str, where: tuple[Any, ...], root: Any, rel: tuple[Any, ...]) -> Any:
        if name not in raw:
            path = _dotted(where)
            problems.append(Problem(locate(root, rel), path, f"unknown variable '${{{name}}}'",
                                    did_you_mean(name, raw.keys()) if raw else "declare it under vars:"))
            return _MISSING
        value = resolve(name)
        if not isinstance(value, (dict, list)):
            return value
        if not budget.spend(count_values(value), locate(root, rel), _dotted(where), f"variable '${{{name}}}'"):
            return None
        # each use gets its own copy, so lowering one use never changes another
        return copy.deepcopy(value)

    for name in list(raw):
        resolve(name)
    _walk(data, lookup, data, (), problems)
    if budget.problem is not None:
        problems.append(budget.problem)
    return data


_MISSING = object()


def _walk(node: Any, lookup: Any, root: Any, path: tuple[Any, ...], problems: list[Problem]) -> None:
    if isinstance(node, dict):
        for key in list(node):
            node[key] = _substitute_value(node[key], lookup, root, (*path, key), problems, root=root,
                                          rel=(*path, key))
    elif isinstance(node, list):
        for i in range(len(node)):
            node[i] = _substitute_value(node[i], lookup, root, (*path, i), problems, root=root, rel=(*path, i))


def _substitute_value(value: Any, lookup: Any, _root: Any, where: tuple[Any, ...], problems: list[Problem],
                      *, root: Any, rel: tuple[Any, ...]) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value
        if not lookup:
            for m in _PLACEHOLDER.finditer(value):
                problems.append(Problem(locate(root, rel), _dotted(where),
                                        f"unknown variable '${{{m.group(1)}}}'", "declare it under vars:"))
            return _ESCAPED.sub("${", value)
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            got = lookup(whole.group(1), where, root, rel)
            return value if got is _MISSING else got

        def repl(m: re.Match[str]) -> str:
            got = lookup(m.group(1), where, root, rel)
            if got is _MISSING:
                return m.group(0)
            if isinstance(got, (dict, list)):
                what = "mapping" if isinstance(got, dict) else "list"
                name = m.group(1)
                problems.append(Problem(locate(root, rel), _dotted(where),
                                        f"variable '${{{name}}}' is a {what} and cannot be interpolated into text",
                                        f"use it as the whole value: '${{{name}}}'"))
                return m.group(0)
            return _as_text(got)

        text = _ESCAPED.sub("${", _PLACEHOLDER.sub(repl, value))
        if len(text) > (most := limit("CARAMBA_MAX_MANIFEST_BYTES")):
            problems.append(Problem(locate(root, rel), _dotted(where),
                                    f"interpolating variables makes a text of {len(text):,} characters "
                                    f"(limit {most:,})", raise_hint("CARAMBA_MAX_MANIFEST_BYTES")))
            return ""
        return text
    if isinstance(value, (SourceDict, SourceList, dict, list)):
        if isinstance(value, dict):
            for key in list(value):
                value[key] = _substitute_value(value[key], lookup, _root, (*where, key), problems,
                                               root=root, rel=(*rel, key))
        else:
            for i in range(len(value)):
                value[i] = _substitute_value(value[i], lookup, _root, (*where, i), problems,
                                             root=root, rel=(*rel, i))
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
