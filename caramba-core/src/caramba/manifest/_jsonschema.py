"""A JSON Schema of the manifest, with every registered component's config (for editors).

msgspec writes the schema of each struct. Two places need help: ``targets`` is a union of
two structs told apart by ``type`` (msgspec wants tagged structs for that), and a
polymorphic base (``NodeConfig``...) stands for any registered config of its kinds.
"""

from __future__ import annotations

from typing import Any

import msgspec

from caramba.graph._node import EmbedderConfig, NodeConfig, TopologyConfig
from caramba.manifest._config import PolymorphicConfig
from caramba.manifest._schema import (
    BenchmarkConfig,
    ExperimentTarget,
    ManifestSpec,
    ProcessConfig,
    ProcessTarget,
    VerifierConfig,
)

__all__ = ["manifest_schema"]

_BASES: tuple[type[PolymorphicConfig], ...] = (
    NodeConfig, TopologyConfig, EmbedderConfig, BenchmarkConfig, VerifierConfig, ProcessConfig,
)
_TARGETS = (ExperimentTarget, ProcessTarget)


def manifest_schema(runtime: Any) -> dict[str, Any]:
    entries = [e for reg in runtime.registries.values() for e in reg if e.config is not None]
    types = [_untargeted(ManifestSpec), *_TARGETS, *{e.config for e in entries}]
    (root, *_), defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    defs[ManifestSpec.__name__]["properties"]["targets"]["items"] = {
        "anyOf": [{"$ref": f"#/$defs/{t.__name__}"} for t in _TARGETS]}
    for entry in entries:
        schema = defs.get(entry.config.__name__)
        if schema is None:
            continue
        if issubclass(entry.config, PolymorphicConfig):
            schema.setdefault("properties", {})["type"] = {"enum": [entry.name, *entry.aliases]}
            schema["required"] = sorted({*schema.get("required", []), "type"})
        schema.setdefault("description", entry.summary)
    for base in _BASES:
        if base.__name__ not in defs:
            continue
        members = sorted({e.config.__name__ for e in entries
                          if issubclass(e.config, base) and e.kind in base.__caramba_kinds__})
        defs[base.__name__] = {"anyOf": [{"$ref": f"#/$defs/{m}"} for m in members]} if members else {
            "type": "object"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "caramba manifest",
            **root, "$defs": defs}


def _untargeted(spec: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """``spec`` with ``targets: list[Any]``: its items' schema is filled in afterwards."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(spec):
        tp = list[Any] if f.name == "targets" else f.type
        if f.required:
            fields.append((f.name, tp))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, tp, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, tp, f.default))
    return msgspec.defstruct(spec.__name__, fields, kw_only=True, forbid_unknown_fields=True,
                             module=spec.__module__)
