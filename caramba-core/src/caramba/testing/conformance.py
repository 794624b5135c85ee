"""The conformance checks behind :mod:`caramba.testing`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, ClassVar

import msgspec

from caramba.graph import Context, NodeConfig, Shape
from caramba.manifest._config import Scope
from caramba.plugins import Runtime

__all__ = ["LayerConformance", "NodeConformance", "TopologyConformance"]


class NodeConformance:
    """Checks every layer or topology must pass. Fill in the class attributes."""

    kind: ClassVar[str] = "layer"
    plugins: ClassVar[list[Any]] = []
    spec_module: ClassVar[str] = ""
    config: ClassVar[dict[str, Any]] = {}
    input_shape: ClassVar[tuple[int, ...]] = (2, 5, 8)
    input_dtype: ClassVar[str] = "float32"  # "long" for token ids
    input_high: ClassVar[int] = 16  # exclusive bound for integer inputs
    compile: ClassVar[bool] = False

    # -- helpers -------------------------------------------------------------------------
    def runtime(self) -> Runtime:
        if self.plugins:
            return Runtime(autoload=False, plugins=self.plugins)
        return Runtime()

    def node(self, rt: Runtime | None = None) -> NodeConfig:
        node: NodeConfig = (rt or self.runtime()).parse(NodeConfig, dict(self.config))
        return node

    def make_input(self) -> Any:
        import torch

        g = torch.Generator().manual_seed(0)
        if self.input_dtype == "long":
            return torch.randint(0, self.input_high, self.input_shape, generator=g)
        return torch.randn(self.input_shape, generator=g, dtype=getattr(torch, self.input_dtype))

    def build(self, rt: Runtime | None = None, seed: int = 0) -> Any:
        import torch

        rt = rt or self.runtime()
        torch.manual_seed(seed)
        return rt.build(self.node(rt), "node")

    # -- checks --------------------------------------------------------------------------
    def test_registered(self) -> None:
        rt = self.runtime()
        entry = rt.registry(self.kind).find(self.config["type"])
        assert entry is not None, f"{self.config['type']} is not a registered {self.kind}"
        assert entry.summary, "give the component a one-line summary"
        assert entry.config is not None
        msgspec.structs.fields(entry.config)  # every field annotation resolves (raises NameError if not)

    def test_spec_module_is_torch_free(self) -> None:
        if not self.spec_module:
            return
        code = f"import sys, {self.spec_module}; assert 'torch' not in sys.modules, 'imports torch'"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    def test_manifest_round_trip(self) -> None:
        rt = self.runtime()
        node = self.node(rt)
        again = rt.parse(NodeConfig, msgspec.to_builtins(node))
        assert again == node

    def test_builds_runs_forward_and_backward(self) -> None:
        import torch

        module = self.build()
        module.train()
        x = self.make_input()
        if x.is_floating_point():
            x.requires_grad_()
        y = module(x, Context(training=True))
        assert isinstance(y, torch.Tensor)
        assert torch.isfinite(y).all()
        y.float().square().mean().backward()
        trainable = [p for p in module.parameters() if p.requires_grad]
        assert all(p.grad is not None for p in trainable), "every trainable parameter gets a gradient"
        if not trainable:  # a parameter-free layer (dropout): the gradient must reach the input
            assert x.grad is not None and torch.isfinite(x.grad).all(), "the gradient reaches the input"

    def test_output_shape_matches_inference(self) -> None:
        import torch

        rt = self.runtime()
        problems: list[tuple[Any, str, str]] = []
        predicted = Scope(lambda *a: problems.append(a)).infer(self.node(rt), Shape(*self.input_shape))
        assert not problems, problems
        module = self.build(rt)
        module.eval()
        with torch.no_grad():
            y = module(self.make_input(), Context())
        assert predicted is not None
        assert all(isinstance(p, str) or p == s for p, s in zip(predicted, y.shape, strict=True)), (
            f"infer predicted {predicted}, forward gave {tuple(y.shape)}")

    def test_state_dict_keys_are_stable(self) -> None:
        a = self.build(seed=0).state_dict()
        b = self.build(seed=1).state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape for k in a)

    def test_num_params_matches_module(self) -> None:
        declared = self.node().num_params()
        actual = sum(p.numel() for p in self.build().parameters() if p.requires_grad)
        assert declared == actual, f"num_params() says {declared}, the module has {actual}"

    def test_torch_compile(self) -> None:
        if not self.compile:
            return
        import torch

        module = self.build()
        module.eval()
        x = self.make_input()
        with torch.no_grad():
            eager = module(x, Context())
            compiled = torch.compile(module)(x, Context())
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


class LayerConformance(NodeConformance):
    kind = "layer"


class TopologyConformance(NodeConformance):
    kind = "topology"
