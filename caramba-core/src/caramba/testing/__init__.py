"""Conformance suites that plugin authors subclass to certify their components.

Subclass in your own tests, fill in the class attributes, and pytest collects every
check (the class name must start with ``Test``)::

    from caramba.testing import LayerConformance

    class TestScaleLayer(LayerConformance):
        plugins = [my_pkg.plugin]          # or leave empty to use installed entry points
        spec_module = "my_pkg.plugin"      # must import without torch
        config = {"type": "ScaleLayer", "d_model": 8}
        input_shape = (2, 5, 8)

Checks: the component is registered; its spec module is torch-free; the config survives
a manifest round trip; it builds, runs forward and backward on CPU; its output shape is
the one its ``infer`` predicts; its ``state_dict`` keys are stable across builds;
``torch.compile`` works where ``compile = True``.
"""

from caramba.testing.conformance import LayerConformance, NodeConformance, TopologyConformance

__all__ = ["LayerConformance", "NodeConformance", "TopologyConformance"]
