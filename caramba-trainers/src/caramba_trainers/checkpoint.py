"""Checkpoints: safetensors for tensors, JSON for everything else; never pickle.

A checkpoint is a folder ``<root>/step_00000042/`` holding::

    model.safetensors       the model's state dict (tied tensors stored once)
    optimizer.safetensors   the optimizer's per-parameter tensors (``state/<i>/<name>``)
    state.json              step, run id, metrics, optimizer param groups and scalars,
                            schedule, grad-scaler, RNG states, data cursor, and the size
                            and SHA-256 of every tensor file

It is written into a hidden temp folder, each file fsynced, then the folder is renamed
into place and the parent fsynced: a kill at any moment leaves either the previous
checkpoints alone or the new one complete. A loader only considers ``step_*`` folders,
newest first, and skips any that fail to verify (a size or content hash that does not
match: a flipped byte is never loaded). ``latest.json`` names the newest one for people
and tools. :func:`resume_point` is what a trainer resumes from: the newest good
checkpoint, each skipped one named in a warning, and an error when there are checkpoints
but none of them is readable (retraining over them is the user's explicit choice).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from caramba import CheckpointError, atomic_write_json

__all__ = [
    "Checkpoint",
    "find_latest",
    "flatten_optimizer",
    "get_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "resume_point",
    "save_checkpoint",
    "set_rng_state",
    "unflatten_optimizer",
]

FORMAT = "caramba-checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors on CPU plus the JSON state."""

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    state: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)


def _dir_name(step: int) -> str:
    return f"step_{step:08d}"


# --- tensors -----------------------------------------------------------------------------------


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store tensors that share memory (tied embeddings) once; return (unique, alias -> name)."""
    seen: dict[tuple[Any, ...], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in tensors.items():
        t = t.detach()
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
               t.dtype) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        unique[name] = t.to("cpu").contiguous().clone() if t.device.type != "cpu" else t.contiguous().clone()
    return unique, aliases


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, slots in state_dict["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{pid}/{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _key(pid: str) -> int | str:
    # Plain optimizers key state by parameter index; FSDP's full state dict by parameter name.
    return int(pid) if pid.isdigit() else pid


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)[1].rsplit("/", 1)
        state.setdefault(_key(pid), {})[name] = value
    for pid, slots in meta.get("scalars", {}).items():
        state.setdefault(_key(pid), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def get_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch CPU/CUDA generator states (tensors) and Python's ``random`` state (JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "torch" in tensors:
        torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))


# --- writing -----------------------------------------------------------------------------------


def _write_synced(path: Path, data: bytes, hashes: dict[str, str] | None = None) -> int:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if hashes is not None:
        hashes[path.name] = hashlib.sha256(data).hexdigest()
    return len(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: str | Path, step: int, *, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
                    rng: bool = True, keep: int | None = None) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; keep the newest ``keep`` ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / _dir_name(step)
    tmp = root / f".tmp-{_dir_name(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    try:
        _write_files(tmp, step, model_state, optimizer_state, state, rng)
    except BaseException:  # a full disk or an interrupt mid-write: leave no half folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    if final.exists():  # the same step saved again after a resume: replace it
        trash = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    atomic_write_json(root / "latest.json", {"step": step, "path": final.name})
    if keep is not None:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_files(tmp: Path, step: int, model_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any] | None,
                 state: dict[str, Any] | None, rng: bool) -> None:
    model_tensors, aliases = _dedupe(model_state)
    doc: dict[str, Any] = {"format": FORMAT, "step": step, "model_aliases": aliases, "files": {}, "sha256": {},
                           **(state or {})}
    hashes = doc["sha256"]
    doc["files"]["model.safetensors"] = _write_synced(tmp / "model.safetensors", st_save(model_tensors), hashes)
    if optimizer_state is not None:
        opt_tensors, opt_meta = flatten_optimizer(optimizer_state)
        doc["optimizer"] = opt_meta
        doc["files"]["optimizer.safetensors"] = _write_synced(tmp / "optimizer.safetensors", st_save(opt_tensors),
                                                              hashes)
    if rng:
        rng_tensors, rng_meta = get_rng_state()
        doc["rng"] = rng_meta
        doc["files"]["rng.safetensors"] = _write_synced(tmp / "rng.safetensors", st_save(rng_tensors), hashes)
    # state.json last: a folder without it is never complete.
    _write_synced(tmp / "state.json", (json.dumps(doc, indent=1, default=_json_default) + "\n").encode())
    _fsync_dir(tmp)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# --- reading -----------------------------------------------------------------------------------


def list_checkpoints(root: str | Path) -> list[Path]:
    """Committed checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def _read_tensors(path: Path, expected: int | None, sha256: str | None) -> dict[str, torch.Tensor]:
    data = path.read_bytes()
    if expected is not None and len(data) != expected:
        raise CheckpointError(f"{path} has {len(data)} bytes, expected {expected}",
                              hint="the file is truncated or was changed after writing")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"{path} does not match the SHA-256 recorded when it was written",
                              hint="the file is corrupt or was changed after writing")
    return st_load(data)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load one checkpoint folder (or ``latest`` under a root); raises :class:`CheckpointError`."""
    path = Path(path)
    if not (path / "state.json").exists() and path.is_dir():
        found = find_latest(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path}", hint="train with save_every to write some")
        return found
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            written = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{path}: unknown checkpoint format {written!r}", hint=f"expected {FORMAT}")
        step = state["step"]
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise CheckpointError(f"{path}/state.json: step is {step!r}, not a step number",
                                  hint="the file was changed after writing")
        files, hashes = state.get("files", {}), state.get("sha256", {})

        def tensors(name: str) -> dict[str, torch.Tensor]:
            return _read_tensors(path / name, files.get(name), hashes.get(name))

        model = tensors("model.safetensors")
        for alias, name in state.get("model_aliases", {}).items():
            model[alias] = model[name]
        optimizer = None
        if "optimizer.safetensors" in files:
            optimizer = unflatten_optimizer(tensors("optimizer.safetensors"), state["optimizer"])
        rng = tensors("rng.safetensors") if "rng.safetensors" in files else {}
    except CheckpointError:
        raise
    except Exception as exc:  # any unreadable file makes a bad checkpoint, whatever the library raised
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}",
                              hint="delete the folder to fall back to an older checkpoint") from exc
    return Checkpoint(path=path, step=step, model=model, optimizer=optimizer, state=state, rng=rng)


def find_latest(root: str | Path, on_skip: Callable[[Path, CheckpointError], None] | None = None) -> Checkpoint | None:
    """The newest checkpoint under ``root`` that loads and verifies, or ``None``.

    Each newer one that fails is passed to ``on_skip`` (to be named in a warning).
    """
    for path in reversed(list_checkpoints(root)):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            if on_skip is not None:
                on_skip(path, exc)
    return None


def resume_point(root: str | Path, warn: Callable[[str], None]) -> Checkpoint | None:
    """The checkpoint a run resumes from: ``None`` when there is none, the newest good one
    otherwise (each skipped one named through ``warn``); raises when none is readable."""
    skipped: list[str] = []

    def on_skip(path: Path, exc: CheckpointError) -> None:
        skipped.append(exc.message)
        warn(f"skipping checkpoint {path}: {exc.message}")

    ckpt = find_latest(root, on_skip)
    if ckpt is None and skipped:
        raise CheckpointError(f"none of the {len(skipped)} checkpoints in {root} is readable ({skipped[0]})",
                              hint="nothing was changed; move the folder away, or set auto_resume: false in the "
                                   "run's train: block to retrain from step 0 and replace them")
    return ckpt
