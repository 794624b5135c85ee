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
    from caramba.manifest.config import Config, PolymorphicConfig, Scope
    from caramba.manifest.load import Manifest, load_manifest, load_manifest_text
    from caramba.manifest.schema import (
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

# Names load on first use: a plugin's config module imports ``caramba.manifest.config``
# without paying for the YAML loader and the decoder.
_EXPORTS: dict[str, str] = {
    "Config": "caramba.manifest.config",
    "PolymorphicConfig": "caramba.manifest.config",
    "Scope": "caramba.manifest.config",
    "Manifest": "caramba.manifest.load",
    "load_manifest": "caramba.manifest.load",
    "load_manifest_text": "caramba.manifest.load",
    **{name: "caramba.manifest.schema" for name in (
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
