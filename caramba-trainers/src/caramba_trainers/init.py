"""Starting a run from trained weights (``train.init_checkpoint``) and saving LoRA adapters.

``init_checkpoint`` names the weights a run starts from instead of a random init:

* a caramba checkpoint: a run's ``checkpoints/`` folder (its newest step) or one ``step_*`` folder;
* a Hugging Face folder (``config.json`` + safetensors) or a ``.gguf`` file, read by the
  registered ``checkpoint_format``;
* ``target:NAME`` or ``target:NAME/RUN``: the final checkpoint of a run (default: the last)
  of another target of the same manifest, in the same artifacts folder. When that target
  has no checkpoint yet it is run first, so a fine-tuning target can stand alone (under
  torchrun that is an error instead: run the base target first).

A system with ``lora:`` has adapters the base checkpoint lacks; those keys, and only those,
may be missing. Resuming (``auto_resume``) takes precedence: a run that has its own
checkpoints continues from them and does not read ``init_checkpoint`` again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from caramba import CheckpointError, RunError
from caramba_trainers.checkpoint import find_latest, load_checkpoint

__all__ = ["load_init_checkpoint", "resolve_target_checkpoint", "save_lora_adapters"]

_ADAPTER_SUFFIXES = (".lora_A", ".lora_B")


def resolve_target_checkpoint(session: Any, ref: str) -> Path:
    """The checkpoint folder ``target:NAME[/RUN]`` names; runs that target first when it has none."""
    name, _, run_id = ref[len("target:"):].partition("/")
    if name == session.target.name:
        raise RunError(f"init_checkpoint '{ref}' names this run's own target", path=_field(session),
                       hint="point it at another target of the manifest, e.g. target:base")
    target = session.manifest.target(name)
    runs = [r.id for r in getattr(target, "runs", [])]
    if not runs:
        raise RunError(f"init_checkpoint '{ref}': target '{name}' has no runs", path=_field(session))
    run_id = run_id or runs[-1]
    if run_id not in runs:
        raise RunError(f"init_checkpoint '{ref}': target '{name}' has no run '{run_id}'", path=_field(session),
                       hint=f"its runs: {', '.join(runs)}")
    root = Path(session.target_dir).parent.parent  # <artifacts root>/<manifest name>/<target>
    folder = Path(session.target_dir).parent / name / "runs" / run_id / "checkpoints"
    if find_latest(folder) is None:
        from caramba import run_target

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would start the same run at once
            raise RunError(f"init_checkpoint '{ref}': target '{name}' has no checkpoint yet", path=_field(session),
                           hint=f"under torchrun, run it first: caramba run {session.manifest.source} --target {name}")

        session.info(f"[bold]{ref}[/] has no checkpoint yet: running target '{name}' first")
        run_target(session.runtime, session.manifest, name, root=root, console=session.console)
        if find_latest(folder) is None:
            raise RunError(f"target '{name}' ran but wrote no checkpoint under {folder}", path=_field(session))
    return folder


def load_init_checkpoint(session: Any, model: nn.Module, ref: str) -> str:
    """Load ``ref`` into ``model``; returns the path read. Raises :class:`CheckpointError`."""
    path = resolve_target_checkpoint(session, ref) if ref.startswith("target:") else Path(ref).expanduser()
    if path.is_dir() and ((path / "state.json").exists() or any(path.glob("step_*"))):
        state = load_checkpoint(path).model
        _load_state(model, state, path)
        return str(path)
    if path.suffix == ".gguf" or (path / "config.json").exists():
        fmt = session.runtime.get("checkpoint_format", "gguf" if path.suffix == ".gguf" else "hf").load()(None)
        with torch.no_grad():
            fmt.load_into(model, path)
        return str(path)
    raise CheckpointError(f"no checkpoint at {ref}", path=_field(session),
                          hint="a run's checkpoints/ folder, a step_* folder, a Hugging Face folder, a .gguf "
                               "file, or target:NAME")


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    from caramba_layers import check_dtype

    own = model.state_dict()
    for name, value in state.items():
        if name in own:
            check_dtype(f"{path}: {name}", value, own[name])
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(_ADAPTER_SUFFIXES)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: missing {missing[:5]}, unexpected "
            f"{list(result.unexpected_keys)[:5]}",
            hint="the system's model must be the one the checkpoint was trained with (LoRA adapters aside)")


def save_lora_adapters(model: nn.Module, run_dir: Path) -> Path | None:
    """``<run_dir>/adapters`` (adapter.safetensors + adapter.json) when the model has LoRA adapters."""
    if not getattr(model, "lora_modules", None):
        return None
    from caramba_layers import save_adapters

    return save_adapters(model, Path(run_dir) / "adapters")


def _field(session: Any) -> str:
    return f"runs.{session.run.id}.train.init_checkpoint"
