"""Validate-time checks of what a dataset's config names: files, their shapes, optional packages.

Torch- and numpy-free (they run inside ``caramba validate``): a ``.npy`` file's shape is read
from its header alone, so checking a 10 GB token file costs one small read.
"""

from __future__ import annotations

import ast
from pathlib import Path

from caramba import Scope, missing_dependency

__all__ = ["DATASETS_EXTRA", "check_file", "check_package", "npy_shape"]

DATASETS_EXTRA = "caramba-trainers[datasets]"


def npy_shape(path: str | Path) -> tuple[int, ...] | None:
    """The array shape a ``.npy`` file's header declares, or ``None`` when it is not a readable ``.npy``."""
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                return None
            major = f.read(2)[0]
            size = int.from_bytes(f.read(2 if major == 1 else 4), "little")
            header = ast.literal_eval(f.read(size).decode("latin1"))
        return tuple(int(n) for n in header["shape"])
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, IndexError):
        return None


def check_file(scope: Scope, field: str, path: str, *, npy: bool = True) -> tuple[int, ...] | None:
    """Report ``field`` when ``path`` does not exist (or is not a ``.npy``); return the array's shape."""
    file = Path(path)
    if not file.is_file():
        where = f" (relative to the working directory {Path.cwd()})" if not file.is_absolute() else ""
        scope.error(field, f"file '{path}' does not exist{where}", "write it with numpy.save, or fix the path")
        return None
    if not npy or file.suffix != ".npy":
        return None
    shape = npy_shape(file)
    if shape is None:
        scope.error(field, f"'{path}' is not a NumPy .npy file", "write it with numpy.save")
    return shape


def check_package(scope: Scope, module: str, package: str, needed_by: str, field: str | None = None) -> None:
    """Report a missing optional dependency at validate time, naming the extra that installs it."""
    message = missing_dependency(module, package=package, extra=DATASETS_EXTRA, needed_by=needed_by)
    if message:
        scope.error(field, message.split(" (pip install")[0], f"pip install '{DATASETS_EXTRA}'")
