"""Finding installed plugins: the entry points of one group, read straight from disk.

``importlib.metadata`` answers the same question but costs more to import than the rest
of ``caramba plugins`` together (it pulls in ``email``, ``zipfile``, ``csv``...). Entry points
are plain files (``<dist>.dist-info/entry_points.txt``), so caramba reads them itself:
the folders on ``sys.path`` in order, the first distribution of a name winning, exactly
as ``importlib.metadata.entry_points()`` does. A path entry that is a zip archive (an egg)
is handed to ``importlib.metadata``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Distribution", "EntryPoint", "entry_points", "find_distribution"]


@dataclass(frozen=True)
class Distribution:
    """An installed distribution: its name, version and metadata folder."""

    name: str
    version: str
    path: str


@dataclass(frozen=True)
class EntryPoint:
    """``name = module:attr`` in a group, and the distribution that declares it."""

    name: str
    value: str
    group: str
    dist: Distribution

    def load(self) -> object:
        """Import the module and return the attribute (the module itself without ``:attr``)."""
        import importlib

        module_name, _, attr = self.value.partition(":")
        obj: object = importlib.import_module(module_name.strip())
        attr = attr.split("[", 1)[0].strip()  # drop "[extras]"
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name: ``Caramba_Layers`` → ``caramba-layers``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group``, from the first distribution of each name on ``path``."""
    out: list[EntryPoint] = []
    for dist in _distributions(path):
        if isinstance(dist, _ArchiveDistribution):
            text = dist.entry_points_text
        else:
            text = _read(os.path.join(dist.path, "entry_points.txt"))
        if text:
            out += [EntryPoint(name, value, group, dist) for name, value in _section(text, group)]
    return out


def find_distribution(name: str, path: Iterable[str] | None = None) -> Distribution | None:
    """The installed distribution called ``name`` (any spelling), or ``None``."""
    want = normalize(name)
    for dist in _distributions(path):
        if normalize(dist.name) == want:
            return dist
    return None


# --- reading metadata folders -------------------------------------------------------------

_FOLDER = re.compile(r"^(?P<name>[^-]+)(?:-(?P<version>[^-]+))?.*\.(?:dist|egg)-info$", re.IGNORECASE)


def _distributions(path: Iterable[str] | None) -> Iterable[Distribution]:
    seen: set[str] = set()
    for entry in list(sys.path if path is None else path):
        folder = entry or os.getcwd()
        if os.path.isfile(folder):
            found: Iterable[Distribution] = _archive_distributions(folder)
        else:
            found = _folder_distributions(folder)
        for dist in found:
            key = normalize(dist.name)
            if key not in seen:
                seen.add(key)
                yield dist


def _folder_distributions(folder: str) -> Iterable[Distribution]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        m = _FOLDER.match(name)
        if m is None:
            continue
        meta_dir = os.path.join(folder, name)
        if not os.path.isdir(meta_dir):
            continue
        header = _header(meta_dir)
        yield Distribution(
            name=header.get("name") or m.group("name"),
            version=header.get("version") or m.group("version") or "",
            path=meta_dir,
        )


def _archive_distributions(archive: str) -> Iterable[Distribution]:
    """Distributions inside a zip on ``sys.path`` (rare): ask ``importlib.metadata``."""
    if not archive.endswith((".zip", ".egg", ".whl")):
        return
    from importlib import metadata

    for dist in metadata.distributions(path=[archive]):
        eps = dist.read_text("entry_points.txt") or ""
        yield _ArchiveDistribution(dist.metadata["Name"], dist.version, archive, eps)


@dataclass(frozen=True)
class _ArchiveDistribution(Distribution):
    entry_points_text: str = ""


def _header(meta_dir: str) -> dict[str, str]:
    """``Name`` and ``Version`` from METADATA/PKG-INFO (the header's first lines only)."""
    out: dict[str, str] = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(meta_dir, filename), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break  # the header ends at the first blank line
                    key, sep, value = line.partition(":")
                    if sep and key.lower() in ("name", "version") and key.lower() not in out:
                        out[key.lower()] = value.strip()
                    if len(out) == 2:
                        break
        except OSError:
            continue
        return out
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` pairs of the INI section ``[group]``."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs
