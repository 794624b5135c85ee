"""What a plugin author and an embedder write, checked by mypy --strict against caramba's types."""

from __future__ import annotations

from typing import Any

import caramba
from caramba import NodeConfig, Scope, Shape, ShapeError, hookimpl
from caramba.graph import expect_last
from caramba.testing import toy


class ScaleConfig(NodeConfig, kw_only=True):
    d_model: int
    init: float = 1.0

    def infer(self, x: Shape, scope: Scope) -> Shape:
        expect_last(x, self.d_model, "d_model")
        if self.init == 0.0:
            raise ShapeError("init must be non-zero", field="init")
        return x

    def num_params(self) -> int:
        return self.d_model


@hookimpl
def caramba_register_layers(registry: caramba.Registrar) -> None:
    registry.add("ScaleLayer", config=ScaleConfig, factory="my_pkg.scale:ScaleLayer", summary="per-channel scale")


def embed(text: str) -> list[str]:
    rt: caramba.Runtime = caramba.Runtime(autoload=False, plugins=[toy])
    try:
        manifest: caramba.Manifest = rt.load_manifest_text(text, filename="inline.yml")
    except caramba.ManifestError as exc:
        return [f"{p.location}: {p.path}: {p.message}" for p in exc.problems]
    node: Any = rt.parse(NodeConfig, {"type": "ToyLinear", "d_in": 2, "d_out": 3})
    assert isinstance(node, NodeConfig)
    entry: caramba.Entry = rt.get("layer", "ToyLinear")
    infos: list[caramba.PluginInfo] = rt.plugins
    return [manifest.name, entry.summary, *(i.name for i in infos)]
