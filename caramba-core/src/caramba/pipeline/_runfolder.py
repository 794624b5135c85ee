"""Guarding a target's folder: one writer at a time, writable before any work, and a rerun
resumes only the run that was started there.

* **Lock.** ``<target folder>/caramba.lock`` is held with ``flock`` for the whole run, so a
  second ``caramba run`` into the same folder exits 2 naming the holder instead of
  interleaving metrics and mixing files of two runs. The kernel drops the lock when its
  process dies, however it dies, so a lock left by a killed run is never in the way (the
  file stays; who held it last is only information).
* **Fingerprint.** Each run folder records ``fingerprint.json``: the resolved settings that
  change the run's results (data, system, objective, trainer, the run's own fields but
  its length, ``defaults.data``, the evaluation size) and the plugin versions. A rerun whose settings
  differ is refused with the differing fields, before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caramba.errors import UsageError
from caramba.pipeline._files import atomic_write_json

__all__ = ["check_fingerprint", "check_writable", "fingerprint", "folder_lock", "write_fingerprint"]

LOCK_NAME = "caramba.lock"
FINGERPRINT_NAME = "fingerprint.json"

# Run fields that may change between launches of one run: how it is checked, watched or
# stored, and its length (running a finished run with more steps extends it).
_MAY_CHANGE = frozenset({"verify", "progress", "telemetry_interval", "num_workers", "pin_memory", "keep_checkpoints",
                         "save_every", "auto_resume", "skip_if_final", "steps"})


def check_writable(folder: Path) -> None:
    """Raise a :class:`UsageError` now, not at the first checkpoint, if ``folder`` cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".caramba-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to the artifacts folder {folder}: {exc.strerror or exc}",
                         hint="choose another folder with --out, or make this one writable") from None


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; a second holder gets a :class:`UsageError` (exit 2)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks to take
        yield
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UsageError(f"{folder} is in use by another caramba run ({_holder(fd)})",
                             hint="wait for it to finish, or give this run another folder with --out") from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its process is still running"


# --- fingerprints ---------------------------------------------------------------------------


def fingerprint(manifest: Any, target_name: str, run_id: str, plugins: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"sha256": ..., "fields": {dotted path: value}}`` of what decides ``run_id``'s results."""
    resolved = manifest.resolved
    target = next(t for t in resolved.get("targets", []) if t.get("name") == target_name)
    run = next(r for r in target.get("runs", []) if r.get("id") == run_id)
    defaults = resolved.get("defaults", {}) or {}
    identity = {
        "data": target.get("data"), "system": target.get("system"), "objective": target.get("objective"),
        "trainer": target.get("trainer"), "run": _results_only(run),
        "defaults": {"data": defaults.get("data"), "eval_iters": (defaults.get("logging") or {}).get("eval_iters")},
        "plugins": {p.get("distribution") or p.get("plugin"): p.get("version") for p in plugins},
    }
    fields = dict(_flatten(identity, ""))
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    return {"sha256": digest, "fields": fields}


def _results_only(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _results_only(v) for k, v in value.items() if k not in _MAY_CHANGE}
    return value


def _flatten(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from _flatten(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for i, sub in enumerate(value):
            yield from _flatten(sub, f"{path}[{i}]")
    else:
        yield path, value


def check_fingerprint(run_dir: Path, current: dict[str, Any]) -> None:
    """Refuse (exit 2) when ``run_dir`` was started with settings other than ``current``'s."""
    try:
        recorded = json.loads((run_dir / FINGERPRINT_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return  # a fresh run folder, or one written before fingerprints were recorded
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {run_dir / FINGERPRINT_NAME}: {exc}",
                         hint="move the run folder away to start the run over") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fields"), dict):
        raise UsageError(f"{run_dir / FINGERPRINT_NAME} is not a fingerprint",
                         hint="move the run folder away to start the run over")
    if recorded.get("sha256") == current["sha256"]:
        return
    old, new = recorded.get("fields", {}), current["fields"]
    changed = [f"{key}: {_show(old.get(key, '<unset>'))} -> {_show(new.get(key, '<unset>'))}"
               for key in sorted(set(old) | set(new)) if old.get(key, "<unset>") != new.get(key, "<unset>")]
    shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if len(changed) > 6 else "")
    raise UsageError(f"{run_dir} holds a run with other settings ({shown or 'plugin versions'}); "
                     "its results would be reported under these", hint="give the run a new id, use another --out, "
                     "or move the run folder away to start it over")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def write_fingerprint(run_dir: Path, current: dict[str, Any]) -> None:
    atomic_write_json(run_dir / FINGERPRINT_NAME, current)
