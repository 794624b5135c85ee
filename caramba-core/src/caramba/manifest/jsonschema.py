"""A JSON Schema of the manifest, with every registered component's config (for editors)."""

from __future__ import annotations

from typing import Any

import msgspec

from caramba.graph.node import EmbedderConfig, NodeConfig, TopologyConfig
from caramba.manifest.config import PolymorphicConfig
from caramba.manifest.schema import BenchmarkConfig, ManifestSpec, ProcessConfig, VerifierConfig

__all__ = ["manifest_schema"]

_BASES: tuple[type[PolymorphicConfig], ...] = (
    NodeConfig, TopologyConfig, EmbedderConfig, BenchmarkConfig, VerifierConfig, ProcessConfig,
)


def manifest_schema(runtime: Any) -> dict[str, Any]:
    entries = [e for reg in runtime.registries.values() for e in reg if e.config is not None]
    types = [ManifestSpec, *{e.config for e in entries}]
    (root, *_), defs = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
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
