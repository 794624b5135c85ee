"""Checking a manifest's ``requires:`` list against installed distributions.

A requirement is ``name``, optionally followed by comma-separated clauses of
``>=, <=, ==, !=, >, <`` and a dotted numeric version: ``caramba-layers>=1.0,<2``.
"""

from __future__ import annotations

import re

from caramba.plugins._discovery import find_distribution

__all__ = ["api_pin", "check_requirement", "installed_version", "requirement_name"]

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$")
_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.]*)$")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        parts.append(int(digits.group(0)) if digits else 0)
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, ``"0+unknown"`` when it is not installed."""
    dist = find_distribution(distribution)
    return dist.version if dist is not None and dist.version else "0+unknown"


def api_pin(version: str, distribution: str = "caramba-core") -> str:
    """The requirement a plugin written against ``version`` declares: its compatible release line.

    caramba follows semantic versioning, where a 0.x release's minor plays the major's part:
    ``0.1.z`` releases keep the plugin API of 0.1 (hook specifications, registrar, config
    bases, ``caramba.nn``), ``0.2`` may change it; from 1.0 on, only a new major may.
    """
    major, minor = (_version_tuple(version) + (0, 0))[:2]
    upper = f"0.{minor + 1}" if major == 0 else str(major + 1)
    return f"{distribution}>={major}.{minor},<{upper}"


def requirement_name(requirement: str) -> str:
    """The distribution a requirement names (``caramba-layers>=1`` → ``caramba-layers``)."""
    m = _REQ.match(requirement)
    return m.group(1) if m else requirement.strip()


def check_requirement(requirement: str) -> str | None:
    """``None`` when satisfied, else a message saying what is missing."""
    m = _REQ.match(requirement)
    if not m:
        return f"cannot parse requirement {requirement!r} (expected e.g. 'caramba-layers>=1.0')"
    name, rest = m.group(1), m.group(2).strip()
    dist = find_distribution(name)
    if dist is None:
        return f"{name} is not installed (pip install '{requirement}')"
    installed = dist.version
    if not rest:
        return None
    have = _version_tuple(installed)
    for clause in rest.split(","):
        c = _CLAUSE.match(clause.strip())
        if not c:
            return f"cannot parse version clause {clause.strip()!r} in {requirement!r}"
        op, want = c.group(1), _version_tuple(c.group(2))
        ok = {
            ">=": have >= want, "<=": have <= want, "==": have == want,
            "!=": have != want, ">": have > want, "<": have < want,
        }[op]
        if not ok:
            return f"{name} {installed} is installed but the manifest requires {requirement}"
    return None
