"""caramba's exception tree.

Every error a user can cause derives from :class:`CarambaError` and carries
where it happened (``file:line:col``), the manifest field path and a hint::

    CarambaError                 exit 1 unless a subclass says otherwise
    ├── ManifestError            exit 2  a report of one or more problems in a manifest
    ├── UsageError               exit 2  bad command-line usage (unknown target, bad -s override)
    ├── CheckpointError          exit 2  a missing, corrupt or incompatible checkpoint
    ├── DataError                exit 2  a data file the manifest names is missing or of the wrong shape
    ├── DependencyError          exit 2  an optional dependency a component needs is not installed
    ├── PluginError              exit 3  a plugin failed to import or register, or two collide
    │   └── RegistryError        exit 3  a duplicate name, a lookup in a frozen registry, ...
    └── RunError                 exit 1  a run failed after validation (NaN loss, failed verify, ...)

The CLI prints ``str(error)`` and exits with ``error.exit_code``; it never
shows a traceback for a ``CarambaError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CarambaError",
    "CheckpointError",
    "DataError",
    "DependencyError",
    "Location",
    "ManifestError",
    "PluginError",
    "Problem",
    "RegistryError",
    "RunError",
    "UsageError",
    "did_you_mean",
    "missing_dependency",
    "require",
]


@dataclass(frozen=True, slots=True)
class Location:
    """A position in a source file (1-based line and column)."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a manifest: where, which field, what, and a fix."""

    location: Location | None
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = str(self.location) if self.location else "<manifest>"
        text = f"{where}  {self.path or '<root>'}  {self.message}"
        if self.hint:
            text += f"  ({self.hint})"
        return text


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the closest choice, or a list of the valid ones."""
    import difflib  # lazily: only a failing lookup pays for it

    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not options:
        return "no choices are registered"
    if len(options) <= 8:
        return "expected one of: " + ", ".join(options)
    return "expected one of: " + ", ".join(options[:8]) + f", ... ({len(options)} in all)"


class CarambaError(Exception):
    """Base of every error caramba raises for bad input or a failed run."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        path: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        parts = []
        if self.location:
            parts.append(str(self.location))
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        text = "  ".join(parts)
        if self.hint:
            text += f"  ({self.hint})"
        return text


class ManifestError(CarambaError):
    """A manifest failed to parse, lower or validate. Holds every problem found."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem], *, source: str = "") -> None:
        self.problems = list(_dedupe(problems))
        self.source = source
        first = self.problems[0] if self.problems else None
        super().__init__(
            first.message if first else "invalid manifest",
            location=first.location if first else None,
            path=first.path if first else "",
            hint=first.hint if first else "",
        )

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{self.source or 'manifest'}: {n} problem{'s' if n != 1 else ''}"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def _dedupe(problems: Iterable[Problem]) -> Iterable[Problem]:
    seen: set[tuple[object, ...]] = set()
    for p in problems:
        key = (p.location, p.message)
        if key in seen:
            continue
        seen.add(key)
        yield p


class UsageError(CarambaError):
    """Bad command-line usage: an unknown target, a malformed ``-s`` override."""

    exit_code = 2


class CheckpointError(CarambaError):
    """A checkpoint is missing, corrupt or does not fit the model."""

    exit_code = 2


class DataError(CarambaError):
    """A data file the manifest names is missing, unreadable or of the wrong shape."""

    exit_code = 2


class DependencyError(CarambaError):
    """An optional dependency that a component needs is not installed."""

    exit_code = 2


def missing_dependency(module: str, *, package: str, extra: str, needed_by: str) -> str | None:
    """``None`` when ``module`` can be imported, else the one line to show (for validate-time checks)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return f"{needed_by} needs {package}, which is not installed (pip install '{extra}')"


def require(module: str, *, package: str, extra: str, needed_by: str) -> object:
    """Import an optional dependency, or raise one :class:`DependencyError` naming the extra to install.

    ``require("sklearn", package="scikit-learn", extra="caramba-trainers[datasets]",
    needed_by="dataset.digits")``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name != module and not module.startswith(exc.name + "."):
            raise  # the dependency is there, something inside it is broken: show that
        raise DependencyError(f"{needed_by} needs {package}, which is not installed",
                              hint=f"pip install '{extra}'") from None


class PluginError(CarambaError):
    """A plugin failed to import or register, or plugins conflict."""

    exit_code = 3


class RegistryError(PluginError):
    """A registry was misused: a duplicate name, a change after freezing."""


class RunError(CarambaError):
    """A run failed after its manifest was valid (a NaN loss, a failed verify)."""

    exit_code = 1
