"""Manifests: parse → apply ``-s`` overrides → substitute ``${vars}`` → lower → validate.

Overrides apply to the manifest as written, so ``-s vars.d_model=256`` changes a
variable everywhere it is used and an override's value may itself use ``${vars}``.

Every stage collects problems; :func:`load_manifest` raises one
:class:`~caramba.errors.ManifestError` listing all of them, each as
``file:line:col  path.to.field  message  (hint)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caramba.manifest._config import Config, PolymorphicConfig, Scope
    from caramba.manifest._load import Manifest, load_manifest, load_manifest_text
    from caramba.manifest._schema import (
        BenchmarkConfig,
        ComponentSpec,
        ExperimentTarget,
        ManifestSpec,
        ProcessConfig,
        ProcessTarget,
        RunSpec,
        VerifierConfig,
    )

__all__ = [
    "BenchmarkConfig",
    "ComponentSpec",
    "Config",
    "ExperimentTarget",
    "Manifest",
    "ManifestSpec",
    "PolymorphicConfig",
    "ProcessConfig",
    "ProcessTarget",
    "RunSpec",
    "Scope",
    "VerifierConfig",
    "load_manifest",
    "load_manifest_text",
]

# Names load on first use: a plugin's config module imports ``caramba.manifest._config``
# without paying for the YAML loader and the decoder.
_EXPORTS: dict[str, str] = {
    "Config": "caramba.manifest._config",
    "PolymorphicConfig": "caramba.manifest._config",
    "Scope": "caramba.manifest._config",
    "Manifest": "caramba.manifest._load",
    "load_manifest": "caramba.manifest._load",
    "load_manifest_text": "caramba.manifest._load",
    **{name: "caramba.manifest._schema" for name in (
        "BenchmarkConfig", "ComponentSpec", "ExperimentTarget", "ManifestSpec", "ProcessConfig", "ProcessTarget",
        "RunSpec", "VerifierConfig")},
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'caramba.manifest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
