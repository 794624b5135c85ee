"""The toy plugin passes the conformance suite it is the reference for."""

from caramba.testing import LayerConformance, TopologyConformance, toy


class TestToyLinear(LayerConformance):
    plugins = [toy]
    spec_module = "caramba.testing.toy"
    config = {"type": "ToyLinear", "d_in": 8, "d_out": 3}
    input_shape = (2, 5, 8)


class TestToySequential(TopologyConformance):
    plugins = [toy]
    config = {"type": "ToySequential", "layers": [
        {"type": "ToyLinear", "d_in": 8, "d_out": 4},
        {"type": "ToyLinear", "d_in": 4, "d_out": 2, "bias": False},
    ]}
    input_shape = (3, 8)
